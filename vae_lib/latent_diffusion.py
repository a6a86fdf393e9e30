"""Latent diffusion: a small DDPM over the 7 x 7 latent grid of a frozen VAE. Notebook 15.

Stable Diffusion is two models. A VAE compresses the image into a small grid of latents; a denoising
diffusion model (DDPM, Ho et al., 2020) learns the distribution of those latents. Here the VAE is
:class:`~vae_lib.models.SpatialVAE` (7 x 7 x c) and the DDPM is small enough for a CPU:

* the forward process: :func:`linear_betas`, :func:`alpha_bars`, :func:`forward_marginal` (the closed
  form of q(z_t | z_0)), :func:`q_sample`, and :func:`run_chain` (the chain itself, step by step);
* the ELBO's terms: :func:`posterior` (q(z_{t-1} | z_t, z_0)), :func:`posterior_variance`, :func:`model_mean`
  (p_theta's mean from a noise prediction), :func:`gaussian_kl` and :func:`noise_weight` (the KL as a weighted squared error);
* :class:`Denoiser` (a few 3 x 3 convolutions with a timestep embedding) and :class:`LatentDiffusion`
  (the simple loss, and the ancestral sampler with fewer steps than training);
* :class:`LatentDiffusionFit`, which lets the course's ``fit`` train the DDPM over a frozen VAE's
  latents, :func:`latent_scale` and :func:`train_or_load_diffusion` (cached like every model);
* :func:`denoising_trajectory` and :func:`draw_denoising`, the explorer's pictures.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import TrainConfig, checkpoint_path, code_fingerprint, train_or_load_stage
from .data import IMAGE_SHAPE, Split
from .models.spatial import GRID, POSITIONS, SpatialVAE
from .training import History, fit
from .utils import set_seed


# ---------------------------------------------------------------------------------------------------
# The forward process and the ELBO's terms (float64 where they are checked)

def linear_betas(steps: int = 200) -> torch.Tensor:
    """Ho et al.'s linear schedule beta_1 .. beta_T (float64, (T,)), rescaled to ``steps`` steps as
    Nichol and Dhariwal (2021) do: from 1e-4 to 0.02 at T = 1000, both times 1000 / T. Notebook 15."""
    if not (isinstance(steps, int) and steps >= 2):
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    scale = 1000 / steps
    return torch.linspace(1e-4 * scale, min(0.02 * scale, 0.999), steps, dtype=torch.float64)


def alpha_bars(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), for every t: (T,). Notebook 15."""
    if not isinstance(betas, torch.Tensor) or betas.ndim != 1 or (betas <= 0).any() or (betas >= 1).any():
        raise ValueError("betas must be a 1-D tensor of numbers strictly between 0 and 1")
    return torch.cumprod(1 - betas, 0)


def forward_marginal(alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z_t | z_0) = N(sqrt(alpha_bar_t) z_0, (1 - alpha_bar_t) I): its mean's factor and its variance.
    Notebook 15."""
    return alpha_bar.sqrt(), 1 - alpha_bar


def _index(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped to broadcast over ``like`` (N, ...), in ``like``'s dtype and device."""
    out = values.to(like.device)[t.to(like.device)].to(like.dtype)
    return out.view(-1, *([1] * (like.ndim - 1)))


def q_sample(z0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z_t = sqrt(alpha_bar_t) z_0 + sqrt(1 - alpha_bar_t) noise: a draw of q(z_t | z_0) in one step,
    for steps ``t`` (N,) counted from 0 (the first noising step). Notebook 15."""
    t = torch.as_tensor(t)
    if t.dtype.is_floating_point or t.dtype == torch.bool or (t.numel() and (t.min() < 0 or t.max() >= len(alpha_bar))):
        raise ValueError(f"t must hold integer steps in 0 .. {len(alpha_bar) - 1}")
    mean_factor, variance = forward_marginal(alpha_bar)
    return _index(mean_factor, t, z0) * z0 + _index(variance, t, z0).sqrt() * noise


def run_chain(z0: torch.Tensor, betas: torch.Tensor, t: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """z_t by running the chain q(z_s | z_{s-1}) = N(sqrt(1 - beta_s) z_{s-1}, beta_s I) for s = 0 .. t:
    what :func:`q_sample` claims to do in one step. Draws on the CPU with ``generator``. Notebook 15."""
    if not (isinstance(t, int) and 0 <= t < len(betas)):
        raise ValueError(f"t must be an integer in 0 .. {len(betas) - 1}, got {t!r}")
    z = z0.double().cpu()
    for s in range(t + 1):
        z = (1 - betas[s]).sqrt() * z + betas[s].sqrt() * torch.randn(z.shape, generator=generator, dtype=z.dtype)
    return z


def posterior(z0: torch.Tensor, zt: torch.Tensor, t: int, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z_{t-1} | z_t, z_0) = N(mean, variance) for step ``t`` >= 1 (Ho et al.'s eq. 7), from the
    schedule alone: variance beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t). Notebook 15."""
    _check_step(t, betas, 1)
    ab = alpha_bars(betas)
    beta, ab_t, ab_prev = betas[t], ab[t], ab[t - 1]
    mean = (ab_prev.sqrt() * beta / (1 - ab_t)) * z0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab_t)) * zt
    return mean, posterior_variance(t, betas)


