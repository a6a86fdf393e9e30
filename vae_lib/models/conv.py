"""The convolutional VAE of notebook 08, and the arithmetic of (transposed) convolutions.

Encoder: two strided 4x4 convolutions, 28 -> 14 -> 7 pixels a side, then linear heads for mu and
log sigma^2. Decoder: a linear layer back to a 7x7 grid of feature maps, then two strided 4x4
transposed convolutions, 7 -> 14 -> 28, the last one with one output channel per number the
likelihood needs per pixel. The data stay flat (N, 784): the model reshapes to (N, 1, 28, 28)
inside, so ``fit``, ``evaluate`` and every estimator treat it like the MLP (:class:`~vae_lib.models.VAEBase`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..data import IMAGE_SHAPE, INPUT_DIM
from ..likelihoods import Likelihood
from .base import VAEBase, _check_sizes, check_input

KERNEL, STRIDE, PADDING = 4, 2, 1


def _ints(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Side of a convolution's output: floor((size + 2 padding - kernel) / stride) + 1.

    The kernel's first position covers input pixels 0..kernel-1 of the padded input; each step moves
    it ``stride`` pixels, and it must stay inside the size + 2 padding padded pixels. Notebook 08.
    """
    _ints(size=size, kernel=kernel, stride=stride, padding=padding)
    if kernel < 1 or stride < 1:
        raise ValueError("kernel and stride must be at least 1")
    if size + 2 * padding < kernel:
        raise ValueError(f"a {kernel}-pixel kernel does not fit in {size} pixels padded by {padding}")
    return (size + 2 * padding - kernel) // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0) -> int:
    """Side of a transposed convolution's output: (size - 1) stride - 2 padding + kernel + output_padding.

    Each input pixel stamps a kernel-sized patch; neighbouring patches start ``stride`` apart, so the
    last one ends at (size - 1) stride + kernel, and ``padding`` crops that much from both sides. It
    inverts :func:`conv_output_size` whenever (size + 2 padding - kernel) is divisible by the stride
    (``output_padding`` picks among the sizes the floor maps to the same output). Notebook 08.
    """
    _ints(size=size, kernel=kernel, stride=stride, padding=padding, output_padding=output_padding)
    if kernel < 1 or stride < 1 or size < 1:
        raise ValueError("size, kernel and stride must be at least 1")
    if output_padding >= stride:
        raise ValueError(f"output_padding must be smaller than the stride, got {output_padding} >= {stride}")
    out = (size - 1) * stride - 2 * padding + kernel + output_padding
    if out < 1:
        raise ValueError(f"padding {padding} crops away the whole output")
    return out


def _channels_last(h: torch.Tensor) -> torch.Tensor:
    # Feature maps stored pixel by pixel (all channels of a pixel together): on a CPU the oneDNN
    # kernels of these small (transposed) convolutions run up to twice as fast that way. The values
    # are the same; only the memory layout differs.
    return h.contiguous(memory_format=torch.channels_last)


class ConvVAE(VAEBase):
    """A convolutional VAE on flat (N, 784) images: strided convolutions down, transposed up.

    ``channels`` feature maps after the first convolution (14x14) and ``2 * channels`` after the
    second (7x7); the decoder mirrors it. ReLU between layers. The last transposed convolution has
    ``likelihood.params_per_pixel`` output channels, flattened channel by channel, so the output is
    in the same (N, P * 784) layout as the MLP's. Introduced in notebook 08.
    """

    def __init__(self, latent_dim: int = 2, channels: int = 32, likelihood: Likelihood | str = "bernoulli"):
        super().__init__(latent_dim, INPUT_DIM, likelihood)
        _check_sizes(channels=channels)
        self.channels = channels
        c1, c2 = channels, 2 * channels
        side = IMAGE_SHAPE[1]
        self.side_1 = conv_output_size(side, KERNEL, STRIDE, PADDING)           # 14
        self.side_2 = conv_output_size(self.side_1, KERNEL, STRIDE, PADDING)    # 7
        self.features = c2 * self.side_2 ** 2
        # Encoder q_phi(z|x)
        self.conv1 = nn.Conv2d(1, c1, KERNEL, STRIDE, PADDING)
        self.conv2 = nn.Conv2d(c1, c2, KERNEL, STRIDE, PADDING)
        self.fc_mu = nn.Linear(self.features, latent_dim)
        self.fc_logvar = nn.Linear(self.features, latent_dim)
        # Decoder p_theta(x|z)
        self.fc_dec = nn.Linear(latent_dim, self.features)
        self.deconv1 = nn.ConvTranspose2d(c2, c1, KERNEL, STRIDE, PADDING)
        self.deconv2 = nn.ConvTranspose2d(c1, self.likelihood.params_per_pixel, KERNEL, STRIDE, PADDING)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` for flat images ``x`` (N, 784): reshaped to (N, 1, 28, 28) inside."""
        check_input(x, self.input_dim, "ConvVAE.encode")
        h = torch.relu(self.conv1(_channels_last(x.view(-1, *IMAGE_SHAPE))))   # (N, c1, 14, 14)
        h = torch.relu(self.conv2(h)).flatten(1)                # (N, c2 * 7 * 7)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's raw outputs for codes ``z``: (N, P * 784), flattened channel by channel."""
        check_input(z, self.latent_dim, "ConvVAE.decode")
        h = torch.relu(self.fc_dec(z)).view(-1, 2 * self.channels, self.side_2, self.side_2)
        h = torch.relu(self.deconv1(_channels_last(h)))         # (N, c1, 14, 14)
        return self.deconv2(h).flatten(1)                       # (N, P, 28, 28) -> (N, P * 784)


def conv_vae_flops(model: ConvVAE) -> dict[str, int]:
    """FLOPs per image of a :class:`ConvVAE`: ``forward``, and ``training`` (forward plus backward).

    A convolution costs 2 C_in C_out k^2 per output pixel; a transposed convolution 2 C_in C_out k^2
    per *input* pixel (each input pixel stamps a C_out x k x k patch); a linear layer 2 in out.
    Backward costs each layer as much again for the weights' gradient and, except the first
    layer (its input is the data), as much again for its input's gradient. Notebook 08.
    """
    if not isinstance(model, ConvVAE):
        raise ValueError(f"model must be a ConvVAE, got {type(model).__name__}")
    c1, c2, k2, p = model.channels, 2 * model.channels, KERNEL ** 2, model.likelihood.params_per_pixel
    s1, s2 = model.side_1, model.side_2
    first = 2 * 1 * c1 * k2 * s1 * s1                    # conv1, per output pixel
    rest = [
        2 * c1 * c2 * k2 * s2 * s2,                        # conv2
        2 * 2 * model.features * model.latent_dim,         # fc_mu and fc_logvar
        2 * model.latent_dim * model.features,             # fc_dec
        2 * c2 * c1 * k2 * s2 * s2,                        # deconv1, per input pixel (7 x 7)
        2 * c1 * p * k2 * s1 * s1,                         # deconv2, per input pixel (14 x 14)
    ]
    forward = first + sum(rest)
    return {"forward": forward, "training": forward + forward + sum(rest)}
