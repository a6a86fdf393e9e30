"""Theory: the exact and Monte Carlo quantities that notebooks 01-03 derive and check.

* Notebook 01 (the ELBO): :class:`LinearGaussian`, a latent-variable model small enough that
  log p(x), the posterior p(z|x) and the ELBO of any Gaussian q have closed forms;
  :func:`draw_elbo_gap`, the drawing function of its slider explorer; the helpers
  :func:`log_normal`, :func:`normal_kl`, :func:`mc_estimate` and :func:`show_source`.
* Notebook 02 (the reparameterization trick): two estimators of grad_mu E_q[f(z)],
  :func:`reparam_grad_samples` (pathwise) and :func:`score_grad_samples` (score function).
* Notebook 03 (the Gaussian KL): :func:`gaussian_kl_mc`, the Monte Carlo twin of the closed form
  :func:`vae_lib.losses.gaussian_kl`.

Notation is the textbook VAE's: q(z|x) = N(mu, sigma^2) is the approximate posterior, p(z) = N(0, I) the
prior, p_theta(x|z) the decoder. Everything is computed in float64: the notebooks compare
estimates with exact values to many digits, and float32 rounding would blur those checks.
Monte Carlo draws take an optional ``torch.Generator``, so that a figure or a check can be
reproduced exactly.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from .losses import gaussian_kl
from .models import reparameterize
from .utils import show_source  # noqa: F401  (re-exported: notebooks 01-03 import it from here)

DTYPE = torch.float64
KL_ESTIMATORS = ("mc", "analytic")
_LOG_2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------- input checks


def _tensor(value, name: str, positive: bool = False) -> torch.Tensor:
    """``value`` as a float64 tensor, or a ValueError that names the argument."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise ValueError(f"{name} must be a number or a tensor of numbers, got a boolean")
    try:
        t = torch.as_tensor(value, dtype=DTYPE)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a number or a tensor of numbers, got {type(value).__name__}") from err
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")
    if positive and not (t > 0).all():
        raise ValueError(f"{name} must be > 0 (it is a standard deviation), got a minimum of {t.min().item():.3g}")
    return t


