"""The one model interface: :class:`VAEBase`, which every VAE of the course derives from, and the
pieces every model shares (``reparameterize``, input checks).

Every VAE works on flat images x of shape (N, 784) and answers

* ``encode(x, y=None) -> (mu, logvar)``, the parameters of q_phi(z|x) = N(mu, diag(exp(logvar)));
* ``decode_logits(z, y=None, x=None)``, the decoder's raw outputs, ``likelihood.params_per_pixel``
  numbers per pixel in blocks of 784 (for the Bernoulli decoder: one logit per pixel, shape
  (N, 784)); ``model.likelihood`` (:mod:`vae_lib.likelihoods`) says what they mean;
* ``forward``, ``reconstruct``, ``sample`` and ``decode``, written once here;
* ``prior``, its p(z) (:mod:`vae_lib.priors`): N(0, I) unless :meth:`VAEBase.use_prior` gives it
  another. Training, evaluation and sampling ask the prior, never assume N(0, I).

``y`` carries labels for conditional models and is ignored by the others; ``x`` is read only by
autoregressive decoders, whose output for pixel i depends on the pixels before it. So ``fit``,
``evaluate``, ``train_or_load``, the importance weights, the grid quadrature and the explorers
serve every model without a second code path. Notebook 08 introduces the interface.
"""
from __future__ import annotations


import torch
import torch.nn as nn

from ..data import INPUT_DIM
from ..likelihoods import Likelihood, get_likelihood
from ..priors import Prior, StandardNormal, get_prior


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
    :class:`~vae_lib.likelihoods.Likelihood` or its name (the textbook VAE's ``"bernoulli"`` by default);
    the decoder outputs ``output_dim = input_dim * likelihood.params_per_pixel`` numbers. Class
    attributes: ``conditional`` (encode and decode need labels y), ``autoregressive`` (decode
    needs the image x). ``prior``: p(z), the standard normal until :meth:`use_prior` (notebook 12).
    Introduced in notebook 08.
    """

    conditional = False
    autoregressive = False

    def __init__(self, latent_dim: int, input_dim: int = INPUT_DIM, likelihood: Likelihood | str = "bernoulli"):
        super().__init__()
        _check_sizes(latent_dim=latent_dim, input_dim=input_dim)
        self.latent_dim, self.input_dim = latent_dim, input_dim
        self.likelihood = get_likelihood(likelihood)
        self.prior = StandardNormal(latent_dim)

    def use_prior(self, prior: Prior | str, components: int = 0, generator: torch.Generator | None = None) -> "VAEBase":
        """Give the model the prior ``prior`` (a :class:`~vae_lib.priors.Prior` or its name, with
        ``components`` for a mixture) and return the model. A VampPrior gets the model's encoder.

        The conditional models keep N(0, I): their objective is written for it. Notebook 12.
        """
        prior = get_prior(prior, self.latent_dim, components, input_dim=self.input_dim, generator=generator)
        if prior.latent_dim != self.latent_dim:
            raise ValueError(f"the prior is over {prior.latent_dim} latent dimensions but the model has {self.latent_dim}")
        if self.conditional and not isinstance(prior, StandardNormal):
            raise ValueError(f"{type(self).__name__} keeps the standard normal prior; learned priors are for "
                             "the unconditional models")
        if hasattr(prior, "attach"):
            prior.attach(self.encode)
        self.prior = prior
        return self

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
        """Pixel means of p_theta(x|z) for codes ``z``: the textbook VAE's ``decode`` for the Bernoulli."""
        return self.likelihood.mean(self.decode_logits(z, y))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel means decoded from the posterior mean: the model's reconstruction of ``x``."""
        mu, _ = self.encode(x, y)
        return self.decode(mu, y)

    def prior_draws(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` codes z ~ p(z) from the model's prior, on the model's device; drawn on ``generator``'s
        device if one is given (else on the CPU), so a CPU generator gives the same codes everywhere."""
        n = _check_n(n)
        return self.prior.sample(n, generator).to(self.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decode ``n`` draws z ~ p(z) from the model's prior: pixel means of shape (n, 784).

        The draws are made on ``generator``'s device when one is given, so a CPU generator gives
        the same samples whatever device the model is on. ``y``: labels, for conditional models.
        """
        return self.decode(self.prior_draws(n, generator), y)
