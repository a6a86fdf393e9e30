"""The textbook input pipeline, kept for comparison with the course's.

The seed (like pytorch/examples' VAE) feeds the model through a torchvision data set with a
per-sample ``ToTensor`` transform behind a shuffling ``DataLoader``. The course instead keeps the
split on the device as one tensor and indexes batches (:meth:`vae_lib.data.Split.batches`).
Notebook 04 times one epoch of each; ``benchmarks/`` measures them properly.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import transforms

from .data import torchvision_dataset
from .training import model_loss


def textbook_loader(dataset: str | None = None, batch_size: int = 128, root=None, train: bool = True) -> DataLoader:
    """The textbook VAE's pipeline: ``ToTensor`` + flatten per sample, ``DataLoader(shuffle=True)``. Notebook 04."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda x: x.view(-1))])
    ds = torchvision_dataset(dataset, train=train, transform=transform, root=root)
    return DataLoader(ds, batch_size=batch_size, shuffle=True)


def textbook_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer | None = None,
                   lr: float = 1e-3) -> dict[str, float]:
    """Train ``model`` for one epoch the textbook VAE's way; return the mean loss per image and the seconds.

    Batches are copied to the model's device one by one, as the textbook loop does on a GPU.
    Notebook 04.
    """
    device = next(model.parameters()).device
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start = time.perf_counter()
    total = 0.0
    for data, _ in loader:
        data = data.to(device)
        optimizer.zero_grad()
        loss = model_loss(model, data, reduction="sum", validate=False).loss
        loss.backward()
        total += loss.item()
        optimizer.step()
    return {"loss": total / len(loader.dataset), "seconds": time.perf_counter() - start}