def posterior_variance(t: int, betas: torch.Tensor) -> torch.Tensor:
    """beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t), the variance of q(z_{t-1} | z_t, z_0) for
    step ``t`` >= 1: the sampler's variance and the ELBO weight's default. Notebook 15."""
    _check_step(t, betas, 1)
    ab = alpha_bars(betas)
    return betas[t] * (1 - ab[t - 1]) / (1 - ab[t])


def _check_step(t, betas: torch.Tensor, first: int = 0) -> None:
    """Refuses a step that is not an integer in first .. T - 1 (Python would wrap t = -1 to T - 1)."""
    if not (isinstance(t, int) and not isinstance(t, bool) and first <= t < len(betas)):
        raise ValueError(f"t must be an integer in {first} .. {len(betas) - 1}, got {t!r}")


def model_mean(zt: torch.Tensor, t: int, betas: torch.Tensor, noise_hat: torch.Tensor) -> torch.Tensor:
    """p_theta(z_{t-1} | z_t)'s mean from a prediction of the noise: (z_t - beta_t / sqrt(1 - alpha_bar_t)
    noise_hat) / sqrt(1 - beta_t), Ho et al.'s eq. 11. Notebook 15."""
    _check_step(t, betas)
    ab = alpha_bars(betas)
    return (zt - betas[t] / (1 - ab[t]).sqrt() * noise_hat) / (1 - betas[t]).sqrt()


def gaussian_kl(mean_q: torch.Tensor, var_q, mean_p: torch.Tensor, var_p) -> torch.Tensor:
    """KL(N(mean_q, var_q I) || N(mean_p, var_p I)) per row, summed over the last dimensions. Notebook 15."""
    var_q = torch.as_tensor(var_q, dtype=mean_q.dtype)
    var_p = torch.as_tensor(var_p, dtype=mean_q.dtype)
    per = 0.5 * (torch.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1)
    return per.flatten(1).sum(1) if per.ndim > 1 else per


def noise_weight(t: int, betas: torch.Tensor, sigma2: float | torch.Tensor | None = None) -> torch.Tensor:
    """lambda_t = beta_t^2 / (2 sigma_t^2 (1 - beta_t) (1 - alpha_bar_t)): the ELBO's term L_{t-1} is
    lambda_t ||noise - noise_hat||^2 plus a constant. ``sigma2`` defaults to the posterior's variance,
    which makes the constant zero. Step ``t`` must be in 1 .. T - 1 (L_0 is a decoder term). Notebook 15."""
    _check_step(t, betas, 1)
    ab = alpha_bars(betas)
    if sigma2 is None:
        sigma2 = posterior_variance(t, betas)
    return betas[t] ** 2 / (2 * sigma2 * (1 - betas[t]) * (1 - ab[t]))


# ---------------------------------------------------------------------------------------------------
# The network and the model

def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sines and cosines of the step ``t`` (N,) at ``dim`` / 2 frequencies, as the Transformer's positions.
    Notebook 15."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], 1)


