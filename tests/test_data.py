import os

import numpy as np
import pytest
import torch

from vae_lib import data as data_mod
from vae_lib.data import (
    DatasetUnavailableError, Split, as_images, dataset_name, load_data, load_split,
)
from conftest import write_tiny_dataset


def test_dataset_name_default_env_and_aliases(monkeypatch):
    monkeypatch.delenv("VAE_DATASET", raising=False)
    assert dataset_name() == "mnist"
    monkeypatch.setenv("VAE_DATASET", "fashion-mnist")
    assert dataset_name() == "fashion-mnist"
    assert dataset_name("Fashion_MNIST") == "fashion-mnist"
    assert dataset_name("MNIST") == "mnist"


def test_unknown_dataset_lists_valid_names(monkeypatch):
    with pytest.raises(ValueError, match="'mnist', 'fashion-mnist'"):
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
    assert "dataset-fashion-mnist" in msg and "VAE_DATASET=fashion-mnist" in msg


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
