"""An autoregressive decoder: a VAE whose p_theta(x|z) is a masked MLP (MADE) conditioned on z.

p_theta(x|z) = prod_i p(x_i | x_1, ..., x_{i-1}, z): each pixel's distribution depends on the pixels
before it (in reading order) and on z. Masks on the weights of one hidden layer enforce that order
(MADE, Germain et al., 2015), so one pass computes all 784 conditionals of a given image (teacher
forcing). Such a decoder can model an image well without z, which is what lets the ELBO drive the
KL to zero: posterior collapse, notebook 10.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import INPUT_DIM
from ..likelihoods import Likelihood
from .base import VAEBase, _check_n, _check_sizes, check_input


def made_masks(input_dim: int, hidden_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two masks of a one-hidden-layer MADE in the natural pixel order: (hidden, input), (input, hidden).

    Pixel i (0-based) has degree i + 1; hidden unit k gets a degree m_k in 1 .. D - 1, spread evenly
    over that whole range (from 1 for the first unit to D - 1 for the last). Unit k may see pixel i
    when i + 1 <= m_k; output j may see unit k when m_k <= j. So output j depends only on pixels
    i < j: the autoregressive property, which ``tests/`` check with gradients. Because the degrees
    reach D - 1, every pixel but the last feeds some hidden unit (the last has no output after it to
    inform). Notebook 10.
    """
    _check_sizes(input_dim=input_dim, hidden_dim=hidden_dim)
    if input_dim < 2:
        raise ValueError("an autoregressive model needs at least two pixels")
    pixel_degree = torch.arange(1, input_dim + 1)
    hidden_degree = torch.linspace(1, input_dim - 1, hidden_dim).round().long()
    to_hidden = (hidden_degree[:, None] >= pixel_degree[None, :]).float()
    to_output = (hidden_degree[None, :] <= torch.arange(input_dim)[:, None]).float()
    return to_hidden, to_output


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (a buffer, saved with the model)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        if mask.shape != (out_features, in_features):
            raise ValueError(f"mask must have shape ({out_features}, {in_features}), got {tuple(mask.shape)}")
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADEVAE(VAEBase):
    """The textbook MLP encoder with an autoregressive decoder: a MADE with direct connections, conditioned on z.

    Decoder logits: M2(relu(M1(x))) + A x + U z + b. M1 and M2 are the masked layers of a MADE
    (:func:`made_masks`), A is a strictly lower-triangular linear map (each pixel sees every earlier
    pixel directly), U a plain linear map: so logit i sees the pixels before i, and all of z through
    U. The direct connections make the decoder strong at what pixels say about their neighbours,
    which is what lets the plain ELBO switch the code off (notebook 10). ``decode_logits(z, x=x)``
    scores a given image; :meth:`sample` draws images pixel by pixel. Notebook 10.
    """

    autoregressive = True
    z_into_hidden = False

    def __init__(self, latent_dim: int = 32, hidden_dim: int = 500, input_dim: int = INPUT_DIM,
                 likelihood: Likelihood | str = "bernoulli"):
        super().__init__(latent_dim, input_dim, likelihood)
        _check_sizes(hidden_dim=hidden_dim)
        if self.likelihood.params_per_pixel != 1:
            raise ValueError("the MADE decoder outputs one number per pixel; use a Bernoulli likelihood")
        self.hidden_dim = hidden_dim
        # Encoder q_phi(z|x), the textbook VAE's
        self.fc1 = nn.Linear(input_dim, 400)
        self.fc_mu = nn.Linear(400, latent_dim)
        self.fc_logvar = nn.Linear(400, latent_dim)
        # Decoder p_theta(x|z): autoregressive in x, conditioned on z
        to_hidden, to_output = made_masks(input_dim, hidden_dim)
        self.made_in = MaskedLinear(input_dim, hidden_dim, to_hidden)
        self.made_out = MaskedLinear(hidden_dim, input_dim, to_output)
        self.direct = MaskedLinear(input_dim, input_dim, torch.ones(input_dim, input_dim).tril(-1))
        self.z_out = nn.Linear(latent_dim, input_dim, bias=False)
        # z into the hidden layer too (MADEHiddenVAE): every hidden unit may read all of z, which breaks
        # no pixel order, so the code can shape the features the outputs are built from.
        self.z_hidden = nn.Linear(latent_dim, hidden_dim, bias=False) if self.z_into_hidden else None

    def _hidden_input(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        pre = self.made_in(x)
        return pre if self.z_hidden is None else pre + self.z_hidden(z)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's parameters ``(mu, logvar)`` for a batch ``x`` of shape (N, 784)."""
        check_input(x, self.input_dim, "MADEVAE.encode")
        h = torch.relu(self.fc1(x))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The logit of every p(x_i | x_<i, z) for the image ``x`` (teacher forcing): (N, 784)."""
        check_input(z, self.latent_dim, "MADEVAE.decode")
        if x is None:
            raise ValueError("an autoregressive decoder scores a given image: pass decode_logits(z, x=images); "
                             "to draw images use sample() or decode()")
        check_input(x, self.input_dim, "MADEVAE.decode_logits (x)")
        return self.made_out(torch.relu(self._hidden_input(x, z))) + self.direct(x) + self.z_out(z)

    @torch.no_grad()
    def ancestral(self, z: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one image per code, pixel by pixel: ``(samples, means)``, each (N, 784).

        ``means[:, i]`` is the mean of p(x_i | x_<i, z) given the pixels drawn before it. The inputs of
        the hidden layer and of the direct connections are updated by one column per pixel, so the
        784 steps cost about one pass.
        """
        check_input(z, self.latent_dim, "MADEVAE.decode")
        n = z.shape[0]
        w_in = self.made_in.weight * self.made_in.mask           # (H, D)
        w_out = self.made_out.weight * self.made_out.mask        # (D, H)
        w_direct = self.direct.weight * self.direct.mask         # (D, D)
        pre = self._hidden_input(torch.zeros(n, self.input_dim, device=z.device), z)   # hidden input, empty image
        direct = self.made_out.bias + self.direct.bias + self.z_out(z)   # (N, D)
        samples = torch.zeros(n, self.input_dim, device=z.device)
        means = torch.zeros_like(samples)
        for i in range(self.input_dim):
            logit = torch.relu(pre) @ w_out[i] + direct[:, i]    # (N,)
            draw = self.likelihood.sample(logit[:, None], generator)[:, 0]
            means[:, i] = self.likelihood.mean(logit[:, None])[:, 0]
            samples[:, i] = draw
            pre = pre + draw[:, None] * w_in[:, i]
            direct = direct + draw[:, None] * w_direct[:, i]
        return samples, means

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """The conditional means along one ancestral draw (see :meth:`ancestral`), (N, 784).

        An autoregressive decoder has no single "mean image" in one pass: pixel i's mean depends on
        the pixels drawn before it.
        """
        return self.ancestral(z, generator)[1]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` images drawn from the model: z ~ N(0, I), then x ~ p_theta(x|z) pixel by pixel."""
        z = self.prior_draws(_check_n(n), generator)
        return self.ancestral(z, generator)[0]


class MADEHiddenVAE(MADEVAE):
    """:class:`MADEVAE` with z fed into the masked hidden layer as well as added to the output logits.

    The control of notebook 10: in :class:`MADEVAE` the code enters only as an additive term U z on
    the logits, so it cannot shape the hidden features; here every hidden unit also reads W z (z is
    not a pixel, so no order is broken). Notebook 10.
    """

    z_into_hidden = True
