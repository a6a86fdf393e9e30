"""A small synthetic split for training tests: two clusters of images a tiny model learns quickly."""
import torch

from vae_lib.data import Split


def make_split(n=256, train=True, seed=0):
    """Two clusters of simple binary-ish images, so a tiny model can learn something quickly."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    base = torch.zeros(2, 784)
    base[0, :392], base[1, 392:] = 0.9, 0.9
    images = (base[labels] + 0.05 * torch.rand(n, 784, generator=g)).clamp(0, 1)
    return Split(images, labels, ("top", "bottom"), "mnist", train)
