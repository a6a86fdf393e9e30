"""Priors p(z) as objects: what a VAE assumes about its codes before it sees an image.

Every prior answers ``log_prob(z)`` (summed over the latent dimensions), ``sample(n, generator)``, and
``kl(z, mu, logvar)``, the KL term of the ELBO for posteriors N(mu, diag exp(logvar)) and their
reparameterized draws ``z``. Each has a ``name`` and says what it holds (:meth:`Prior.describe`).

* :class:`StandardNormal`: the textbook's N(0, I). Its KL is in closed form, one value per dimension,
  so every number of notebooks 01-11 is unchanged.
* :class:`MixtureOfGaussians`: K diagonal Gaussians with learned weights, means and variances.
* :class:`VampPrior`: the mixture of the encoder's posteriors at K learned pseudo-inputs,
  p(z) = (1/K) sum_k q(z|u_k) (Tomczak and Welling, 2018). It needs the model's encoder:
  :meth:`vae_lib.models.VAEBase.use_prior` attaches it.
* :func:`fit_mixture`: a mixture fitted by EM to codes of an already trained VAE, with no retraining
  (as pythae's samplers do after training).

Without a closed form, the KL is estimated by Monte Carlo at the draw the ELBO already uses,
log q(z|x) - log p(z): unbiased, one value per image. A mixture's components and its weights are
available as ``mixture()`` -> (means, logvars, log_weights), all (K, d) or (K,). Introduced in
notebook 12.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .losses import gaussian_kl_per_dim

_LOG_2PI = math.log(2 * math.pi)
#: Tomczak and Welling's initial pseudo-inputs: N(0.05, 0.01^2) pixels, clipped to [0, 1].
PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD = 0.05, 0.01


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension; the shapes broadcast. Notebook 12."""
    return -0.5 * ((z - mu) ** 2 * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


def log_normal_pairs(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z_s; mu_k, diag exp(logvar_k)) for every point z (S, d) and every Gaussian k (K, d): (S, K).

    sum_j (z_j - mu_kj)^2 / v_kj expands into two matrix products, so no (S, K, d) tensor is formed.
    Used for mixtures here and for the aggregate posterior (notebook 10's ELBO surgery).
    """
    inv = torch.exp(-logvar)
    quad = (z * z) @ inv.T - 2 * z @ (mu * inv).T + (mu * mu * inv).sum(-1)[None]
    return -0.5 * (quad + logvar.sum(-1)[None] + mu.shape[1] * _LOG_2PI)


class Prior(nn.Module):
    """The interface every prior answers. ``latent_dim``: the size of z.

    ``closed_form_kl``: whether :meth:`kl` is exact and splits over dimensions (shape (N, d)); when it
    is not, :meth:`kl` is the one-draw Monte Carlo estimate, shape (N, 1). Notebook 12.
    """

    name = "prior"
    closed_form_kl = False

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = _positive_int(latent_dim, "latent_dim")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for codes ``z`` of shape (..., latent_dim): shape (...), in ``z``'s dtype."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws z ~ p(z), shape (n, latent_dim), made on ``generator``'s device (the CPU without one)."""
        raise NotImplementedError

    def kl(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """The ELBO's KL term per image: here log q(z|x) - log p(z) at the draws ``z``, shape (N, 1).

        ``validate=False`` skips the checks of the inputs (``fit`` checks once per epoch instead)."""
        if validate:
            self._check_posterior(z, mu, logvar)
        return self.kl_monte_carlo(z, mu, logvar)[:, None]

    def kl_monte_carlo(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """log q(z|x) - log p(z) at draws ``z`` of q(z|x) = N(mu, diag exp(logvar)): an unbiased estimate of
        KL(q(z|x) || p(z)) per draw, shape of ``z`` without its last dimension. Notebook 12."""
        self._check_codes(z)
        return log_normal(z, mu, logvar) - self.log_prob(z)

    def describe(self) -> dict:
        """The prior's name and what it holds, for tables and checkpoints."""
        return {"name": self.name, "latent_dim": self.latent_dim,
                "parameters": sum(p.numel() for p in self.parameters())}

    def _check_posterior(self, z, mu, logvar) -> None:
        if not (isinstance(mu, torch.Tensor) and isinstance(logvar, torch.Tensor) and mu.shape == logvar.shape
                and mu.ndim == 2 and mu.shape[1] == self.latent_dim):
            raise ValueError(f"mu and logvar must be tensors of shape (N, {self.latent_dim})")
        if z is not None and (not isinstance(z, torch.Tensor) or z.shape != mu.shape):
            raise ValueError(f"z must be one draw per image, the shape of mu {tuple(mu.shape)}")
        if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
            raise ValueError("mu or logvar contains NaN or inf (has training diverged?)")

    def _check_codes(self, z) -> None:
        if not isinstance(z, torch.Tensor) or z.ndim < 1 or z.shape[-1] != self.latent_dim:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must be a tensor of shape (..., {self.latent_dim}), got {got}")


class StandardNormal(Prior):
    """p(z) = N(0, I), the textbook's prior. Holds no parameters, so models keep their state dicts.

    Its KL is in closed form, per dimension: -1/2 (1 + log sigma^2 - mu^2 - sigma^2) (notebook 03).
    """

    name = "standard"
    closed_form_kl = True

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        self._check_codes(z)
        return -0.5 * (z ** 2 + _LOG_2PI).sum(-1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        _positive_int(n, "n")
        _check_generator(generator)
        where = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(n, self.latent_dim, device=where, generator=generator)

    def kl(self, z: torch.Tensor | None, mu: torch.Tensor, logvar: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """KL(q(z|x) || N(0, I)) in closed form, per image and dimension (N, d); ``z`` is not needed."""
        return gaussian_kl_per_dim(mu, logvar, validate=validate)


class MixturePrior(Prior):
    """A mixture of K diagonal Gaussians, sum_k w_k N(z; m_k, diag v_k): what the MoG prior, the
    VampPrior and the fitted mixture share. A subclass defines :meth:`mixture`. Notebook 12."""

    def mixture(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(means, logvars, log_weights)`` of shapes (K, d), (K, d), (K,)."""
        raise NotImplementedError

    @property
    def n_components(self) -> int:
        """K, the number of Gaussians."""
        raise NotImplementedError

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; m_k, diag v_k) of every code against every component, without the weights: (..., K)."""
        self._check_codes(z)
        means, logvars, _ = self.mixture()
        flat = z.reshape(-1, self.latent_dim)
        pairs = log_normal_pairs(flat, means.to(flat), logvars.to(flat))
        return pairs.reshape(*z.shape[:-1], -1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        self._check_codes(z)
        means, logvars, log_weights = self.mixture()
        flat = z.reshape(-1, self.latent_dim)
        pairs = log_normal_pairs(flat, means.to(flat), logvars.to(flat)) + log_weights.to(flat)[None]
        return torch.logsumexp(pairs, dim=1).reshape(z.shape[:-1])

    def responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """p(k | z) for every code and component: (..., K), each row summing to 1."""
        _, _, log_weights = self.mixture()
        joint = self.component_log_prob(z) + log_weights.to(z)
        return torch.softmax(joint, dim=-1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, return_components: bool = False):
        """``n`` draws: a component k with probability w_k, then z ~ N(m_k, diag v_k).

        With ``return_components``, also the (n,) components drawn. The draws are made on the
        generator's device (the CPU without one), so a CPU generator gives the same codes on every device.
        """
        _positive_int(n, "n")
        _check_generator(generator)
        means, logvars, log_weights = self.mixture()
        where = generator.device if generator is not None else torch.device("cpu")
        weights = log_weights.detach().to(where, torch.float64).exp()
        k = torch.multinomial(weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, device=where, generator=generator)
        means, logvars = means.detach().to(where), logvars.detach().to(where)
        z = means[k] + torch.exp(0.5 * logvars[k]) * eps
        return (z, k) if return_components else z

    def mixture_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixture's mean (d,) and covariance (d, d): sum_k w_k m_k and sum_k w_k (V_k + m_k m_k^T) - m m^T."""
        means, logvars, log_weights = (t.detach().double() for t in self.mixture())
        w = log_weights.exp()
        mean = w @ means
        second = torch.diag_embed(logvars.exp()) + means[:, :, None] * means[:, None, :]
        return mean, (w[:, None, None] * second).sum(0) - torch.outer(mean, mean)

    def describe(self) -> dict:
        return {**super().describe(), "components": self.n_components}


class MixtureOfGaussians(MixturePrior):
    """A learnable mixture of K diagonal Gaussians: weights softmax(logits), means and log-variances.

    The means start at N(0, ``init_scale``^2) draws (drawn with ``generator``), the variances at 1 and
    the weights equal, so that at first the prior is close to N(0, I) spread a little. Notebook 12.
    """

    name = "mog"

    def __init__(self, latent_dim: int, n_components: int, init_scale: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__(latent_dim)
        _positive_int(n_components, "n_components")
        if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) or not init_scale >= 0:
            raise ValueError(f"init_scale must be a number >= 0, got {init_scale!r}")
        _check_generator(generator)
        self.means = nn.Parameter(init_scale * torch.randn(n_components, latent_dim, generator=generator))
        self.logvars = nn.Parameter(torch.zeros(n_components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(n_components))

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def mixture(self):
        return self.means, self.logvars, torch.log_softmax(self.logits, dim=0)


class VampPrior(MixturePrior):
    """The VampPrior (Tomczak and Welling, 2018): p(z) = (1/K) sum_k q_phi(z | u_k).

    The K pseudo-inputs u_k are images the prior learns, clipped to [0, 1] with a hard tanh as in the
    authors' code, and started at N(0.05, 0.01^2) pixels (their default) or at given images (``init``,
    their ``use_training_data_init``). The encoder q_phi is the model's: it is attached by
    :meth:`vae_lib.models.VAEBase.use_prior`, so the prior moves with the encoder as it trains, and
    each log_prob encodes the K pseudo-inputs once. Notebook 12.
    """

    name = "vamp"

    def __init__(self, latent_dim: int, n_components: int, input_dim: int = 784, init: torch.Tensor | None = None,
                 generator: torch.Generator | None = None):
        super().__init__(latent_dim)
        _positive_int(n_components, "n_components")
        _positive_int(input_dim, "input_dim")
        _check_generator(generator)
        if init is None:
            raw = PSEUDO_INPUT_MEAN + PSEUDO_INPUT_STD * torch.randn(n_components, input_dim, generator=generator)
        else:
            if not isinstance(init, torch.Tensor) or init.shape != (n_components, input_dim):
                got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
                raise ValueError(f"init must be {n_components} images of {input_dim} pixels, shape "
                                 f"({n_components}, {input_dim}); got {got}")
            raw = init.detach().float().cpu() + PSEUDO_INPUT_STD * torch.randn(init.shape, generator=generator)
        self.raw_inputs = nn.Parameter(raw)
        self._encode = None

    @property
    def n_components(self) -> int:
        return self.raw_inputs.shape[0]

    @torch.no_grad()
    def start_from(self, images: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Start the pseudo-inputs at K training images drawn without replacement, plus N(0, 0.01^2) noise:
        the authors' ``use_training_data_init``. ``TrainConfig(prior_init="data")`` does it before training."""
        if not isinstance(images, torch.Tensor) or images.ndim != 2 or images.shape[1] != self.raw_inputs.shape[1]:
            raise ValueError(f"images must be flat images of shape (N, {self.raw_inputs.shape[1]})")
        if len(images) < self.n_components:
            raise ValueError(f"{self.n_components} pseudo-inputs need at least as many images, got {len(images)}")
        _check_generator(generator)
        rows = torch.randperm(len(images), generator=generator)[:self.n_components]
        noise = PSEUDO_INPUT_STD * torch.randn(self.raw_inputs.shape, generator=generator)
        self.raw_inputs.copy_((images[rows.to(images.device)].detach().cpu().float() + noise).to(self.raw_inputs))

    def attach(self, encode) -> None:
        """Use ``encode(x) -> (mu, logvar)`` as q_phi(z|x); ``VAEBase.use_prior`` calls it with the model's."""
        if not callable(encode):
            raise ValueError("attach needs the model's encode function")
        self._encode = encode

    def pseudo_inputs(self) -> torch.Tensor:
        """The K pseudo-inputs u_k, (K, input_dim), pixels in [0, 1]."""
        return F.hardtanh(self.raw_inputs, 0.0, 1.0)

    def mixture(self):
        if self._encode is None:
            raise RuntimeError("this VampPrior has no encoder yet: give it to a model with model.use_prior(prior)")
        mu, logvar = self._encode(self.pseudo_inputs())
        log_weights = torch.full((self.n_components,), -math.log(self.n_components), device=mu.device, dtype=mu.dtype)
        return mu, logvar, log_weights


class FittedMixture(MixturePrior):
    """A fixed mixture of diagonal Gaussians (buffers, not parameters): what :func:`fit_mixture` returns.

    It is not trained with the model; put it in a copy of a trained model with :func:`with_prior` to
    sample from it or evaluate the model under it. Notebook 12.
    """

    name = "fitted"

    def __init__(self, means: torch.Tensor, logvars: torch.Tensor, log_weights: torch.Tensor):
        if not (isinstance(means, torch.Tensor) and means.ndim == 2 and isinstance(logvars, torch.Tensor)
                and logvars.shape == means.shape and isinstance(log_weights, torch.Tensor)
                and log_weights.shape == means.shape[:1]):
            raise ValueError("a fitted mixture needs means and logvars of shape (K, d) and log_weights of shape (K,)")
        super().__init__(means.shape[1])
        self.register_buffer("means", means.detach().float().clone())
        self.register_buffer("logvars", logvars.detach().float().clone())
        self.register_buffer("log_weights", torch.log_softmax(log_weights.detach().double(), 0).float())

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def mixture(self):
        return self.means, self.logvars, self.log_weights


def fit_mixture(codes: torch.Tensor, n_components: int, iterations: int = 100, min_var: float = 1e-4,
                generator: torch.Generator | None = None) -> FittedMixture:
    """Fit K diagonal Gaussians to ``codes`` (N, d) by expectation-maximisation; returns a :class:`FittedMixture`.

    The means start at K codes drawn without replacement (with ``generator``), the variances at the
    codes' variance; each iteration computes the responsibilities, then the weights, means and
    variances they imply (variances floored at ``min_var``). In float64. Feeding it draws from the
    aggregate posterior q(z) = (1/N) sum_n q(z|x_n) fits a prior to what the encoder actually uses, with
    no retraining. Notebook 12.
    """
    if not isinstance(codes, torch.Tensor) or codes.ndim != 2 or not codes.is_floating_point():
        raise ValueError("codes must be a float tensor of shape (N, latent_dim)")
    _positive_int(n_components, "n_components")
    _positive_int(iterations, "iterations")
    if codes.shape[0] < n_components:
        raise ValueError(f"{n_components} components need at least as many codes, got {codes.shape[0]}")
    if not torch.isfinite(codes).all():
        raise ValueError("codes contain NaN or inf")
    _check_generator(generator)
    x = codes.detach().cpu().double()
    start = torch.randperm(x.shape[0], generator=generator)[:n_components]
    means = x[start].clone()
    logvars = x.var(0, unbiased=False).clamp(min=min_var).log().expand_as(means).clone()
    log_weights = torch.full((n_components,), -math.log(n_components), dtype=torch.float64)
    for _ in range(iterations):
        joint = log_normal_pairs(x, means, logvars) + log_weights[None]
        resp = torch.softmax(joint, dim=1)                      # (N, K)
        counts = resp.sum(0).clamp(min=1e-10)
        log_weights = (counts / counts.sum()).log()
        means = (resp.T @ x) / counts[:, None]
        variances = (resp.T @ (x * x)) / counts[:, None] - means ** 2
        logvars = variances.clamp(min=min_var).log()
    return FittedMixture(means, logvars, log_weights)


def with_prior(model: nn.Module, prior: Prior) -> nn.Module:
    """A copy of ``model`` that uses ``prior``; the model itself is left as it is. Notebook 12."""
    import copy

    if not isinstance(prior, Prior):
        raise ValueError(f"prior must be a Prior, got {type(prior).__name__}")
    twin = copy.deepcopy(model)
    return twin.use_prior(copy.deepcopy(prior))


#: The priors a configuration can name (``TrainConfig.prior``), and whether they need a number of components.
PRIORS = ("standard", "mog", "vamp")


def get_prior(name: str | Prior, latent_dim: int, components: int = 0, input_dim: int = 784,
              generator: torch.Generator | None = None) -> Prior:
    """A prior by name: ``"standard"`` (``components`` 0), ``"mog"`` or ``"vamp"`` with ``components`` >= 1.

    A :class:`Prior` is returned as it is. Notebook 12.
    """
    if isinstance(name, Prior):
        return name
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; the priors are {', '.join(map(repr, PRIORS))}")
    if isinstance(components, bool) or not isinstance(components, int) or components < 0:
        raise ValueError(f"components must be a non-negative integer, got {components!r}")
    if name == "standard":
        if components:
            raise ValueError(f"the standard normal has no components; got components={components} (use 0)")
        return StandardNormal(latent_dim)
    if components < 1:
        raise ValueError(f"the {name} prior needs its number of components K >= 1 (e.g. components=50)")
    if name == "mog":
        return MixtureOfGaussians(latent_dim, components, generator=generator)
    return VampPrior(latent_dim, components, input_dim=input_dim, generator=generator)


# --------------------------------------------------------------------------- notebook 12's pictures


def _density_grid(prior: Prior, lim: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.linspace(-lim, lim, steps, dtype=torch.float64)
    z = torch.cartesian_prod(axis, axis)                          # (steps^2, 2), the second coordinate fastest
    with torch.no_grad():
        log_p = prior.log_prob(z).reshape(steps, steps).T         # rows: z_2, columns: z_1
    return axis, log_p


def view_limit(points: torch.Tensor, share: float = 0.995, least: float = 3.0) -> float:
    """A half-width for a square view centred on 0 that holds ``share`` of ``points`` (N, 2) on each axis,
    with a margin, and at least ``least``. Notebook 12."""
    q = torch.quantile(points.detach().cpu().double().abs(), share, dim=0).max().item()
    return max(least, math.ceil(1.15 * q * 2) / 2)


def draw_prior_density(prior: Prior, codes: torch.Tensor | None = None, lim: float | None = None, ax=None,
                       title: str | None = None, steps: int = 161):
    """The density of a 2-D prior as an image (log scale, its top 7 nats), with ``codes`` (N, 2) over it.

    Where the codes sit and the prior is dark, the prior wastes mass the encoder never uses (a hole);
    where the prior is bright and no code sits, the same. The view, +-``lim`` on both axes, holds
    99.5% of the codes (or of 5,000 prior samples) unless ``lim`` is given. Returns the axes. Notebook 12.
    """
    import matplotlib.pyplot as plt

    if prior.latent_dim != 2:
        raise ValueError(f"draw_prior_density draws 2-D priors; this one has {prior.latent_dim} dimensions")
    if lim is None:
        lim = view_limit(codes if codes is not None else prior.sample(5000, torch.Generator().manual_seed(0)))
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.0))
    _, log_p = _density_grid(prior, lim, steps)
    top = log_p.max().item()
    ax.imshow(log_p.clamp(min=top - 7).numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma",
              vmin=top - 7, vmax=top)
    if codes is not None:
        c = codes.detach().cpu()
        ax.scatter(c[:, 0], c[:, 1], s=1, color="cyan", alpha=0.25, linewidths=0, rasterized=True)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title or prior.name)
    return ax


def component_order(prior: MixturePrior) -> torch.Tensor:
    """The components of a mixture from the heaviest to the lightest (ties in their own order). Notebook 12."""
    _, _, log_weights = prior.mixture()
    return torch.sort(log_weights.detach().cpu(), descending=True, stable=True).indices


def draw_prior_explorer(models: dict, prior: str, component: int, n: int = 8, seed: int = 0, lim: float | None = None):
    """One component of one model's mixture prior: where it sits, what it decodes to, and its pseudo-input.

    ``models`` maps names to 2-D VAEs with mixture priors; ``component`` counts from the heaviest
    (:func:`component_order`). Left: the prior's density, the component's mean and 2-standard-deviation
    ellipse. Right: the pseudo-input u_k (a VampPrior's), the decoded mean of the component, and ``n``
    decoded draws from it (a CPU generator seeded with ``seed``). Returns the figure. The drawing
    function of notebook 12's explorer.
    """
    import matplotlib.pyplot as plt

    from .plots import show_images

    if prior not in models:
        raise ValueError(f"no model with the prior {prior!r}; the models are {list(models)}")
    model = models[prior]
    mixture = model.prior
    if not isinstance(mixture, MixturePrior):
        raise ValueError(f"the {prior!r} model's prior is not a mixture")
    order = component_order(mixture)
    if isinstance(component, bool) or not isinstance(component, int) or not 0 <= component < len(order):
        raise ValueError(f"component must be an integer from 0 to {len(order) - 1}, got {component!r}")
    k = int(order[component])
    with torch.no_grad():
        means, logvars, log_weights = (t.detach().cpu().float() for t in mixture.mixture())
        eps = torch.randn(n, means.shape[1], generator=torch.Generator().manual_seed(seed))
        z = torch.cat([means[k:k + 1], means[k] + torch.exp(0.5 * logvars[k]) * eps])
        images = model.decode(z.to(model.device)).cpu()
    pseudo = isinstance(mixture, VampPrior)
    fig = plt.figure(figsize=(11, 3.9))
    grid = fig.add_gridspec(2, 3, width_ratios=[1.05, 0.55, 2.2])
    ax = fig.add_subplot(grid[:, 0])
    draw_prior_density(mixture, lim=lim, ax=ax, title=f"{prior}: p(z)")
    angle = torch.linspace(0, 2 * math.pi, 100)
    sd = torch.exp(0.5 * logvars[k])
    ax.plot(means[k, 0] + 2 * sd[0] * torch.cos(angle), means[k, 1] + 2 * sd[1] * torch.sin(angle), color="cyan", lw=1.5)
    ax.plot(means[k, 0], means[k, 1], "+", color="cyan", ms=10)
    top = fig.add_subplot(grid[0, 1])
    if pseudo:
        show_images(mixture.pseudo_inputs()[k:k + 1].detach().cpu(), nrow=1, ax=top, title="pseudo-input $u_k$")
    else:
        top.axis("off")
        top.text(0.5, 0.5, "no pseudo-input:\na free Gaussian", ha="center", va="center", fontsize=9)
    show_images(images[:1], nrow=1, ax=fig.add_subplot(grid[1, 1]), title="decoded mean")
    show_images(images[1:], nrow=4, ax=fig.add_subplot(grid[:, 2]), title=f"{n} draws from component {component}")
    fig.suptitle(f"{prior}: component {component} of {len(order)} by weight (weight {log_weights[k].exp():.3f})")
    fig.tight_layout()
    return fig
