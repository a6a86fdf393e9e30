"""The latent space of a trained model: codes, the prior's quantile grid, interpolation, explorers.

Everything here works on a trained :class:`~vae_lib.models.VAE` (whose code for an image is the
posterior mean mu of q_phi(z|x)) and, where it makes sense, on a plain
:class:`~vae_lib.models.AutoEncoder` (whose code is the point z). The plotting functions draw
on matplotlib axes and return them, so a notebook can place them where it likes; the slider
explorer's drawing function, :func:`draw_latent_explorer`, is a plain function that the widget
calls. Introduced in notebook 05; notebook 06 reuses it for the autoencoder.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn

from .data import INPUT_DIM
from .models import AutoEncoder, VAEBase
from .plots import image_grid, name_classes
from .priors import StandardNormal

#: The radii (in standard deviations) of the prior's contours that the plots draw.
PRIOR_RADII = (1.0, 2.0, 3.0)


# --------------------------------------------------------------------------- checks


def _check_model(model, what: str = "model", latent_dim: int | None = None) -> None:
    if not isinstance(model, (VAEBase, AutoEncoder)):
        raise ValueError(f"{what} must be a vae_lib VAE or AutoEncoder, got {type(model).__name__}")
    if latent_dim is not None and model.latent_dim != latent_dim:
        raise ValueError(f"{what} has a {model.latent_dim}-D latent space; this needs {latent_dim}-D codes")


def _check_images(images, what: str = "images") -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor of flat images, got {type(images).__name__}")
    if images.ndim != 2 or images.shape[1] != INPUT_DIM or len(images) == 0:
        raise ValueError(f"{what} must have shape (N, {INPUT_DIM}) with N >= 1, got {tuple(images.shape)}")


def _check_codes(codes, what: str = "codes", dim: int | None = 2) -> None:
    if not isinstance(codes, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor of shape (N, latent_dim), got {type(codes).__name__}")
    if codes.ndim != 2 or len(codes) == 0 or (dim is not None and codes.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "(N, latent_dim)"
        raise ValueError(f"{what} must have shape {want} with N >= 1, got {tuple(codes.shape)}")
    if not torch.isfinite(codes).all():
        raise ValueError(f"{what} contains NaN or inf")


def _check_labels(labels, classes, n: int) -> None:
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,) or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor of shape ({n},), one per code; got {shape}")
    if isinstance(classes, str) or not isinstance(classes, Sequence) or len(classes) == 0:
        raise ValueError("classes must be a sequence of class names, indexed by label")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(f"labels must lie in [0, {len(classes) - 1}] to name a class; got "
                         f"[{labels.min().item()}, {labels.max().item()}]")


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --------------------------------------------------------------------------- codes


@torch.no_grad()
def latent_codes(model: nn.Module, images: torch.Tensor, batch_size: int = 2000,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
    """The code of each image: the posterior mean mu of q_phi(z|x) for a VAE, z for an autoencoder.

    ``images``: flat (N, 784) pixels; ``labels``: their labels, for a conditional VAE's q_phi(z|x, y)
    (notebook 11). Returns an (N, latent_dim) tensor on the CPU, computed in batches in eval mode (the
    mode is restored). Introduced in notebook 05.
    """
    _check_model(model)
    _check_images(images)
    _positive_int(batch_size, "batch_size")
    was_training = model.training
    model.eval()
    device = _device(model)
    parts = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        code = model.encode(x) if labels is None else model.encode(x, labels[start : start + batch_size].to(device))
        parts.append((code[0] if isinstance(model, VAEBase) else code).cpu())
    model.train(was_training)
    return torch.cat(parts)


@torch.no_grad()
def aggregate_posterior_sample(model: VAEBase, images: torch.Tensor, generator: torch.Generator | None = None,
                               batch_size: int = 2000) -> torch.Tensor:
    """One draw z_n ~ q_phi(z|x_n) for each image: a sample from the aggregate posterior.

    The aggregate posterior q(z) = (1/N) sum_n q_phi(z|x_n) is the distribution of codes the
    decoder sees; the KL term pulls it towards the prior N(0, I). ``generator`` (on the CPU) makes
    the draw reproducible. Returns an (N, latent_dim) tensor on the CPU. Introduced in notebook 05.
    """
    if not isinstance(model, VAEBase):
        raise ValueError(f"model must be a VAE (an autoencoder has no posterior to sample), got {type(model).__name__}")
    _check_images(images)
    _positive_int(batch_size, "batch_size")
    if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
        raise ValueError("generator must be a torch.Generator on the CPU")
    was_training = model.training
    model.eval()
    device = _device(model)
    parts = []
    for start in range(0, len(images), batch_size):
        mu, logvar = model.encode(images[start : start + batch_size].to(device))
        eps = torch.randn(mu.shape, generator=generator)
        parts.append(mu.cpu() + torch.exp(0.5 * logvar.cpu()) * eps)
    model.train(was_training)
    return torch.cat(parts)


def quantile_grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points of the 2-D prior N(0, I) at the quantiles (i + 1/2) / n of each coordinate.

    Each coordinate takes the n values z_i = Phi^{-1}((i + 1/2) / n), Phi being the standard
    normal CDF, so each of the n x n cells holds the same prior mass 1/n^2 (Kingma and Welling's
    manifold figure uses the same inverse-CDF trick). Returns ``(values, z)``: the n values in
    increasing order, and the (n * n, 2) grid in reading order of an image grid, top row first:
    row r has z_2 = values[n - 1 - r] (z_2 grows upwards, as on a scatter plot), column c has
    z_1 = values[c]. Introduced in notebook 05.
    """
    _positive_int(n, "n", minimum=2)
    p = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    values = torch.special.ndtri(p).float()
    z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")
    return values, torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)


