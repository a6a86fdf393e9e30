"""Plotting helpers shared by the notebooks: image grids, training curves, saving figures."""
from __future__ import annotations

from pathlib import Path

import matplotlib.patheffects as patheffects
import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid

from .data import INPUT_DIM, as_images
from .utils import figures_dir


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """Tile images into one (H, W) grid on the CPU, for ``imshow``.

    ``images``: flat (N, 784) or (N, 1, 28, 28) pixels in [0, 1]. Introduced in notebook 04.
    """
    if images.ndim == 2:
        images = as_images(images)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"image_grid expects (N, {INPUT_DIM}) or (N, 1, H, W) images, got {tuple(images.shape)}")
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding, pad_value=1.0)
    return grid[0]


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None):
    """Draw a grid of images on ``ax`` (a new figure if none) and return the axes. Notebook 04."""
    if ax is None:
        _, ax = plt.subplots(figsize=(nrow * 0.6 + 0.4, (len(images) + nrow - 1) // nrow * 0.6 + 0.6))
    ax.imshow(image_grid(images, nrow).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_history(history, axes=None):
    """Plot the negative ELBO, reconstruction and KL terms per epoch, train and test.

    Returns the figure. Introduced in notebook 04.
    """
    if len(history) == 0:
        raise ValueError("the history is empty: train for at least one epoch first")
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    else:
        fig = axes[0].figure
    epochs = range(1, len(history) + 1)
    for ax, term, title in zip(axes, ("loss", "recon", "kl"),
                               ("negative ELBO", "reconstruction  E[-log p(x|z)]", "KL(q(z|x) || p(z))")):
        ax.plot(epochs, getattr(history, f"train_{term}"), "o-", label="train")
        if history.test_loss:
            ax.plot(epochs, getattr(history, f"test_{term}"), "s--", label="test")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per image")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return fig


def name_classes(ax, points, labels, classes, fontsize: float = 8.0) -> list:
    """Write each class's name on the plot, at the median of its 2-D points; return the text objects.

    A scatter coloured by class then reads without telling colours apart: each name sits on its own
    cloud, in black with a white outline. ``points``: (N, 2); ``labels``: (N,) integers indexing
    ``classes``; a class with no point gets no name. Introduced in notebook 05.
    """
    points, labels = np.asarray(points, dtype=float), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or labels.shape != (len(points),):
        raise ValueError(f"name_classes expects (N, 2) points and (N,) labels, got {points.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"labels must index the {len(classes)} class names, got values {labels.min()}..{labels.max()}")
    texts = []
    for k, name in enumerate(classes):
        mask = labels == k
        if mask.any():
            x, y = np.median(points[mask], axis=0)
            texts.append(ax.text(x, y, str(name), fontsize=fontsize, ha="center", va="center", zorder=5,
                                 path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")]))
    return texts


def save_figure(fig, name: str, dataset: str | None = None, folder: str | Path | None = None) -> Path:
    """Save ``fig`` as ``<name>_<dataset>.png`` (dataset optional) in :func:`figures_dir`; return the path.

    Notebooks save their key figures with it, e.g. ``save_figure(fig, "04_prior_samples", "mnist")``.
    A learner's run puts them in the gitignored ``outputs/figures/``; ``make course`` refreshes the
    ``figures/`` under version control. Introduced in notebook 01.
    """
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"figure name must be a plain file stem like '04_prior_samples', got {name!r}")
    folder = Path(folder) if folder is not None else figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}_{dataset}" if dataset else name
    path = folder / f"{stem}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
