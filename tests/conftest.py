"""Shared fixtures: tiny IDX data sets written by the tests themselves (never a fake of the real data)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` (uint8) in the IDX format MNIST uses: magic, dimensions, raw bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_tiny_dataset(root: Path, folder: str = "MNIST", n_train: int = 20, n_test: int = 10,
                       compress: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the four IDX files of a tiny random data set under ``root/folder/raw``."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=(n_train,), dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=(n_test,), dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(root / folder / "raw" / name, arr, compress=compress)
    return arrays


@pytest.fixture
def tiny_mnist(tmp_path):
    """A tiny MNIST-format data set on disk: returns (root, arrays)."""
    arrays = write_tiny_dataset(tmp_path, "MNIST")
    return tmp_path, arrays


@pytest.fixture(autouse=True)
def _isolated_folders(tmp_path, monkeypatch):
    """Keep every test's checkpoints, figures and outputs out of the learner's folders."""
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("VAE_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("VAE_OUTPUTS_DIR", str(tmp_path / "outputs"))
    torch.manual_seed(0)
