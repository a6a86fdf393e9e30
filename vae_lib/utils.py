"""Small helpers every notebook uses: seeding, the device, and the course's folders."""
from __future__ import annotations

import inspect
import os
import random
import textwrap
from pathlib import Path

import numpy as np
import torch

#: The repository root, found from this file so that paths do not depend on the working directory
#: (nbval runs each notebook with its own folder as the working directory). Only meaningful when
#: ``vae_lib`` runs from a clone of the course (``pip install -e .``); see :func:`course_root`.
REPO_ROOT = Path(__file__).resolve().parent.parent


def set_seed(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (CPU and every GPU) with one number.

    Introduced in notebook 01; every notebook calls it once in its setup cell.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"set_seed expects a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_device(verbose: bool = True) -> torch.device:
    """Pick the device: CUDA when PyTorch sees a GPU, else the CPU.

    Apple's MPS only when asked for (``VAE_DEVICE=mps``): the course has not been run on it, and MPS has
    no float64, which the estimators need (they move that work to the CPU). Set ``VAE_DEVICE`` (for
    example ``cpu``) to override. Prints the choice when ``verbose``. Introduced in notebook 01.
    """
    wanted = os.environ.get("VAE_DEVICE")
    if wanted:
        device = check_device(wanted, "VAE_DEVICE")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")
    if verbose:
        print(f"Using device: {describe_device(device)}")
    return device


def check_device(name: str | torch.device, what: str = "device") -> torch.device:
    """``name`` as a ``torch.device`` that exists on this machine, or a ``ValueError`` saying why not.

    Notebook 04 (and ``python -m vae_lib.train --device``).
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{what}={name!r} is not a device name; use cpu, cuda or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what}={name!r}, but PyTorch sees no CUDA GPU here; use cpu (or leave it unset)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{what}={name!r}, but Apple's MPS is not available here; use cpu (or leave it unset)")
    return device


def describe_device(device: torch.device | str) -> str:
    """A one-line human description of ``device`` (the GPU's name, or the CPU's thread count). Notebook 01."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def in_checkout(root: Path = REPO_ROOT) -> bool:
    """Whether ``root`` is a clone of the course (its ``pyproject.toml``, ``vae_lib/`` and ``notebooks/``)."""
    return (root / "pyproject.toml").is_file() and (root / "vae_lib").is_dir() and (root / "notebooks").is_dir()


def course_root() -> Path:
    """The folder under which the course keeps its data, checkpoints and outputs.

    ``VAE_HOME`` if set; else the clone ``vae_lib`` runs from (``pip install -e .``); else, for an
    installed wheel (a hosted notebook service, say), the working directory. Never site-packages.
    Notebook 01.
    """
    home = os.environ.get("VAE_HOME")
    if home:
        return Path(home).expanduser()
    return REPO_ROOT if in_checkout() else Path.cwd()


def _folder(env_var: str, default: Path) -> Path:
    path = Path(os.environ.get(env_var) or default).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Where data sets live: ``VAE_DATA_DIR`` or ``data/`` under :func:`course_root` (created if absent). Notebook 04."""
    return _folder("VAE_DATA_DIR", course_root() / "data")


def checkpoint_dir() -> Path:
    """Where trained models are cached: ``VAE_CHECKPOINT_DIR`` or ``checkpoints/`` under :func:`course_root`. Notebook 04."""
    return _folder("VAE_CHECKPOINT_DIR", course_root() / "checkpoints")


def outputs_dir() -> Path:
    """What runs write for the learner: ``VAE_OUTPUTS_DIR`` or ``outputs/`` under :func:`course_root` (gitignored).

    Notebook 04.
    """
    return _folder("VAE_OUTPUTS_DIR", course_root() / "outputs")


def figures_dir() -> Path:
    """Where notebooks save their key figures: ``VAE_FIGURES_DIR`` or ``outputs/figures/``. Notebook 01.

    The figures under version control, ``figures/`` at the repository root, are refreshed only by
    ``make course``, which points ``VAE_FIGURES_DIR`` there; a learner's run leaves the clone clean.
    """
    return _folder("VAE_FIGURES_DIR", outputs_dir() / "figures")


def show_source(*objs) -> object:
    """The source of one or more functions, methods or classes from ``vae_lib``, as a code block.

    Notebooks call it to teach a function without pasting a second copy that could drift: the
    last line of a cell, ``show_source(LinearGaussian.posterior)``, renders the library's own code.
    Introduced in notebook 01.
    """
    from IPython.display import Markdown

    if not objs:
        raise ValueError("show_source needs at least one function, method or class")
    parts = []
    for obj in objs:
        try:
            parts.append(textwrap.dedent(inspect.getsource(obj)))
        except (TypeError, OSError) as err:
            raise ValueError(f"cannot show the source of {obj!r}: pass a Python function, method or class") from err
    return Markdown("```python\n" + "\n".join(parts) + "```")
