"""Models: the one interface every VAE of the course answers, the seed's MLP VAE, and its relatives.

Every VAE is a small ``nn.Module`` derived from :class:`VAEBase`. It works on flat images x of
shape (N, 784) and answers

* ``encode(x, y=None) -> (mu, logvar)``, the parameters of q_phi(z|x) = N(mu, diag(exp(logvar)));
* ``decode_logits(z, y=None, x=None)``, the decoder's raw outputs, ``likelihood.params_per_pixel``
  numbers per pixel in blocks of 784 (for the seed's Bernoulli decoder: one logit per pixel,
  shape (N, 784)); ``model.likelihood`` (:mod:`vae_lib.likelihoods`) says what they mean;
* ``forward``, ``reconstruct``, ``sample`` and ``decode``, written once here.

``y`` carries labels for conditional models and is ignored by the others; ``x`` is read only by
autoregressive decoders, whose output for pixel i depends on the pixels before it. So ``fit``,
``evaluate``, ``train_or_load``, the importance weights, the grid quadrature and the explorers
serve every model without a second code path. Notebook 08 introduces the interface.

The seed's VAE keeps the seed's layer names (``fc1``, ``fc_mu``, ``fc_logvar``, ``fc3``, ``fc4``), so
a state dict trained with ``shared/seed/seed_vae.py`` loads into :class:`VAE` unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .data import INPUT_DIM
from .likelihoods import Likelihood, get_likelihood


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


def check_input(x: torch.Tensor, width: int, what: str) -> None:
    """``ValueError`` unless ``x`` is a tensor of shape (batch, width); shared by every model. Notebook 04."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != width:
        hint = " (flatten images with x.view(-1, 784))" if width == INPUT_DIM else ""
        raise ValueError(f"{what} expects shape (batch, {width}){hint}, got {tuple(x.shape)}")


def _check_sizes(**sizes) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_n(n) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return n


class VAEBase(nn.Module):
    """What every VAE of the course shares: sizes, the likelihood, and the methods built on
    ``encode`` and ``decode_logits``, which a subclass defines.

    ``latent_dim``: size of z. ``input_dim``: pixels per image (784). ``likelihood``: a
    :class:`~vae_lib.likelihoods.Likelihood` or its name (the seed's ``"bernoulli"`` by default);
    the decoder outputs ``output_dim = input_dim * likelihood.params_per_pixel`` numbers. Class
    attributes: ``conditional`` (encode and decode need labels y), ``autoregressive`` (decode
    needs the image x). Introduced in notebook 08.
    """

    conditional = False
    autoregressive = False

    def __init__(self, latent_dim: int, input_dim: int = INPUT_DIM, likelihood: Likelihood | str = "bernoulli"):
        super().__init__()
        _check_sizes(latent_dim=latent_dim, input_dim=input_dim)
        self.latent_dim, self.input_dim = latent_dim, input_dim
        self.likelihood = get_likelihood(likelihood)

    @property
    def output_dim(self) -> int:
        """Numbers the decoder outputs per image: pixels times the likelihood's numbers per pixel."""
        return self.input_dim * self.likelihood.params_per_pixel

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.parameters()).device

    # -- the two methods a model defines
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's parameters ``(mu, logvar)`` for a batch ``x`` of shape (N, 784)."""
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's raw outputs for codes ``z`` of shape (N, latent_dim): (N, output_dim)."""
        raise NotImplementedError

    # -- everything else, once
    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) (see :func:`reparameterize`)."""
        return reparameterize(mu, logvar)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, draw one z by reparameterization, decode: ``(recon_logits, mu, logvar)``."""
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar)
        return self.decode_logits(z, y, x), mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel means of p_theta(x|z) for codes ``z``: the seed's ``decode`` for the Bernoulli."""
        return self.likelihood.mean(self.decode_logits(z, y))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel means decoded from the posterior mean: the model's reconstruction of ``x``."""
        mu, _ = self.encode(x, y)
        return self.decode(mu, y)

    def prior_draws(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` codes z ~ N(0, I) on the model's device, drawn on ``generator``'s device if one is given."""
        n = _check_n(n)
        where = generator.device if generator is not None else self.device
        return torch.randn(n, self.latent_dim, device=where, generator=generator).to(self.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decode ``n`` draws z ~ N(0, I) from the prior: pixel means of shape (n, 784).

        The draws are made on ``generator``'s device when one is given, so a CPU generator gives
        the same samples whatever device the model is on. ``y``: labels, for conditional models.
        """
        return self.decode(self.prior_draws(n, generator), y)


class _SeedDecoder:
    """The seed's decoder z -> hidden -> output, ReLU: layers ``fc3`` and ``fc4``."""

    def _build_decoder(self, in_features: int | None = None) -> None:
        # Created after the encoder so that printing the model reads encoder first, as in the seed.
        self.fc3 = nn.Linear(in_features or self.latent_dim, self.hidden_dim)
        self.fc4 = nn.Linear(self.hidden_dim, self.output_dim)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's raw outputs (for the Bernoulli: logits) for codes ``z`` of shape (N, latent_dim)."""
        check_input(z, self.latent_dim, f"{type(self).__name__}.decode")
        return self.fc4(torch.relu(self.fc3(z)))


class VAE(_SeedDecoder, VAEBase):
    """The seed's MLP VAE: 784 -> hidden -> (mu, log sigma^2) -> z -> hidden -> 784, ReLU.

    ``forward`` returns ``(recon_logits, mu, logvar)``: the decoder's logits rather than the seed's
    sigmoid output, because the Bernoulli loss is computed from logits for numerical stability.
    ``decode`` returns pixel probabilities, as in the seed. With another ``likelihood`` the last
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


# --------------------------------------------------------------------------- by name


def model_kinds() -> dict[str, type]:
    """Every model kind ``build_model`` knows, by name: ``vae``, ``ae``, ``gated``, ``conv``, ``made``,
    ``made-hidden``, ``cvae``, ``m2``."""
    from .autoregressive import MADEHiddenVAE, MADEVAE
    from .conditional import ConditionalVAE, SemiSupervisedVAE
    from .conv import ConvVAE

    return {"vae": VAE, "ae": AutoEncoder, "gated": GatedVAE, "conv": ConvVAE, "made": MADEVAE,
            "made-hidden": MADEHiddenVAE, "cvae": ConditionalVAE, "m2": SemiSupervisedVAE}


def build_model(kind: str = "vae", latent_dim: int = 2, hidden_dim: int = 400,
                likelihood: Likelihood | str = "bernoulli", channels: int = 32) -> nn.Module:
    """Build a model by name (see :func:`model_kinds`) with the given sizes and likelihood.

    ``hidden_dim`` is the width of the MLP kinds' hidden layers; ``channels`` the number of
    channels of the convolutional VAE's first layer (its second has twice as many). Each kind takes
    the sizes it has. Introduced in notebook 04; notebook 08 adds the convolutional kind.
    """
    kinds = model_kinds()
    if kind not in kinds:
        raise ValueError(f"Unknown model kind {kind!r}; valid kinds are {', '.join(map(repr, kinds))}")
    if kind == "conv":
        return kinds[kind](latent_dim=latent_dim, channels=channels, likelihood=likelihood)
    return kinds[kind](latent_dim=latent_dim, hidden_dim=hidden_dim, likelihood=likelihood)