def interpolate(z_start: torch.Tensor, z_end: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` codes evenly spaced on the straight line from ``z_start`` to ``z_end``, both included.

    ``z_start`` and ``z_end``: 1-D tensors of the same length (one code each). Returns a
    (steps, latent_dim) tensor, z(t) = (1 - t) z_start + t z_end for t = 0, 1/(steps-1), ..., 1.
    Introduced in notebook 05.
    """
    for name, z in (("z_start", z_start), ("z_end", z_end)):
        if not isinstance(z, torch.Tensor) or z.ndim != 1 or len(z) == 0:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"{name} must be one code, a 1-D tensor of shape (latent_dim,), got {shape}")
    if z_start.shape != z_end.shape:
        raise ValueError(f"z_start and z_end must have the same shape, got {tuple(z_start.shape)} and {tuple(z_end.shape)}")
    _positive_int(steps, "steps", minimum=2)
    t = torch.linspace(0, 1, steps, dtype=z_start.dtype, device=z_start.device).unsqueeze(1)
    return (1 - t) * z_start + t * z_end.to(z_start.device)


@torch.no_grad()
def decode(model: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Decode codes ``z`` (N, latent_dim) into pixel means (N, 784) on the CPU, in eval mode.

    ``y``: labels, for a conditional model. Introduced in notebook 05.
    """
    _check_model(model)
    _check_codes(z, "z", dim=model.latent_dim)
    was_training = model.training
    model.eval()
    y = None if y is None else y.to(_device(model))
    x = model.decode(z.to(_device(model), torch.float32), y).cpu()
    model.train(was_training)
    return x


# --------------------------------------------------------------------------- plots


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _subsample(n: int, max_points: int | None, seed: int = 0) -> torch.Tensor:
    if max_points is None or n <= max_points:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points]


def plot_prior_contours(ax, radii: Sequence[float] = PRIOR_RADII, color: str = "0.2", label: bool = True):
    """Draw the contours of the prior N(0, I) in 2-D: circles of radius r standard deviations.

    The density of N(0, I) depends on z only through |z|, so its contour lines are circles; the
    circle of radius r holds 1 - exp(-r^2 / 2) of the prior's mass (39%, 86%, 99% for 1, 2, 3).
    Returns ``ax``. Introduced in notebook 05.
    """
    if isinstance(radii, (int, float)):
        radii = (radii,)
    if len(radii) == 0 or any(not (isinstance(r, (int, float)) and r > 0 and math.isfinite(r)) for r in radii):
        raise ValueError(f"radii must be positive numbers (standard deviations), got {radii!r}")
    angle = np.linspace(0, 2 * np.pi, 200)
    for r in radii:
        ax.plot(r * np.cos(angle), r * np.sin(angle), color=color, lw=1, ls="--", zorder=3)
        if label:
            ax.annotate(f"{r:g}σ", (r * np.cos(np.pi / 4), r * np.sin(np.pi / 4)), color=color, fontsize=8,
                        xytext=(2, 2), textcoords="offset points", zorder=3)
    return ax


def plot_latent_scatter(codes: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], ax=None,
                        max_points: int | None = 5000, prior: bool = False, legend: bool = True,
                        size: float = 3.0, title: str | None = None, names: bool = True):
    """Scatter 2-D codes coloured by class, with a legend of class names. Returns the axes.

    ``codes``: (N, 2); ``labels``: (N,) integers indexing ``classes``. At most ``max_points``
    codes are drawn, a fixed random subset (so the picture does not change between runs).
    ``names`` writes each class's name on its cloud (:func:`vae_lib.plots.name_classes`), so that
    the plot does not rely on colour alone.
    ``prior`` adds the contours of N(0, I) at 1, 2 and 3 standard deviations. Introduced in
    notebook 05.
    """
    _check_codes(codes)
    _check_labels(labels, classes, len(codes))
    if max_points is not None:
        _positive_int(max_points, "max_points")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.8, 4.6))
    idx = _subsample(len(codes), max_points)
    points, point_labels = _numpy(codes[idx]), _numpy(labels[idx].cpu())
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for k, name in enumerate(classes):
        mask = point_labels == k
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=size, color=cmap(k % cmap.N), label=name,
                       alpha=0.7, linewidths=0, rasterized=True)
    if names:
        name_classes(ax, points, point_labels, classes, fontsize=7)
    if prior:
        plot_prior_contours(ax)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_aspect("equal", adjustable="datalim")
    if legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=4,
                  frameon=False, handletextpad=0.2)
    if title:
        ax.set_title(title)
    return ax


def plot_aggregate_posterior(z: torch.Tensor, lim: float = 4.0, bins: int = 60):
    """Compare samples ``z`` (N, 2) of the aggregate posterior with the prior N(0, I). Returns the figure.

    Left: a 2-D histogram of the samples with the prior's contours at 1, 2, 3 standard deviations.
    Middle and right: the histogram of each coordinate against the N(0, 1) density. Introduced in
    notebook 05.
    """
    _check_codes(z, "z")
    if not (isinstance(lim, (int, float)) and lim > 0 and math.isfinite(lim)):
        raise ValueError(f"lim must be a positive number, got {lim!r}")
    _positive_int(bins, "bins", minimum=2)
    points = _numpy(z)
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.5), gridspec_kw={"width_ratios": [1.15, 1, 1]})
    axes[0].hist2d(points[:, 0], points[:, 1], bins=bins, range=[[-lim, lim], [-lim, lim]], cmap="Blues")
    plot_prior_contours(axes[0], color="C3")
    axes[0].set_aspect("equal")
    axes[0].set_xlabel("$z_1$")
    axes[0].set_ylabel("$z_2$")
    axes[0].set_title("aggregate posterior q(z), prior contours")
    grid = np.linspace(-lim, lim, 400)
    density = np.exp(-grid**2 / 2) / math.sqrt(2 * math.pi)
    for j, ax in enumerate(axes[1:]):
        ax.hist(points[:, j], bins=bins, range=(-lim, lim), density=True, color="C0", alpha=0.6,
                label="q(z)")
        ax.plot(grid, density, color="C3", label="N(0, 1)")
        ax.set_xlabel(f"$z_{j + 1}$")
        ax.set_title(f"marginal of $z_{j + 1}$")
        ax.legend(fontsize=8)
    axes[1].set_ylabel("density")
    fig.tight_layout()
    return fig


def plot_manifold(model: nn.Module, n: int = 20, ax=None, title: str | None = None):
    """Decode the n x n :func:`quantile_grid` of the prior and tile the images. Returns the axes.

    The tick labels give the z value of a few rows and columns; z_2 grows upwards. The model
    must have a 2-D latent space and the standard normal prior (whose quantiles these are; a learned
    prior gets a ``ValueError``). Introduced in notebook 05.
    """
    _check_model(model, latent_dim=2)
    _positive_int(n, "n", minimum=2)
    prior = getattr(model, "prior", None)
    if prior is not None and not isinstance(prior, StandardNormal):
        raise ValueError(f"plot_manifold tiles the quantiles of N(0, I), but this model's prior is {prior.name!r}; "
                         "draw it with vae_lib.priors.draw_prior_density, or decode its samples")
    values, z = quantile_grid(n)
    images = decode(model, z)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 6.5))
    ax.imshow(image_grid(images, nrow=n, padding=0).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ticks = sorted({0, n // 4, n // 2, (3 * n) // 4, n - 1})
    centres = [28 * i + 14 for i in ticks]
    ax.set_xticks(centres, [f"{values[i]:.2f}" for i in ticks])
    ax.set_yticks(centres, [f"{values[n - 1 - i]:.2f}" for i in ticks])
    ax.set_xlabel("$z_1$ (prior quantiles)")
    ax.set_ylabel("$z_2$ (prior quantiles)")
    if title:
        ax.set_title(title)
    return ax


def draw_latent_explorer(models, z1: float, z2: float, codes, labels: torch.Tensor, classes: Sequence[str],
                         max_points: int = 2000, lim: float | None = None):
    """Decode the point z = (z1, z2) and mark it on the latent scatter. Returns the figure.

    The drawing function of notebook 05's slider explorer: ``models`` is one model with a 2-D
    latent space and ``codes`` its (N, 2) codes of the images labelled ``labels``; or, as in
    notebook 06, ``models`` and ``codes`` are dicts keyed by the same names (for example
    ``{"VAE": vae, "autoencoder": ae}``) and the same z goes through every decoder. Each model gets
    a scatter of its codes with z marked, and the decoded image. ``lim`` fixes the scatter's axes
    to [-lim, lim] (default: fit the codes and z). Introduced in notebook 05.
    """
    if not isinstance(models, Mapping):
        models, codes = {"": models}, {"": codes}
    if not models:
        raise ValueError("models must be a model or a non-empty dict of name -> model")
    if not isinstance(codes, Mapping) or set(codes) != set(models):
        raise ValueError("codes must have the same form as models: one (N, 2) tensor, or a dict with the same keys")
    for name, model in models.items():
        _check_model(model, f"models[{name!r}]" if name else "model", latent_dim=2)
        _check_codes(codes[name], f"codes[{name!r}]" if name else "codes")
        _check_labels(labels, classes, len(codes[name]))
    for name, value in (("z1", z1), ("z2", z2)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if lim is not None and not (isinstance(lim, (int, float)) and lim > 0 and math.isfinite(lim)):
        raise ValueError(f"lim must be a positive number or None, got {lim!r}")
    _positive_int(max_points, "max_points")

    k = len(models)
    fig, axes = plt.subplots(1, 2 * k, figsize=(5.6 * k, 2.9),
                             gridspec_kw={"width_ratios": [1.3, 1] * k})
    z = torch.tensor([[float(z1), float(z2)]])
    for i, (name, model) in enumerate(models.items()):
        ax_scatter, ax_image = axes[2 * i], axes[2 * i + 1]
        plot_latent_scatter(codes[name], labels, classes, ax=ax_scatter, max_points=max_points, legend=False,
                            size=2.0)
        ax_scatter.plot([z1], [z2], marker="X", color="black", markersize=11, markeredgecolor="white", zorder=5)
        if lim is not None:
            ax_scatter.set_aspect("equal", adjustable="box")
            ax_scatter.set_xlim(-lim, lim)
            ax_scatter.set_ylim(-lim, lim)
        ax_scatter.set_title(f"{name + ' ' if name else ''}codes, z = ({z1:.2f}, {z2:.2f})", fontsize=10)
        image = decode(model, z)
        ax_image.imshow(image.reshape(28, 28).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax_image.set_axis_off()
        ax_image.set_title(f"{name + ' ' if name else ''}decoder", fontsize=10)
    fig.tight_layout()
    return fig
