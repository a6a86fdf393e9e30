"""Data: MNIST or Fashion-MNIST as one float tensor on the device, batched by index.

The data set is chosen by ``VAE_DATASET`` (``mnist``, the default, or ``fashion-mnist``) and read
through torchvision from ``VAE_DATA_DIR`` (default ``data/`` at the repository root). Files that are
absent are downloaded; Fashion-MNIST is also taken, without any download, from Debian's package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``).

A split is loaded once into a :class:`Split`: images as a float32 tensor of shape (N, 784) with
values in [0, 1], integer labels and class names. Training draws batches from it with one
``randperm`` per epoch on the device: no DataLoader, no per-sample transforms. Introduced in
notebook 04.
"""
from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torchvision import datasets

from .utils import data_dir

#: Valid values of ``VAE_DATASET`` and the torchvision class that reads each.
DATASETS = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}
DEFAULT_DATASET = "mnist"
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
    """The data set to use: ``name`` if given, else ``VAE_DATASET``, else ``mnist``; checked.

    Raises ``ValueError`` listing the valid names when the name is unknown. Introduced in notebook 04.
    """
    raw = name if name is not None else os.environ.get("VAE_DATASET") or DEFAULT_DATASET
    key = str(raw).strip().lower().replace("_", "-")
    if key == "fashionmnist":
        key = "fashion-mnist"
    if key not in DATASETS:
        valid = ", ".join(repr(k) for k in DATASETS)
        raise ValueError(
            f"Unknown dataset {raw!r}. Valid names are {valid}; "
            "pass one of them or set the environment variable VAE_DATASET."
        )
    return key


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
        the same order whatever the device); the last batch may be smaller, as with the seed's
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


def _unpack_local_copies(raw_folder: Path, sources: list[Path]) -> None:
    """Gunzip any of the four files found (as ``.gz``) in ``sources`` into ``raw_folder``."""
    for name in _missing(raw_folder):
        for src in sources:
            gz = src / f"{name}.gz"
            if gz.is_file():
                raw_folder.mkdir(parents=True, exist_ok=True)
                # A unique temporary name, renamed into place: two processes can unpack at once.
                fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=raw_folder)
                try:
                    with gzip.open(gz, "rb") as fin, os.fdopen(fd, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
                    os.replace(tmp, raw_folder / name)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                break


def _unavailable_message(dataset: str, root: Path, raw_folder: Path, cause: BaseException | None) -> str:
    lines = [
        f"The {dataset} files are not in {raw_folder} and could not be downloaded"
        + (f" ({type(cause).__name__}: {cause})." if cause else "."),
        "Fix it in one of two ways:",
        f"  1. Put the four files {', '.join(RAW_FILES)} (gzipped with .gz or unpacked) in {raw_folder}"
        f" (or point VAE_DATA_DIR at a folder whose {raw_folder.parent.name}/raw holds them; now VAE_DATA_DIR={root}).",
        "  2. Use Fashion-MNIST offline from Debian's package: `sudo apt-get install dataset-fashion-mnist`,"
        " then set VAE_DATASET=fashion-mnist.",
    ]
    return "\n".join(lines)


def torchvision_dataset(
    dataset: str | None = None,
    train: bool = True,
    transform=None,
    root: str | Path | None = None,
    download: bool = True,
):
    """The torchvision ``MNIST`` / ``FashionMNIST`` object for a split, its files made ready first.

    Gzipped copies already in the raw folder, and for Fashion-MNIST Debian's package, are unpacked
    without a download; otherwise torchvision downloads when ``download`` is true. Raises
    :class:`DatasetUnavailableError` naming both fixes when the files cannot be had. ``transform``
    is passed on: notebook 04 uses it to build the textbook DataLoader pipeline for comparison.
    """
    name = dataset_name(dataset)
    cls = DATASETS[name]
    root = Path(root).expanduser() if root is not None else data_dir()
    raw_folder = root / cls.__name__ / "raw"
    sources = [raw_folder]
    if name == "fashion-mnist":
        sources.append(DEBIAN_FASHION_MNIST)
    _unpack_local_copies(raw_folder, sources)
    missing = _missing(raw_folder)
    try:
        return cls(root=str(root), train=train, transform=transform, download=download and bool(missing))
    except (RuntimeError, OSError, ValueError, AssertionError, IndexError) as err:
        if not missing:  # the files are there but cannot be read
            raise DatasetUnavailableError(
                f"The {name} files in {raw_folder} are unreadable ({type(err).__name__}: {err}); a file is truncated "
                "or corrupt. Delete that folder to unpack or download them again"
                + (", or reinstall Debian's dataset-fashion-mnist." if name == "fashion-mnist" else ".")) from err
        raise DatasetUnavailableError(_unavailable_message(name, root, raw_folder, err)) from err


def load_split(
    dataset: str | None = None,
    train: bool = True,
    device: torch.device | str = "cpu",
    root: str | Path | None = None,
    download: bool = True,
) -> Split:
    """Load one split of MNIST or Fashion-MNIST as a :class:`Split` on ``device``.

    ``dataset`` defaults to ``VAE_DATASET`` (then ``mnist``), ``root`` to ``VAE_DATA_DIR`` (then
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