def _real(value, name: str, positive: bool = False) -> float:
    """``value`` as a finite Python float, or a ValueError that names the argument."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _broadcast(*named: tuple[torch.Tensor, str]) -> list[torch.Tensor]:
    """Broadcast tensors against each other, or a ValueError that lists their shapes."""
    try:
        return list(torch.broadcast_tensors(*(t for t, _ in named)))
    except RuntimeError as err:
        shapes = ", ".join(f"{name} {tuple(t.shape)}" for t, name in named)
        raise ValueError(f"shapes do not broadcast: {shapes}") from err


def _n_samples(n_samples, minimum: int = 1) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < minimum:
        raise ValueError(f"n_samples must be an integer >= {minimum}, got {n_samples!r}")
    return n_samples


def _generator(generator) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def _standard_normal(n: int, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
    """eps ~ N(0, I) of shape (n, *shape): the one place where the estimators draw randomness."""
    return torch.randn((n, *shape), dtype=DTYPE, generator=generator)


# --------------------------------------------------------------------------- small helpers


class MCEstimate(NamedTuple):
    """A Monte Carlo estimate: the sample ``mean``, its standard error ``stderr`` and ``n``.

    ``stderr`` is the sample standard deviation over sqrt(n): the typical distance between the
    estimate and the exact value. Introduced in notebook 01.
    """

    mean: torch.Tensor
    stderr: torch.Tensor
    n: int


def mc_estimate(samples: torch.Tensor, dim: int = 0) -> MCEstimate:
    """Average i.i.d. Monte Carlo ``samples`` along ``dim``; return an :class:`MCEstimate`.

    The standard error uses the unbiased sample variance, so at least two samples are needed.
    Introduced in notebook 01.
    """
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
        raise ValueError(f"samples must be a float tensor, got {type(samples).__name__}")
    if samples.ndim == 0:
        raise ValueError("samples must have a sample dimension; got a 0-d tensor")
    if not -samples.ndim <= dim < samples.ndim:
        raise ValueError(f"dim={dim} is out of range for samples of shape {tuple(samples.shape)}")
    n = samples.shape[dim]
    if n < 2:
        raise ValueError(f"a standard error needs at least 2 samples along dim {dim}, got {n}")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or inf")
    return MCEstimate(samples.mean(dim), samples.std(dim) / math.sqrt(n), n)


def log_normal(x, mean, std) -> torch.Tensor:
    """log N(x; mean, std^2) elementwise (broadcasting), in float64.

    -1/2 log(2 pi) - log std - (x - mean)^2 / (2 std^2). Introduced in notebook 01.
    """
    x, mean, std = _broadcast((_tensor(x, "x"), "x"), (_tensor(mean, "mean"), "mean"),
                              (_tensor(std, "std", positive=True), "std"))
    return -0.5 * _LOG_2PI - torch.log(std) - 0.5 * ((x - mean) / std) ** 2


def normal_kl(q_mean, q_std, p_mean, p_std) -> torch.Tensor:
    """KL(N(q_mean, q_std^2) || N(p_mean, p_std^2)) for univariate normals, elementwise.

    log(p_std / q_std) + (q_std^2 + (q_mean - p_mean)^2) / (2 p_std^2) - 1/2. With p = N(0, 1)
    it is :func:`vae_lib.losses.gaussian_kl` for one latent dimension. Notebook 01 uses it to
    measure the gap between log p(x) and the ELBO.
    """
    q_mean, p_mean = _tensor(q_mean, "q_mean"), _tensor(p_mean, "p_mean")
    q_std, p_std = _tensor(q_std, "q_std", positive=True), _tensor(p_std, "p_std", positive=True)
    q_mean, q_std, p_mean, p_std = _broadcast((q_mean, "q_mean"), (q_std, "q_std"), (p_mean, "p_mean"),
                                              (p_std, "p_std"))
    return torch.log(p_std / q_std) + (q_std**2 + (q_mean - p_mean) ** 2) / (2 * p_std**2) - 0.5


# --------------------------------------------------------------------------- notebook 01: the exact model


@dataclass(frozen=True)
class LinearGaussian:
    """The linear-Gaussian latent-variable model z ~ N(0, 1), x | z ~ N(w z + b, s^2).

    Its decoder p_theta(x|z) is linear, with theta = (w, b, s), so everything about it has a
    closed form: the evidence log p(x), the posterior p(z|x), and the ELBO of any Gaussian
    q(z|x) = N(q_mean, q_std^2). The latent z is one-dimensional. Every method broadcasts: ``x``
    (and ``z``, ``q_mean``, ``q_std``) may be tensors, each entry of ``x`` one observation with its
    own latent. Results are float64 tensors. Introduced in notebook 01; later notebooks use it as
    ground truth for estimators of log p(x).
    """

    w: float = 1.0
    b: float = 0.0
    s: float = 1.0

    def __post_init__(self) -> None:
        # Frozen dataclass: store the checked floats with object.__setattr__.
        object.__setattr__(self, "w", _real(self.w, "w"))
        object.__setattr__(self, "b", _real(self.b, "b"))
        object.__setattr__(self, "s", _real(self.s, "s (the decoder's noise std)", positive=True))

    def log_prior(self, z) -> torch.Tensor:
        """log p(z) = log N(z; 0, 1)."""
        return log_normal(z, 0.0, 1.0)

    def log_likelihood(self, x, z) -> torch.Tensor:
        """log p_theta(x|z) = log N(x; w z + b, s^2)."""
        z = _tensor(z, "z")
        return log_normal(x, self.w * z + self.b, self.s)

    def log_joint(self, x, z) -> torch.Tensor:
        """log p(x, z) = log p(z) + log p_theta(x|z)."""
        return self.log_prior(z) + self.log_likelihood(x, z)

    def log_marginal(self, x) -> torch.Tensor:
        """The evidence log p(x) = log N(x; b, w^2 + s^2).

        x = w z + b + s * noise is a sum of independent Gaussians, so it is Gaussian with mean b
        and variance w^2 + s^2.
        """
        return log_normal(x, self.b, math.sqrt(self.w**2 + self.s**2))

    def posterior(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact posterior p(z|x) = N(mean, std^2), returned as ``(mean, std)``.

        Completing the square in log p(z) + log p_theta(x|z) gives precision 1 + w^2 / s^2, so
        var = s^2 / (w^2 + s^2) and mean = w (x - b) / (w^2 + s^2). ``std`` has the shape of ``mean``.
        """
        x = _tensor(x, "x")
        denominator = self.w**2 + self.s**2
        mean = self.w * (x - self.b) / denominator
        std = torch.full_like(mean, self.s / math.sqrt(denominator))
        return mean, std

    def elbo(self, x, q_mean, q_std) -> torch.Tensor:
        """The exact ELBO of q(z|x) = N(q_mean, q_std^2): E_q[log p_theta(x|z)] - KL(q || p(z)).

        Under q, x - w z - b has mean x - w q_mean - b and variance w^2 q_std^2, which gives the
        expected log-likelihood in closed form; the KL term is
        :func:`vae_lib.losses.gaussian_kl` (the textbook VAE's formula) with one latent dimension.
        """
        x, q_mean, q_std = _broadcast(
            (_tensor(x, "x"), "x"), (_tensor(q_mean, "q_mean"), "q_mean"), (_tensor(q_std, "q_std", True), "q_std")
        )
        residual_sq = (x - self.w * q_mean - self.b) ** 2 + (self.w * q_std) ** 2
        expected_log_lik = -0.5 * _LOG_2PI - math.log(self.s) - residual_sq / (2 * self.s**2)
        kl = gaussian_kl(q_mean.unsqueeze(-1), (2 * torch.log(q_std)).unsqueeze(-1))
        return expected_log_lik - kl

    def elbo_mc(self, x, q_mean, q_std, n_samples: int, kl: str = "mc",
                generator: torch.Generator | None = None) -> MCEstimate:
        """Monte Carlo estimate of the ELBO from ``n_samples`` draws z = q_mean + q_std * eps.

        ``kl="mc"`` averages log p(x, z) - log q(z|x), everything estimated (notebook 01);
        ``kl="analytic"`` averages log p_theta(x|z) - KL(q || p(z)) with the KL in closed form
        (notebook 03). The draws go through :func:`vae_lib.models.reparameterize`, with eps of
        shape (n_samples, *broadcast shape) from ``generator``. Returns an :class:`MCEstimate`.
        """
        if kl not in KL_ESTIMATORS:
            raise ValueError(f"kl must be one of {KL_ESTIMATORS}, got {kl!r}")
        n = _n_samples(n_samples, minimum=2)
        x, q_mean, q_std = _broadcast(
            (_tensor(x, "x"), "x"), (_tensor(q_mean, "q_mean"), "q_mean"), (_tensor(q_std, "q_std", True), "q_std")
        )
        logvar = 2 * torch.log(q_std)
        z = reparameterize(q_mean, logvar, _standard_normal(n, q_mean.shape, _generator(generator)))
        if kl == "mc":
            samples = self.log_joint(x, z) - log_normal(z, q_mean, q_std)
        else:
            samples = self.log_likelihood(x, z) - gaussian_kl(q_mean.unsqueeze(-1), logvar.unsqueeze(-1))
        return mc_estimate(samples)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` pairs from the model: z ~ p(z), then x ~ p_theta(x|z). Returns ``(z, x)``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        generator = _generator(generator)
        z = torch.randn(n, dtype=DTYPE, generator=generator)
        x = self.w * z + self.b + self.s * torch.randn(n, dtype=DTYPE, generator=generator)
        return z, x


def draw_elbo_gap(model: LinearGaussian, x: float, q_mean: float, q_log_std: float,
                  mean_range: tuple[float, float] = (-1.5, 2.5),
                  log_std_range: tuple[float, float] = (-2.5, 1.0)):
    """Draw how far the ELBO of q = N(q_mean, exp(q_log_std)^2) sits below log p(x). Returns the figure.

    Three panels for one observation ``x`` of ``model``: q against the true posterior p(z|x);
    the ELBO as q's mean moves (its std fixed); the ELBO as q's log-std moves (its mean fixed).
    The gap log p(x) - ELBO, drawn as a red segment, is KL(q || p(z|x)). The slider explorer of
    notebook 01 calls it with the sliders' values.
    """
    import matplotlib.pyplot as plt

    if not isinstance(model, LinearGaussian):
        raise ValueError(f"model must be a LinearGaussian, got {type(model).__name__}")
    x, q_mean, q_log_std = _real(x, "x"), _real(q_mean, "q_mean"), _real(q_log_std, "q_log_std")
    for name, (lo, hi) in (("mean_range", mean_range), ("log_std_range", log_std_range)):
        if not (_real(lo, name) < _real(hi, name)):
            raise ValueError(f"{name} must be (low, high) with low < high, got {(lo, hi)}")
    q_std = math.exp(q_log_std)
    post_mean, post_std = (t.item() for t in model.posterior(x))
    log_px = model.log_marginal(x).item()
    elbo = model.elbo(x, q_mean, q_std).item()
    gap = max(log_px - elbo, 0.0)  # KL >= 0; rounding alone can make it -1e-16 at the posterior

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    # Left: the two densities over z.
    z = torch.linspace(min(mean_range[0], q_mean - 4 * q_std), max(mean_range[1], q_mean + 4 * q_std), 600,
                       dtype=DTYPE)
    axes[0].plot(z, model.log_prior(z).exp(), color="0.6", ls=":", label="prior p(z)")
    axes[0].plot(z, log_normal(z, post_mean, post_std).exp(), color="C0", label="posterior p(z|x)")
    axes[0].plot(z, log_normal(z, q_mean, q_std).exp(), color="C1", ls="--", label="q(z|x)")
    axes[0].set_xlabel("z")
    axes[0].set_ylabel("density")
    axes[0].set_title("q against the true posterior")
    axes[0].legend(fontsize=8, loc="upper left")

    # Middle and right: the ELBO along each of q's two parameters, the other one held fixed.
    means = torch.linspace(*mean_range, 200, dtype=DTYPE)
    log_stds = torch.linspace(*log_std_range, 200, dtype=DTYPE)
    curves = (
        (axes[1], means, model.elbo(x, means, q_std), q_mean, post_mean, "q's mean"),
        (axes[2], log_stds, model.elbo(x, q_mean, log_stds.exp()), q_log_std, math.log(post_std), "q's log-std"),
    )
    for ax, grid, values, current, best, label in curves:
        ax.plot(grid, values, color="C1", label="ELBO(q)")
        ax.axhline(log_px, color="C0", label="log p(x)")
        ax.axvline(best, color="0.6", ls=":", label="posterior's value")
        ax.plot([current], [elbo], "o", color="C1")
        ax.plot([current, current], [elbo, log_px], color="C3", lw=2, label="gap = KL(q || p(z|x))")
        ax.set_xlabel(label)
        ax.set_ylim(log_px - 8, log_px + 1)
        ax.set_xlim(grid[0].item(), grid[-1].item())
    axes[1].set_title("ELBO as q's mean moves")
    axes[2].set_title("ELBO as q's log-std moves")
    axes[1].set_ylabel("nats")
    axes[2].legend(fontsize=8, loc="best")
    fig.suptitle(f"x = {x:.2f}:  log p(x) = {log_px:.3f},  ELBO = {elbo:.3f},  gap = KL = {gap:.3f}")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- notebook 02: gradient estimators


def _objective_values(f: Callable, z: torch.Tensor, n: int) -> torch.Tensor:
    values = f(z)
    if not isinstance(values, torch.Tensor) or values.shape != (n,):
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"f must map z of shape {tuple(z.shape)} to a tensor of shape ({n},), one value per sample; "
                         f"got {got}")
    if not torch.isfinite(values).all():
        raise ValueError("f returned NaN or inf")
    return values


def _check_estimator_inputs(f, mu, sigma, n_samples, generator):
    if not callable(f):
        raise ValueError(f"f must be a function of z, got {type(f).__name__}")
    mu = _tensor(mu, "mu").detach()
    sigma = _tensor(sigma, "sigma", positive=True).detach()
    mu, sigma = _broadcast((mu, "mu"), (sigma, "sigma"))
    return mu, sigma, _n_samples(n_samples), _generator(generator)


def reparam_grad_samples(f: Callable, mu, sigma, n_samples: int,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample pathwise estimates of grad_mu E_{z ~ N(mu, sigma^2)}[f(z)] (the reparameterization trick).

    Draws eps ~ N(0, I) of shape (n_samples, *mu.shape) from ``generator``, forms
    z = mu + sigma * eps with :func:`vae_lib.models.reparameterize`, and lets autograd
    differentiate f through it: row i is grad_mu f(mu + sigma * eps_i). Their mean is the
    estimate (:func:`mc_estimate` adds its standard error). ``f`` maps a batch z of shape
    (n_samples, *mu.shape) to n_samples values and must be differentiable in torch.
    Introduced in notebook 02.
    """
    mu, sigma, n, generator = _check_estimator_inputs(f, mu, sigma, n_samples, generator)
    eps = _standard_normal(n, mu.shape, generator)
    # One copy of mu per sample, so that autograd hands back each sample's gradient separately.
    mu_rows = mu.expand(n, *mu.shape).clone().requires_grad_(True)
    z = reparameterize(mu_rows, (2 * torch.log(sigma)).expand_as(mu_rows), eps)
    values = _objective_values(f, z, n)
    if not values.requires_grad:
        raise ValueError("f(z) does not depend on z through torch operations, so there is no path to "
                         "differentiate; the pathwise estimator needs a differentiable f (the score-function "
                         "estimator does not)")
    (grads,) = torch.autograd.grad(values.sum(), mu_rows)
    return grads


def score_grad_samples(f: Callable, mu, sigma, n_samples: int, generator: torch.Generator | None = None,
                       baseline: float = 0.0) -> torch.Tensor:
    """Per-sample score-function (REINFORCE) estimates of grad_mu E_{z ~ N(mu, sigma^2)}[f(z)].

    Row i is (f(z_i) - baseline) * grad_mu log q(z_i) with grad_mu log N(z; mu, sigma^2) =
    (z - mu) / sigma^2. Only values of f are needed, never its gradient. The draws
    z = mu + sigma * eps use the same eps as :func:`reparam_grad_samples` for the same generator
    state. A constant ``baseline`` leaves the mean unchanged (E_q[grad log q] = 0) and can lower
    the variance. Introduced in notebook 02.
    """
    mu, sigma, n, generator = _check_estimator_inputs(f, mu, sigma, n_samples, generator)
    baseline = _real(baseline, "baseline")
    z = mu + sigma * _standard_normal(n, mu.shape, generator)
    with torch.no_grad():
        values = _objective_values(f, z, n)
    score = (z - mu) / sigma**2  # the log-derivative grad_mu log q(z)
    return (values - baseline).reshape(n, *([1] * mu.ndim)) * score


# --------------------------------------------------------------------------- notebook 03: the KL by Monte Carlo


def gaussian_kl_mc(mu, logvar, n_samples: int, generator: torch.Generator | None = None) -> MCEstimate:
    """Monte Carlo estimate of KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over the last dimension.

    Averages log q(z) - log p(z) over ``n_samples`` draws z = mu + sigma * eps (eps of shape
    (n_samples, *mu.shape) from ``generator``), the definition KL = E_q[log q(z) - log p(z)]
    that :func:`vae_lib.losses.gaussian_kl` evaluates in closed form. Same argument convention
    as ``gaussian_kl``; returns an :class:`MCEstimate` whose mean has shape ``mu.shape[:-1]``.
    Introduced in notebook 03.
    """
    mu, logvar = _tensor(mu, "mu"), _tensor(logvar, "logvar")
    if mu.shape != logvar.shape or mu.ndim < 1:
        raise ValueError(f"mu and logvar must have the same shape with a latent dimension last, got "
                         f"{tuple(mu.shape)} and {tuple(logvar.shape)}")
    n = _n_samples(n_samples, minimum=2)
    std = torch.exp(0.5 * logvar)
    z = reparameterize(mu, logvar, _standard_normal(n, mu.shape, _generator(generator)))
    samples = (log_normal(z, mu, std) - log_normal(z, 0.0, 1.0)).sum(-1)
    return mc_estimate(samples)
