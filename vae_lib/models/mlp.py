"""The MLP VAEs: the textbook VAE (:class:`VAE`), the plain :class:`AutoEncoder` of notebook 06, and the
gated MLP of the literature (:class:`GatedVAE`, the reproduction's model).

The textbook VAE keeps the textbook script's layer names (``fc1``, ``fc_mu``, ``fc_logvar``, ``fc3``,
``fc4``), so a state dict trained with ``textbook/vae.py`` loads into :class:`VAE` unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..data import INPUT_DIM
from ..likelihoods import Likelihood, get_likelihood
from .base import VAEBase, _check_sizes, check_input


class _SeedDecoder:
    """The textbook VAE's decoder z -> hidden -> output, ReLU: layers ``fc3`` and ``fc4``."""

    def _build_decoder(self, in_features: int | None = None) -> None:
        # Created after the encoder so that printing the model reads encoder first, as in the textbook script.
        self.fc3 = nn.Linear(in_features or self.latent_dim, self.hidden_dim)
        self.fc4 = nn.Linear(self.hidden_dim, self.output_dim)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's raw outputs (for the Bernoulli: logits) for codes ``z`` of shape (N, latent_dim)."""
        check_input(z, self.latent_dim, f"{type(self).__name__}.decode")
        return self.fc4(torch.relu(self.fc3(z)))


class VAE(_SeedDecoder, VAEBase):
    """The textbook MLP VAE: 784 -> hidden -> (mu, log sigma^2) -> z -> hidden -> 784, ReLU.

    ``forward`` returns ``(recon_logits, mu, logvar)``: the decoder's logits rather than the textbook VAE's
    sigmoid output, because the Bernoulli loss is computed from logits for numerical stability.
    ``decode`` returns pixel probabilities, as in the textbook script. With another ``likelihood`` the last
    layer outputs its numbers per pixel (notebook 09). Introduced in notebook 04.
    """

    def __init__(self, latent_dim: int = 2, hidden_dim: int = 400, input_dim: int = INPUT_DIM,
                 likelihood: Likelihood | str = "bernoulli"):
        super().__init__(latent_dim, input_dim, likelihood)
        _check_sizes(hidden_dim=hidden_dim)
        self.hidden_dim = hidden_dim
        # Encoder q_phi(z|x)
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)
        # Decoder p_theta(x|z): fc3, fc4
        self._build_decoder()

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's parameters ``(mu, logvar)`` for a batch ``x`` of shape (N, 784)."""
        check_input(x, self.input_dim, "VAE.encode")
        h = torch.relu(self.fc1(x))
        return self.fc_mu(h), self.fc_logvar(h)


class AutoEncoder(_SeedDecoder, nn.Module):
    """A plain autoencoder with the VAE's widths: 784 -> hidden -> z -> hidden -> 784, ReLU.

    The code is a point, not a distribution, and nothing pulls it towards a prior. ``forward``
    returns ``(recon_logits, z)``. Introduced in notebook 06.
    """

    def __init__(self, latent_dim: int = 2, hidden_dim: int = 400, input_dim: int = INPUT_DIM,
                 likelihood: Likelihood | str = "bernoulli"):
        super().__init__()
        _check_sizes(latent_dim=latent_dim, hidden_dim=hidden_dim, input_dim=input_dim)
        self.latent_dim, self.hidden_dim, self.input_dim = latent_dim, hidden_dim, input_dim
        self.likelihood = get_likelihood(likelihood)
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc_z = nn.Linear(hidden_dim, latent_dim)
        self._build_decoder()

    @property
    def output_dim(self) -> int:
        """Numbers the decoder outputs per image."""
        return self.input_dim * self.likelihood.params_per_pixel

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The code z for a batch ``x`` of shape (N, 784)."""
        check_input(x, self.input_dim, "AutoEncoder.encode")
        return self.fc_z(torch.relu(self.fc1(x)))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel values decoded from codes ``z``."""
        return self.likelihood.mean(self.decode_logits(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel values decoded from the code of ``x``."""
        return self.decode(self.encode(x))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and decode: ``(recon_logits, z)``."""
        z = self.encode(x)
        return self.decode_logits(z), z


# --------------------------------------------------------------------------- the gated MLP of the literature


class GatedDense(nn.Module):
    """A gated dense layer (Dauphin et al., 2017): h = linear(x) * sigmoid(gate(x)). Notebook 07."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.h = nn.Linear(in_features, out_features)
        self.g = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


class GatedVAE(VAEBase):
    """The VAE of Tomczak and Welling (2018) and Norouzi et al. (2020), with a standard prior.

    Encoder: two :class:`GatedDense` layers of ``hidden_dim`` units, mu linear, log sigma^2 through
    a hardtanh to [-6, 2]. Decoder: two gated layers, then one logit per pixel. Weights start from
    He's normal initialisation, N(0, 2 / fan_in), as in their code; biases keep PyTorch's default.
    ``benchmarks/reproduce.py`` trains it by their protocol. Notebook 07.
    """

    LOGVAR_RANGE = (-6.0, 2.0)

    def __init__(self, latent_dim: int = 40, hidden_dim: int = 300, input_dim: int = INPUT_DIM,
                 likelihood: Likelihood | str = "bernoulli"):
        super().__init__(latent_dim, input_dim, likelihood)
        _check_sizes(hidden_dim=hidden_dim)
        self.hidden_dim = hidden_dim
        self.encoder = nn.Sequential(GatedDense(input_dim, hidden_dim), GatedDense(hidden_dim, hidden_dim))
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)
        self.decoder = nn.Sequential(GatedDense(latent_dim, hidden_dim), GatedDense(hidden_dim, hidden_dim),
                                     nn.Linear(hidden_dim, self.output_dim))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.in_features))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, with logvar clipped to [-6, 2] by a hardtanh."""
        check_input(x, self.input_dim, "GatedVAE.encode")
        h = self.encoder(x)
        return self.fc_mu(h), nn.functional.hardtanh(self.fc_logvar(h), *self.LOGVAR_RANGE)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """One logit per pixel for codes ``z``."""
        check_input(z, self.latent_dim, "GatedVAE.decode")
        return self.decoder(z)
