"""Models: the seed's MLP VAE and a plain autoencoder of the same widths.

The VAE keeps the seed's layer names (``fc1``, ``fc_mu``, ``fc_logvar``, ``fc3``, ``fc4``), so a
state dict trained with ``shared/seed/seed_vae.py`` loads into :class:`VAE` unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .data import INPUT_DIM


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """Draw z = mu + sigma * eps with sigma = exp(logvar / 2) and eps ~ N(0, I).

    The randomness sits in ``eps``, outside the parameters, so gradients flow to ``mu`` and
    ``logvar``. Pass ``eps`` to make the draw deterministic. Introduced in notebook 02.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    std = torch.exp(0.5 * logvar)
    if eps is None:
        eps = torch.randn_like(std)
    else:
        try:
            torch.broadcast_shapes(eps.shape, mu.shape)
        except RuntimeError as err:
            raise ValueError(f"eps must broadcast against mu {tuple(mu.shape)}, got {tuple(eps.shape)}") from err
    return mu + eps * std


def _check_input(x: torch.Tensor, width: int, what: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != width:
        hint = " (flatten images with x.view(-1, 784))" if width == INPUT_DIM else ""
        raise ValueError(f"{what} expects shape (batch, {width}){hint}, got {tuple(x.shape)}")


class _MLPDecoderModel(nn.Module):
    """What the VAE and the autoencoder share: their sizes and the decoder z -> hidden -> 784."""

    def __init__(self, latent_dim: int, hidden_dim: int, input_dim: int):
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("hidden_dim", hidden_dim), ("input_dim", input_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.input_dim, self.hidden_dim, self.latent_dim = input_dim, hidden_dim, latent_dim

    def _build_decoder(self) -> None:
        # Created after the encoder so that printing the model reads encoder first, as in the seed.
        self.fc3 = nn.Linear(self.latent_dim, self.hidden_dim)
        self.fc4 = nn.Linear(self.hidden_dim, self.input_dim)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's Bernoulli logits for latent codes ``z`` of shape (N, latent_dim)."""
        _check_input(z, self.latent_dim, f"{type(self).__name__}.decode")
        return self.fc4(torch.relu(self.fc3(z)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel means in [0, 1] for latent codes ``z``, as the seed's ``decode``."""
        return torch.sigmoid(self.decode_logits(z))


class VAE(_MLPDecoderModel):
    """The seed's MLP VAE: 784 -> hidden -> (mu, log sigma^2) -> z -> hidden -> 784, ReLU.

    ``forward`` returns ``(recon_logits, mu, logvar)``: the decoder's logits rather than the seed's
    sigmoid output, because the Bernoulli loss is computed from logits for numerical stability.
    ``decode`` returns pixel probabilities, as in the seed. Introduced in notebook 04.
    """

    def __init__(self, latent_dim: int = 2, hidden_dim: int = 400, input_dim: int = INPUT_DIM):
        super().__init__(latent_dim, hidden_dim, input_dim)
        # Encoder q_phi(z|x)
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)
        # Decoder p_theta(x|z): fc3, fc4
        self._build_decoder()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's parameters ``(mu, logvar)`` for a batch ``x`` of shape (N, 784)."""
        _check_input(x, self.input_dim, "VAE.encode")
        h = torch.relu(self.fc1(x))
        return self.fc_mu(h), self.fc_logvar(h)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) (see :func:`reparameterize`)."""
        return reparameterize(mu, logvar)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, draw one z by reparameterization, decode: ``(recon_logits, mu, logvar)``."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return self.decode_logits(z), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel means decoded from the posterior mean: the model's reconstruction of ``x``."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws z ~ N(0, I) from the prior: pixel means of shape (n, 784).

        The draws are made on ``generator``'s device when one is given, so a CPU generator gives
        the same samples whatever device the model is on.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        device = self.fc3.weight.device
        where = generator.device if generator is not None else device
        z = torch.randn(n, self.latent_dim, device=where, generator=generator).to(device)
        return self.decode(z)


class AutoEncoder(_MLPDecoderModel):
    """A plain autoencoder with the VAE's widths: 784 -> hidden -> z -> hidden -> 784, ReLU.

    The code is a point, not a distribution, and nothing pulls it towards a prior. ``forward``
    returns ``(recon_logits, z)``. Introduced in notebook 06.
    """

    def __init__(self, latent_dim: int = 2, hidden_dim: int = 400, input_dim: int = INPUT_DIM):
        super().__init__(latent_dim, hidden_dim, input_dim)
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc_z = nn.Linear(hidden_dim, latent_dim)
        self._build_decoder()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code z for a batch ``x`` of shape (N, 784)."""
        _check_input(x, self.input_dim, "AutoEncoder.encode")
        return self.fc_z(torch.relu(self.fc1(x)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel values decoded from the code of ``x``."""
        return self.decode(self.encode(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and decode: ``(recon_logits, z)``."""
        z = self.encode(x)
        return self.decode_logits(z), z


MODELS = {"vae": VAE, "ae": AutoEncoder}


def build_model(kind: str = "vae", latent_dim: int = 2, hidden_dim: int = 400) -> nn.Module:
    """Build a model by name: ``"vae"`` (:class:`VAE`) or ``"ae"`` (:class:`AutoEncoder`). Notebook 04."""
    if kind not in MODELS:
        raise ValueError(f"Unknown model kind {kind!r}; valid kinds are {', '.join(map(repr, MODELS))}")
    return MODELS[kind](latent_dim=latent_dim, hidden_dim=hidden_dim)
