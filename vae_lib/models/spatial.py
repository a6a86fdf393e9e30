"""Models whose code is a grid: a 7 x 7 map of vectors instead of one vector per image.

Notebook 08's convolutional VAE ends its encoder in a linear layer that flattens the 7 x 7 feature maps
into one code. Here the code keeps the grid: a 1 x 1 convolution turns the 7 x 7 feature maps into a
few numbers per position. That is the shape of the latents of the VQ-VAE (notebook 14) and of Stable
Diffusion's autoencoder. :func:`grid_encoder` and :func:`grid_decoder` are the two halves
that every such model shares; :class:`SpatialVAE` puts a Gaussian posterior on the grid and serves the
course's model interface (:class:`~vae_lib.models.VAEBase`) on flat codes of 49 c numbers. Notebook 14.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..data import IMAGE_SHAPE, INPUT_DIM
from ..likelihoods import Likelihood
from .base import VAEBase, _check_sizes, check_input
from .conv import KERNEL, PADDING, STRIDE, _channels_last

#: The side of the code grid: 28 -> 14 -> 7 through two strided convolutions.
GRID = 7
POSITIONS = GRID * GRID


def grid_encoder(channels: int, out_channels: int) -> nn.Sequential:
    """Images (N, 1, 28, 28) to a grid (N, out_channels, 7, 7): notebook 08's two strided 4 x 4
    convolutions (``channels`` then ``2 channels`` feature maps, ReLU), a 3 x 3 convolution that lets
    each position see its neighbours, and a 1 x 1 convolution to ``out_channels`` numbers per position.
    Notebook 14."""
    _check_sizes(channels=channels, out_channels=out_channels)
    c1, c2 = channels, 2 * channels
    return nn.Sequential(nn.Conv2d(1, c1, KERNEL, STRIDE, PADDING), nn.ReLU(),
                         nn.Conv2d(c1, c2, KERNEL, STRIDE, PADDING), nn.ReLU(),
                         nn.Conv2d(c2, c2, 3, 1, 1), nn.ReLU(),
                         nn.Conv2d(c2, out_channels, 1))


def grid_decoder(channels: int, in_channels: int, params_per_pixel: int) -> nn.Sequential:
    """A grid (N, in_channels, 7, 7) to the likelihood's numbers (N, params_per_pixel, 28, 28): the
    encoder's mirror, a 1 x 1 and a 3 x 3 convolution at 7 x 7, then notebook 08's two transposed
    convolutions. Notebook 14."""
    _check_sizes(channels=channels, in_channels=in_channels, params_per_pixel=params_per_pixel)
    c1, c2 = channels, 2 * channels
    return nn.Sequential(nn.Conv2d(in_channels, c2, 1), nn.ReLU(),
                         nn.Conv2d(c2, c2, 3, 1, 1), nn.ReLU(),
                         nn.ConvTranspose2d(c2, c1, KERNEL, STRIDE, PADDING), nn.ReLU(),
                         nn.ConvTranspose2d(c1, params_per_pixel, KERNEL, STRIDE, PADDING))


def to_grid(x: torch.Tensor, what: str) -> torch.Tensor:
    """Flat images (N, 784) as (N, 1, 28, 28), stored channels-last (faster on a CPU, same values). Notebook 14."""
    check_input(x, INPUT_DIM, what)
    return _channels_last(x.view(-1, *IMAGE_SHAPE))


class SpatialVAE(VAEBase):
    """A VAE whose code is a 7 x 7 grid of ``code_channels`` Gaussian numbers per position.

    q_phi(z|x) = N(mu, diag sigma^2) over all 49 ``code_channels`` numbers, p(z) = N(0, I), and the
    decoder reads the grid. To the rest of the course it is an ordinary VAE with ``latent_dim`` =
    49 ``code_channels``: ``encode`` returns flat (N, 49 c) codes (channel by channel, as
    ``Tensor.flatten`` orders (N, c, 7, 7)), so ``fit``, ``evaluate``, the importance-sampling bounds
    and the priors serve it unchanged. It is the continuous model that notebook 14 sets beside the
    VQ-VAE with the same encoder and decoder, and the shape of latent diffusion's first stage.
    """

    def __init__(self, code_channels: int = 4, channels: int = 16, likelihood: Likelihood | str = "discretized-logistic"):
        _check_sizes(code_channels=code_channels, channels=channels)
        super().__init__(code_channels * POSITIONS, INPUT_DIM, likelihood)
        self.code_channels, self.channels = code_channels, channels
        self.encoder = grid_encoder(channels, 2 * code_channels)
        self.decoder = grid_decoder(channels, code_channels, self.likelihood.params_per_pixel)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each (N, 49 c), for flat images ``x`` (N, 784)."""
        h = self.encoder(to_grid(x, "SpatialVAE.encode"))
        mu, logvar = h.chunk(2, dim=1)
        return mu.flatten(1), logvar.flatten(1)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's raw outputs (N, P * 784) for flat codes ``z`` (N, 49 c)."""
        check_input(z, self.latent_dim, "SpatialVAE.decode")
        grid = _channels_last(z.reshape(-1, self.code_channels, GRID, GRID))
        return self.decoder(grid).flatten(1)