class Denoiser(nn.Module):
    """noise_theta(z_t, t) on the 7 x 7 grid: a 3 x 3 convolution to ``width`` maps, ``layers`` residual
    3 x 3 convolutions, each told the step through a learned projection of its sinusoidal embedding, and a
    3 x 3 convolution back to ``code_channels``. Each 3 x 3 convolution widens the receptive field by one
    position a side, so an output sees ``layers + 2`` positions in every direction, no further. A corner is
    6 positions from the opposite one: with notebook 15's two residual layers (a 9 x 9 field) a corner sees
    only the 5 x 5 = 25 of the 49 positions nearest it and only the central 3 x 3 outputs see the whole grid;
    with the default three (11 x 11) a corner sees 6 x 6 = 36; four layers would let every output see all
    49. Notebook 15."""

    def __init__(self, code_channels: int, width: int = 32, layers: int = 3):
        super().__init__()
        if not all(isinstance(v, int) and v > 0 for v in (code_channels, width, layers)) or width % 2:
            raise ValueError("code_channels, width and layers must be positive integers, width even")
        self.width = width
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU())
        self.inp = nn.Conv2d(code_channels, width, 3, padding=1)
        self.embed = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(layers))
        self.out = nn.Conv2d(width, code_channels, 3, padding=1)

    def forward(self, zt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.width))
        h = self.inp(zt)
        for conv, proj in zip(self.convs, self.embed):
            h = h + conv(F.silu(h + proj(emb)[:, :, None, None]))
        return self.out(F.silu(h))


