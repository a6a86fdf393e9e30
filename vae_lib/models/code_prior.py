"""Priors over a grid of discrete codes: uniform, and a small PixelCNN learned on the codes. Notebook 14.

A VQ-VAE is trained with the uniform prior: every one of the K codes equally likely at each of the 49
positions, so -log p(c) = 49 log K for every grid, and the KL of the one-hot posterior is that constant.
Once the autoencoder is trained, a second model learns the distribution of the codes it actually uses,
p(c) = prod_i p(c_i | c_<i) in raster order: a PixelCNN (van den Oord et al., 2016) of masked
convolutions over the 7 x 7 grid, as in the VQ-VAE paper. Both objects answer ``log_prob(codes)``
(N,) in nats and ``sample(n, generator)`` (n, 49), the interface of :mod:`vae_lib.priors`.

:class:`CodePriorFit` lets ``fit`` train the PixelCNN: its ``loss_terms`` encodes the batch's images
with the frozen autoencoder and returns -log p(codes), so the prior is trained by the course's loop
(progress bar, interrupts, per-epoch test evaluation) on the same image splits as every model.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import _check_n, _check_sizes
from .spatial import GRID, POSITIONS


def _check_codes(codes, n_codes: int) -> torch.Tensor:
    if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.ndim != 2 or codes.shape[1] != POSITIONS:
        got = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise ValueError(f"codes must be an integer tensor of shape (N, {POSITIONS}), got {got}")
    if len(codes) and (codes.min() < 0 or codes.max() >= n_codes):
        raise ValueError(f"codes must lie in 0 .. {n_codes - 1}")
    return codes


class UniformCodes:
    """p(c) = K^-49: every grid of codes equally likely (what a VQ-VAE is trained with). Notebook 14."""

    name = "uniform"

    def __init__(self, codes: int):
        _check_sizes(codes=codes)
        self.codes = codes

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(c) per grid (N,), in nats: the sum over the 49 positions of log(1/K)."""
        codes = _check_codes(codes, self.codes)
        per_position = torch.full(codes.shape, -math.log(self.codes), dtype=torch.float64, device=codes.device)
        return per_position.sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` grids (n, 49) of independent uniform codes, drawn on the CPU."""
        return torch.randint(self.codes, (_check_n(n), POSITIONS), generator=generator)


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only the positions before its centre in raster order (type ``"A"``,
    the first layer) or those and its centre (type ``"B"``, the layers after it). Notebook 14."""

    def __init__(self, mask_type: str, in_channels: int, out_channels: int, kernel: int):
        if mask_type not in ("A", "B") or kernel % 2 == 0:
            raise ValueError(f"mask_type must be 'A' or 'B' and the kernel odd, got {mask_type!r}, {kernel}")
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        mask = torch.ones(kernel, kernel)
        centre = kernel // 2
        mask[centre, centre + (mask_type == "B"):] = 0       # the centre's row: only what lies to its left
        mask[centre + 1:] = 0                                # every row below
        self.register_buffer("mask", mask[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNNPrior(nn.Module):
    """An autoregressive prior over a 7 x 7 grid of ``codes`` codes: an embedding of ``channels``
    numbers per code, a 7 x 7 masked convolution of type A (it sees the rows above and the codes to
    the left), ``layers`` residual 3 x 3 masked convolutions of type B, and a 1 x 1 convolution to K
    logits per position. Notebook 14."""

    name = "pixelcnn"

    def __init__(self, codes: int = 512, channels: int = 32, layers: int = 3):
        super().__init__()
        _check_sizes(codes=codes, channels=channels, layers=layers)
        self.codes, self.channels, self.n_layers = codes, channels, layers
        self.embed = nn.Embedding(codes, channels)
        self.first = MaskedConv2d("A", channels, channels, 7)
        self.blocks = nn.ModuleList(MaskedConv2d("B", channels, channels, 3) for _ in range(layers))
        self.head = nn.Conv2d(channels, codes, 1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Logits of p(c_i | c_<i) for every position: (N, K, 7, 7), from codes (N, 49)."""
        codes = _check_codes(codes, self.codes).to(self.device)
        h = self.embed(codes.view(-1, GRID, GRID)).permute(0, 3, 1, 2)
        h = torch.relu(self.first(h))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return self.head(h)

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(c) = sum_i log p(c_i | c_<i) per grid (N,), in nats."""
        codes = _check_codes(codes, self.codes).to(self.device)
        return -F.cross_entropy(self.logits(codes), codes.view(-1, GRID, GRID), reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` grids (n, 49) drawn position by position in raster order; the draws are made on the CPU
        with ``generator`` (the same grids whatever the device). ``temperature`` divides the logits."""
        n = _check_n(n)
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        was_training = self.training
        self.eval()
        codes = torch.zeros(n, POSITIONS, dtype=torch.long)
        for i in range(POSITIONS):
            logits = self.logits(codes)[:, :, i // GRID, i % GRID].float().cpu() / temperature
            codes[:, i] = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1)
        self.train(was_training)
        return codes


class CodePriorFit(nn.Module):
    """The PixelCNN prior of a trained autoencoder, seen by ``fit`` as a model of images.

    ``loss_terms(x)`` encodes ``x`` with the frozen ``autoencoder`` (its codes, in eval mode, without
    gradient) and returns ``(-log p(codes), None, None)``: the reconstruction slot holds the codes'
    negative log-likelihood in nats per image, and there is no KL. So ``fit`` trains only the prior's
    parameters (the autoencoder is held outside the module's parameters) and its history's losses are
    nats per image of the codes. Notebook 14.
    """

    def __init__(self, autoencoder: nn.Module, prior: PixelCNNPrior):
        super().__init__()
        if getattr(autoencoder, "codes", None) != prior.codes:
            raise ValueError(f"the prior has {prior.codes} codes but the autoencoder has "
                             f"{getattr(autoencoder, 'codes', 'none')}: build the prior with as many")
        self.prior = prior
        self._autoencoder = (autoencoder,)           # a tuple: not a submodule, so fit leaves it alone
        self.likelihood = autoencoder.likelihood     # what fit checks the images against

    def loss_terms(self, x: torch.Tensor, y=None, likelihood=None, validate: bool = True):
        codes = self._autoencoder[0].codes_of(x)
        return -self.prior.log_prob(codes), None, None
