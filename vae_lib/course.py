"""Run the whole course headless: ``python -m vae_lib.course`` (``make course``).

Executes every notebook in ``notebooks/`` in numeric order, each in a fresh kernel with the
notebook's folder as working directory, exactly as a learner's "Run All" would. It is the one
command that refreshes the figures under version control: it points ``VAE_FIGURES_DIR`` at
``figures/`` (a learner's run saves them to the gitignored ``outputs/figures/``). The notebooks'
own files are left unchanged (they are stored without outputs). Prints the wall time of each
notebook. An executed copy of each notebook, with its outputs, is written to ``outputs/executed/``
for reading.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .utils import REPO_ROOT, outputs_dir

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def notebook_paths(folder: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """The course's notebooks in numeric order, optionally only those whose name starts with ``only``."""
    folder = Path(folder) if folder is not None else NOTEBOOKS_DIR
    paths = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(prefix) for prefix in only)]
        if not paths:
            raise ValueError(f"no notebook in {folder} starts with any of {only}")
    return paths


def execute(path: Path, timeout: int = 900, save_to: Path | None = None) -> float:
    """Execute one notebook in a fresh kernel; return its wall time in seconds.

    Raises ``nbclient.exceptions.CellExecutionError`` (with the failing cell) when a cell fails.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    if save_to is not None:
        save_to.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save_to / path.name)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vae_lib.course", description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="notebook number prefixes to run, e.g. 04 05 (default: all)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    args = parser.parse_args(argv)
    executed = outputs_dir() / "executed"
    figures = os.environ.setdefault("VAE_FIGURES_DIR", str(REPO_ROOT / "figures"))   # the kernels inherit it
    total = 0.0
    for path in notebook_paths(only=args.only):
        print(f"{path.name:<40}", end="", flush=True)
        seconds = execute(path, args.timeout, executed)
        total += seconds
        print(f"{seconds:7.1f} s")
    print(f"{'all notebooks':<40}{total:7.1f} s; figures in {figures}; executed copies in {executed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