class LatentDiffusion(nn.Module):
    """A DDPM over flat latents (N, 49 c) of a :class:`~vae_lib.models.SpatialVAE`, divided by ``scale``.

    ``loss(z0)`` is Ho et al.'s simple loss per latent grid, ||noise - noise_theta(z_t, t)||^2 at a step t
    drawn uniformly; ``sample`` runs the ancestral sampler, on all T steps or fewer, and returns latents
    in the VAE's units (times ``scale``). Notebook 15.
    """

    def __init__(self, code_channels: int, width: int = 32, layers: int = 3, steps: int = 200, scale: float = 1.0):
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        super().__init__()
        self.code_channels = code_channels
        self.net = Denoiser(code_channels, width, layers)
        self.register_buffer("betas", linear_betas(steps))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))

    @property
    def steps(self) -> int:
        return len(self.betas)

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def _grid(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.code_channels * POSITIONS:
            raise ValueError(f"latents must have shape (N, {self.code_channels * POSITIONS}), got {tuple(z.shape)}")
        return z.reshape(-1, self.code_channels, GRID, GRID)

    def predict_noise(self, zt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """noise_theta(z_t, t) for flat scaled latents ``zt`` (N, 49 c) at steps ``t`` (N,)."""
        return self.net(self._grid(zt).float(), t).flatten(1)

    def loss(self, z0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The simple loss per grid (N,): ||noise - noise_theta(z_t, t)||^2 for scaled latents ``z0``."""
        self._grid(z0)
        if t is None:
            t = torch.randint(self.steps, (len(z0),), device=z0.device)
        if noise is None:
            noise = torch.randn_like(z0)
        zt = q_sample(z0, t, alpha_bars(self.betas), noise)
        return (self.predict_noise(zt, t) - noise).pow(2).flatten(1).sum(1)

    def timesteps(self, steps: int | None = None) -> torch.Tensor:
        """The steps the sampler visits, last first: all T, or ``steps`` of them evenly spread. The list
        always starts at T - 1, where z_T ~ N(0, I) is drawn, and ends at 0; one step visits T - 1 alone."""
        if steps is None:
            steps = self.steps
        if not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= self.steps):
            raise ValueError(f"steps must be an integer in 1 .. {self.steps}, got {steps!r}")
        return torch.linspace(self.steps - 1, 0, steps, dtype=torch.float64).round().long().unique_consecutive()

    def respaced_betas(self, visited: torch.Tensor) -> torch.Tensor:
        """The betas of the shorter chain through the steps ``visited`` (last first), first step first:
        beta'_k = 1 - alpha_bar_{s_k} / alpha_bar_{s_{k-1}}, so the chain keeps the visited steps' alpha_bar
        (Nichol and Dhariwal, 2021). Float64 on the CPU. Notebook 15."""
        ab = alpha_bars(self.betas).cpu()[visited.flip(0)]
        return 1 - ab / torch.cat([ab.new_ones(1), ab[:-1]])

    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, generator: torch.Generator | None = None,
               trajectory: bool = False):
        """``n`` latents (n, 49 c) in the VAE's units from z_T ~ N(0, I), by ancestral sampling on
        ``steps`` of the T steps (all by default). On fewer steps the chain is respaced (Nichol and
        Dhariwal, 2021): the visited steps keep their alpha_bar and the betas between them follow.
        Each step draws from N(model mean, posterior variance); the last returns the mean. Draws on the
        CPU with ``generator``. With ``trajectory``, also the list of (step, z_t, predicted z_0), in the
        VAE's units."""
        was_training = self.training
        self.eval()
        visited = self.timesteps(steps)
        betas = self.respaced_betas(visited)       # the formulas below are the ELBO's, on the shorter chain
        ab = alpha_bars(betas)
        dim = self.code_channels * POSITIONS
        z = torch.randn(n, dim, generator=generator, dtype=torch.float64)
        path = []
        for i, t in enumerate(visited.tolist()):
            k = len(visited) - 1 - i                   # the step's index in the shorter chain
            tt = torch.full((n,), t, dtype=torch.long, device=self.device)
            noise_hat = self.predict_noise(z.to(self.device), tt).double().cpu()
            if trajectory:
                z0_hat = (z - (1 - ab[k]).sqrt() * noise_hat) / ab[k].sqrt()
                path.append((t, (z * self.scale.cpu()).float(), (z0_hat * self.scale.cpu()).float()))
            mean = model_mean(z, k, betas, noise_hat)
            if k > 0:
                z = mean + posterior_variance(k, betas).sqrt() * torch.randn(z.shape, generator=generator, dtype=z.dtype)
            else:
                z = mean
        self.train(was_training)
        out = (z * self.scale.cpu()).float().to(self.device)
        return (out, path) if trajectory else out


class LatentDiffusionFit(nn.Module):
    """The DDPM over a frozen VAE's latents, seen by ``fit`` as a model of images.

    ``loss_terms(x)`` encodes ``x`` with the frozen ``vae`` (eval mode, no gradient), draws z ~ q_phi(z|x),
    divides by the diffusion's scale and returns ``(simple loss, None, None)`` (N,): so ``fit`` trains only
    the denoiser with the course's loop, and the history's losses are the simple loss per grid. What it
    does not share with a VAE: there is no KL and no decoder in the objective. Notebook 15.
    """

    def __init__(self, vae: SpatialVAE, diffusion: LatentDiffusion):
        super().__init__()
        if getattr(vae, "code_channels", None) != diffusion.code_channels:
            raise ValueError("the diffusion model needs as many channels as the VAE's latent grid")
        self.diffusion = diffusion
        self._vae = (vae,)                    # a tuple: not a submodule, so fit trains the denoiser only
        self.likelihood = vae.likelihood      # what fit checks the images against

    def loss_terms(self, x: torch.Tensor, y=None, likelihood=None, validate: bool = True):
        vae = self._vae[0]
        with torch.no_grad():
            was_training = vae.training
            vae.eval()
            mu, logvar = vae.encode(x)
            vae.train(was_training)
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        return self.diffusion.loss(z / self.diffusion.scale.float()), None, None


@torch.no_grad()
def encode_latents(vae: SpatialVAE, images: torch.Tensor, generator: torch.Generator | None = None,
                   batch_size: int = 2000) -> torch.Tensor:
    """Draws z ~ q_phi(z|x) (N, 49 c) for ``images``, the latents a diffusion model learns, in eval mode;
    the noise is drawn on the CPU with ``generator``. Notebook 15."""
    was_training = vae.training
    vae.eval()
    out = []
    for s in range(0, len(images), batch_size):
        mu, logvar = vae.encode(images[s:s + batch_size].to(vae.device))
        noise = torch.randn(mu.shape, generator=generator).to(mu.device)
        out.append((mu + (0.5 * logvar).exp() * noise).cpu())
    vae.train(was_training)
    return torch.cat(out)


def latent_scale(latents: torch.Tensor) -> float:
    """The scale factor: the standard deviation of all the numbers of ``latents`` (N, D), as Stable
    Diffusion's 0.18215 is 1 / (its latents' standard deviation, measured on a batch). Notebook 15."""
    if not isinstance(latents, torch.Tensor) or latents.ndim != 2 or latents.numel() < 2:
        raise ValueError("latents must be a 2-D tensor with at least two numbers")
    scale = float(latents.double().std())
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"the latents' standard deviation is {scale}: constant or non-finite latents have no scale")
    return scale


# ---------------------------------------------------------------------------------------------------
# Cached training

@dataclass(frozen=True)
class DiffusionConfig:
    """A latent DDPM: its network, its T steps, whether latents are scaled, and its training. Notebook 15."""

    width: int = 32
    layers: int = 3
    steps: int = 200
    scaled: bool = True
    epochs: int = 1
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0

    def build(self, code_channels: int, scale: float = 1.0) -> LatentDiffusion:
        return LatentDiffusion(code_channels, self.width, self.layers, self.steps, scale)


def diffusion_path(vae: TrainConfig, config: DiffusionConfig, folder: str | Path | None = None) -> Path:
    """Where the DDPM ``config`` over the latents of the VAE trained as ``vae`` is cached. Notebook 15."""
    key = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:12]
    ae = checkpoint_path(vae, folder)
    return ae.with_name(f"ddpm-e{config.epochs}_{key}_over_{ae.name}")


def train_or_load_diffusion(vae_config: TrainConfig, vae: SpatialVAE, config: DiffusionConfig, train: Split,
                            test: Split | None = None, folder: str | Path | None = None, progress: bool = True,
                            log=print) -> tuple[LatentDiffusion, History]:
    """The DDPM ``config`` over the latents of ``vae`` (trained as ``vae_config``): loaded from its
    checkpoint, or trained with ``fit`` (:class:`LatentDiffusionFit`) on ``train`` and saved atomically.

    With ``config.scaled`` the scale is :func:`latent_scale` of the training images' latents (drawn
    with a generator seeded by ``config.seed``), else 1. The checkpoint records both configurations
    and the code's fingerprint and is read with ``weights_only=True``; one that does not fit is
    reported through ``log`` and retrained. Notebook 15.
    """
    if not isinstance(vae, SpatialVAE):
        raise ValueError(f"vae must be a SpatialVAE, got {type(vae).__name__}")
    if vae_config.dataset != train.dataset:
        raise ValueError(f"the VAE was trained on {vae_config.dataset!r} but the split is {train.dataset!r}")
    path = diffusion_path(vae_config, config, folder)
    meta = {"vae": vae_config.to_dict(), "diffusion": asdict(config),
            "code": code_fingerprint(vae_config.model, ("latent_diffusion",))}

    def new_model() -> LatentDiffusion:
        scale = 1.0
        if config.scaled:
            scale = latent_scale(encode_latents(vae, train.images, torch.Generator().manual_seed(config.seed)))
        set_seed(config.seed)
        return config.build(vae.code_channels, scale)

    def train_model(model: LatentDiffusion) -> History:
        return fit(LatentDiffusionFit(vae, model), train, test, epochs=config.epochs, batch_size=config.batch_size,
                   lr=config.lr, progress=progress)

    return train_or_load_stage(path, meta, lambda: config.build(vae.code_channels), new_model, train_model,
                               "latent diffusion model", train.device, log)


# ---------------------------------------------------------------------------------------------------
# The explorer

@torch.no_grad()
def denoising_trajectory(diffusion: LatentDiffusion, vae: SpatialVAE, n: int = 8, steps: int = 50,
                         generator: torch.Generator | None = None) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """The sampler's path for ``n`` samples on ``steps`` steps, decoded: a list, one entry per step from
    noise to the end, of (t, images decoded from z_t, images decoded from the predicted z_0), each
    (n, 784) on the CPU. Notebook 15."""
    _, path = diffusion.sample(n, steps, generator, trajectory=True)
    was_training = vae.training
    vae.eval()
    out = [(t, vae.decode(zt.to(vae.device)).cpu(), vae.decode(z0.to(vae.device)).cpu()) for t, zt, z0 in path]
    vae.train(was_training)
    return out


def draw_denoising(trajectory: list, step: int):
    """The explorer's picture: at the sampler's ``step``-th step (0: pure noise), the images decoded from
    z_t (top row) and from the model's prediction of z_0 (bottom row). Notebook 15."""
    if not (isinstance(step, int) and 0 <= step < len(trajectory)):
        raise ValueError(f"step must be an integer in 0 .. {len(trajectory) - 1}, got {step!r}")
    t, from_zt, from_z0 = trajectory[step]
    n = len(from_zt)
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.9), squeeze=False)
    for row, (images, label) in enumerate(((from_zt, "decoded z_t"), (from_z0, "decoded prediction of z_0"))):
        for i in range(n):
            ax = axes[row, i]
            ax.imshow(images[i].view(*IMAGE_SHAPE[1:]).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
        axes[row, 0].set_title(label, fontsize=9, loc="left")
    fig.suptitle(f"sampler step {step} of {len(trajectory) - 1} (diffusion step t = {t + 1})", fontsize=10)
    fig.tight_layout()
    return fig
