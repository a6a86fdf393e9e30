import math

import torch

from vae_lib.data import load_split
from vae_lib.models import VAE
from vae_lib.pipelines import textbook_epoch, textbook_loader
from conftest import write_tiny_dataset


def test_textbook_loader_yields_the_same_pixels_as_the_course_split(tmp_path):
    write_tiny_dataset(tmp_path, "MNIST", n_train=40, n_test=10)
    loader = textbook_loader("mnist", batch_size=16, root=tmp_path)
    batches = list(loader)
    assert [len(x) for x, _ in batches] == [16, 16, 8]
    x, y = batches[0]
    assert x.shape == (16, 784) and x.dtype == torch.float32
    split = load_split("mnist", root=tmp_path)
    # Every loader row is some row of the resident split (ToTensor scales by 1/255 the same way).
    for row, label in zip(x, y):
        match = (split.images == row).all(dim=1).nonzero()
        assert len(match) >= 1 and split.labels[match[0, 0]] == label


def test_textbook_epoch_trains_and_times(tmp_path):
    write_tiny_dataset(tmp_path, "MNIST", n_train=64, n_test=10)
    torch.manual_seed(0)
    model = VAE(hidden_dim=16)
    loader = textbook_loader("mnist", batch_size=16, root=tmp_path)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = textbook_epoch(model, loader, opt)
    for _ in range(5):
        last = textbook_epoch(model, loader, opt)
    assert first["seconds"] > 0 and math.isfinite(first["loss"])
    assert last["loss"] < first["loss"]
