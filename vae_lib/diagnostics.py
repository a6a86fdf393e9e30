"""Diagnosing posterior collapse: where a VAE's KL goes, dimension by dimension, and what it buys.

* :func:`kl_per_dimension`: the test set's mean KL(q(z_j|x) || p(z_j)) of each latent dimension.
* :func:`active_units`: Burda, Grosse and Salakhutdinov's (2015) count: unit j is active when
  Cov_x(E_q[z_j|x]) > 0.01, the variance over the data of its posterior mean.
* :func:`elbo_surgery`: Hoffman and Johnson's (2016) split of the average KL into the mutual
  information I_q(x; z) and the KL of the aggregate posterior q(z) to the prior, each estimated on
  its own (Monte Carlo with separate draws, or the 2-D quadrature of notebook 07). Their sum matching
  the closed-form average KL checks the Monte Carlo draws and log q(z|x), not log q(z): log q(z) is
  added in one part and subtracted in the other, so in expectation any function in its place gives
  the same sum. What checks log q(z) is the quadrature against the Monte Carlo estimate of
  KL(q(z) || p(z)) for a 2-D model, and that neither part is negative.
* :func:`posterior_surgery`: the same split for any set of Gaussian posteriors against N(0, I), such as
  one layer of a hierarchical VAE (notebook 13).
* :func:`draw_kl_per_dimension`: the bar chart of notebook 10's slider.

Introduced in notebook 10.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .evaluation import LatentGrid, posterior_box
from .models import VAEBase
from .priors import log_normal_pairs

DTYPE = torch.float64
_LOG_2PI = math.log(2 * math.pi)
#: Burda et al.'s threshold on Cov_x(E_q[z_j|x]).
ACTIVE_THRESHOLD = 0.01


def _check_vae(model) -> None:
    if not isinstance(model, VAEBase):
        raise ValueError(f"model must be a VAE of the course (a VAEBase), got {type(model).__name__}")


def _check_images(images, model) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 2 or images.shape[0] < 2 \
            or images.shape[1] != model.input_dim or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor of shape (N, {model.input_dim}) with N >= 2, got {got}")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@torch.no_grad()
def posterior_parameters(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
                         batch_size: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)`` of q(z|x) for every image, float64 on the CPU, in eval mode. Notebook 10."""
    _check_vae(model)
    _check_images(images, model)
    _positive_int(batch_size, "batch_size")
    was_training = model.training
    model.eval()
    mus, logvars = [], []
    for start in range(0, len(images), batch_size):
        rows = slice(start, start + batch_size)
        mu, logvar = model.encode(images[rows].to(model.device), None if labels is None else labels[rows].to(model.device))
        mus.append(mu.cpu().to(DTYPE))
        logvars.append(logvar.cpu().to(DTYPE))
    model.train(was_training)
    return torch.cat(mus), torch.cat(logvars)


def kl_per_dimension(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over ``images`` of KL(q(z_j|x) || N(0, 1)) for each latent dimension j: shape (d,), nats.

    Summed over j it is the average KL term of the ELBO (the rate). A dimension whose KL is about 0
    carries no information about x: its posterior is the prior for every image. Only a factorised prior
    splits the KL by dimension, so a model with another prior gets a ``ValueError``. Notebook 10.
    """
    _check_vae(model)
    if not model.prior.closed_form_kl:
        raise ValueError(f"the {model.prior.name} prior does not split the KL by dimension; "
                         "use elbo_surgery for its KL, or active_units for which units are used")
    mu, logvar = posterior_parameters(model, images, labels)
    return model.prior.kl(None, mu, logvar).mean(0)


@dataclass
class ActiveUnits:
    """Burda et al.'s activity statistic: ``variance`` (d,) = Var_x(E_q[z_j|x]); ``active`` (d,) bool;
    ``count``; ``threshold``. Notebook 10."""

    variance: torch.Tensor
    active: torch.Tensor
    count: int
    threshold: float


def active_units(model: nn.Module, images: torch.Tensor, threshold: float = ACTIVE_THRESHOLD,
                 labels: torch.Tensor | None = None) -> ActiveUnits:
    """Which latent units are used: unit j is active when the variance over images of its posterior
    mean, Cov_x(E_q[z_j|x]), exceeds ``threshold`` (0.01, Burda, Grosse and Salakhutdinov, 2015).

    A unit whose posterior mean is the same for every image tells the decoder nothing about which
    image it sees, however its variance behaves. The variance is over ``images`` (population
    variance, dividing by N). Since KL_j >= mu_j^2 / 2 for each image, an active unit has a mean KL of
    at least threshold / 2 nats. Notebook 10.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    mu, _ = posterior_parameters(model, images, labels)
    variance = mu.var(0, unbiased=False)
    active = variance > threshold
    return ActiveUnits(variance, active, int(active.sum()), float(threshold))


def log_aggregate_posterior(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """log q(z) of the aggregate posterior q(z) = (1/N) sum_n q(z|x_n), at points ``z`` (S, d): (S,).

    ``mu`` and ``logvar`` (N, d) are the N images' posteriors; the mixture is evaluated exactly, all
    N components for every point, with log-sum-exp, ``chunk`` points at a time. Notebook 10.
    """
    if not (isinstance(z, torch.Tensor) and z.ndim == 2 and z.shape[1] == mu.shape[1] and mu.shape == logvar.shape):
        raise ValueError("z must be (S, d) and mu, logvar (N, d) with the same d")
    z, mu, logvar = z.to(DTYPE), mu.to(DTYPE), logvar.to(DTYPE)
    out = torch.empty(z.shape[0], dtype=DTYPE)
    for s in range(0, z.shape[0], chunk):
        out[s:s + chunk] = torch.logsumexp(log_normal_pairs(z[s:s + chunk], mu, logvar), dim=1) - math.log(mu.shape[0])
    return out


#: ``elbo_surgery(grid="auto")`` halves its grid's step until the quadrature's error estimate is below this
#: many nats, or the grid would exceed AUTO_GRID_POINTS points.
AUTO_GRID_TOL, AUTO_GRID_POINTS = 1e-3, 1_000_000


def _log_prior(model, z: torch.Tensor) -> torch.Tensor:
    """log p(z) of the model's prior at float64 codes z (S, d), without gradients."""
    with torch.no_grad():
        return model.prior.log_prob(z).to(DTYPE)


def _marginal_kl_by_quadrature(model, grid: LatentGrid, mu: torch.Tensor, logvar: torch.Tensor) -> tuple[float, float]:
    """KL(q(z) || p(z)) = sum_g h^d q(z_g) log(q(z_g) / p(z_g)) on ``grid``, and the change when the step doubles."""
    log_qz = log_aggregate_posterior(grid.points, mu, logvar)
    log_pz = _log_prior(model, grid.points)
    integrand = (log_qz + math.log(grid.cell)).exp() * (log_qz - log_pz)   # q's mass on each cell, weighted
    fine = integrand.sum().item()
    coarse = integrand[grid.coarse_index()].sum().item() * 2 ** grid.dim   # every other point: step 2h
    return fine, abs(fine - coarse)


@dataclass
class Surgery:
    """The average KL split into two parts, each with its Monte Carlo standard error (0 for quadrature).

    ``average_kl``: (1/N) sum_n KL(q(z|x_n) || p(z)), in closed form for the standard normal
    (``average_kl_se`` 0), else by Monte Carlo from the draws of I_q. ``mutual_information``: I_q(x; z),
    the information the code carries about which image it came from (at most log N).
    ``marginal_kl``: KL(q(z) || p(z)), how far the aggregate posterior is from the prior. The identity
    is average_kl = mutual_information + marginal_kl (Hoffman and Johnson, 2016). Notebook 10.
    """

    average_kl: float
    mutual_information: float
    mutual_information_se: float
    marginal_kl: float
    marginal_kl_se: float
    marginal_kl_method: str
    marginal_kl_error: float = 0.0   # quadrature only: the change when the grid's step is doubled
    average_kl_se: float = 0.0       # 0 when average_kl is in closed form

    @property
    def total(self) -> float:
        """mutual_information + marginal_kl, to compare with average_kl."""
        return self.mutual_information + self.marginal_kl

    @property
    def total_se(self) -> float:
        """The standard error of :attr:`total` (the two parts use independent draws)."""
        return math.hypot(self.mutual_information_se, self.marginal_kl_se)


def elbo_surgery(model: nn.Module, images: torch.Tensor, n_samples: int = 2000, grid: LatentGrid | str | None = None,
                 generator: torch.Generator | None = None, labels: torch.Tensor | None = None) -> Surgery:
    """Hoffman and Johnson's ELBO surgery on ``images``: the average KL as I_q(x; z) + KL(q(z) || p(z)).

    The data distribution is the N given images, so q(z) = (1/N) sum_n q(z|x_n) exactly.

    * I_q(x; z) = E_n E_{q(z|x_n)}[log q(z|x_n) - log q(z)], by Monte Carlo: ``n_samples`` draws of
      (n, z ~ q(z|x_n)).
    * KL(q(z) || p(z)) = E_{q(z)}[log q(z) - log p(z)], from ``n_samples`` *other* draws of q(z), or,
      with a ``grid`` (a 2-D latent space), by quadrature: sum_g h^2 q(z_g) log(q(z_g) / p(z_g)).
      ``grid="auto"`` places the grid from the posteriors themselves: a box that holds every posterior
      and a step of 1.5 times the narrowest posterior's standard deviation
      (:func:`vae_lib.evaluation.posterior_box`), at most 0.05, halved until the sum changes by less than
      0.001 nats (with a warning if a million points do not get it there), so that it suits the model
      in hand. The same sum on every other point (twice
      the step) gives ``marginal_kl_error``, the quadrature's error estimate.

    Neither part uses the closed-form KL, but their sum agreeing with it checks less than it seems: with
    both parts by Monte Carlo, E_q[log q(z)] enters one part with a plus and the other with a minus, so
    any function used as log q(z) gives the same expected sum. It checks the draws and log q(z|x) and
    log p(z). To check log q(z) itself, compare a 2-D model's quadrature value of KL(q(z) || p(z)) with
    its Monte Carlo value, and check that both parts are >= 0 (notebook 10 does both). Notebook 10.
    """
    n_samples = _positive_int(n_samples, "n_samples")
    _check_surgery_generator(generator)
    _check_vae(model)
    mu, logvar = posterior_parameters(model, images, labels)
    d = mu.shape[1]
    closed = model.prior.kl(None, mu, logvar).sum(-1).mean().item() if model.prior.closed_form_kl else None
    average_kl, average_kl_se, mi, mi_se, draw = _information(mu, logvar, n_samples, generator,
                                                               lambda z: _log_prior(model, z), closed)
    if grid is None:
        marginal, marginal_se = _marginal_kl_by_monte_carlo(mu, logvar, draw, lambda z: _log_prior(model, z))
        method = "Monte Carlo"
    else:
        auto = isinstance(grid, str) and grid == "auto" and d == 2
        if auto:   # the posteriors' box; a step that halves until the sum no longer moves
            span, step = posterior_box(mu, logvar)
            grid = LatentGrid(span, 2 * math.ceil(span / min(0.05, step)) + 1)
        if not isinstance(grid, LatentGrid) or grid.dim != d:
            raise ValueError(f"grid must be a LatentGrid in the model's {d} latent dimensions (or 'auto' for d = 2)")
        while True:
            marginal, error = _marginal_kl_by_quadrature(model, grid, mu, logvar)
            if auto and error >= AUTO_GRID_TOL and len(grid) * 4 > AUTO_GRID_POINTS:
                warnings.warn(f"elbo_surgery stopped refining its grid at {grid.steps} x {grid.steps} points with an "
                              f"error estimate of {error:.2g} nats, above {AUTO_GRID_TOL}: marginal_kl_error says "
                              "how far to trust KL(q(z) || p(z))", stacklevel=2)
            if not auto or error < AUTO_GRID_TOL or len(grid) * 4 > AUTO_GRID_POINTS:
                return Surgery(average_kl, mi, mi_se, marginal, 0.0, "quadrature", error, average_kl_se)
            grid = LatentGrid(grid.span, 2 * grid.steps - 1)
    return Surgery(average_kl, mi, mi_se, marginal, marginal_se, method, 0.0, average_kl_se)


def _check_surgery_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError("generator must be a torch.Generator or None")


def _information(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int, generator, log_prior, closed_kl: float | None):
    """ELBO surgery's first part, I_q(x; z), by Monte Carlo over ``n_samples`` draws of (n, z ~ q(z|x_n));
    the average KL (``closed_kl`` if given, else from the same draws); and the function that draws."""
    n, d = mu.shape

    def draw():
        rows = torch.randint(0, n, (n_samples,), generator=generator)
        eps = torch.randn(n_samples, d, generator=generator, dtype=DTYPE)
        return rows, mu[rows] + (0.5 * logvar[rows]).exp() * eps, eps

    rows, z, eps = draw()
    log_cond = -0.5 * (eps ** 2 + logvar[rows] + _LOG_2PI).sum(-1)      # log q(z | x_n) at its own draw
    info = log_cond - log_aggregate_posterior(z, mu, logvar)
    mi, mi_se = info.mean().item(), (info.std() / math.sqrt(n_samples)).item()
    if closed_kl is not None:
        return closed_kl, 0.0, mi, mi_se, draw
    rate = log_cond - log_prior(z)   # E_n E_q[log q(z|x_n) - log p(z)] from the same draws
    return rate.mean().item(), (rate.std() / math.sqrt(n_samples)).item(), mi, mi_se, draw


def _marginal_kl_by_monte_carlo(mu, logvar, draw, log_prior) -> tuple[float, float]:
    """KL(q(z) || p(z)) = E_{q(z)}[log q(z) - log p(z)] from a fresh set of draws, with its standard error."""
    _, z, _ = draw()
    values = log_aggregate_posterior(z, mu, logvar) - log_prior(z)
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item()


def posterior_surgery(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int = 2000,
                      generator: torch.Generator | None = None) -> Surgery:
    """ELBO surgery, by Monte Carlo, of N Gaussian posteriors ``(mu, logvar)`` (N, d) against N(0, I):
    the average KL(q(z|x_n) || N(0, I)) (closed form) as I_q + KL(q(z) || N(0, I)), as :func:`elbo_surgery`
    does for a model's encoder. For a layer of a hierarchical VAE, e.g. the top one's q(z_L|.) from
    :meth:`~vae_lib.models.HierarchicalVAE.top_posterior` (notebook 13)."""
    n_samples = _positive_int(n_samples, "n_samples")
    _check_surgery_generator(generator)
    if not (isinstance(mu, torch.Tensor) and isinstance(logvar, torch.Tensor) and mu.ndim == 2
            and mu.shape == logvar.shape and mu.shape[0] >= 2):
        raise ValueError("mu and logvar must be tensors of the same shape (N, d) with N >= 2")
    mu, logvar = mu.to(DTYPE).cpu(), logvar.to(DTYPE).cpu()
    closed = (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(-1).mean().item()

    def log_standard(z):
        return -0.5 * (z ** 2 + _LOG_2PI).sum(-1)

    average_kl, _, mi, mi_se, draw = _information(mu, logvar, n_samples, generator, log_standard, closed)
    marginal, marginal_se = _marginal_kl_by_monte_carlo(mu, logvar, draw, log_standard)
    return Surgery(average_kl, mi, mi_se, marginal, marginal_se, "Monte Carlo")


def draw_kl_per_dimension(results: Mapping[float, torch.Tensor], value: float, what: str = "free bits λ",
                          units: float | None = None, ax=None):
    """Bar chart of the per-dimension KL of the model trained with setting ``value`` among ``results``.

    ``results`` maps each trained setting (a free-bits lambda or a beta) to its (d,) mean KL per
    dimension; bars are sorted from the largest KL, and a dashed line marks ``value`` when ``what`` is a
    free-bits lambda. ``units``: the y-axis limit (default: the largest KL of all results). The drawing
    function of notebook 10's slider; returns the figure.
    """
    import matplotlib.pyplot as plt

    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty dict of setting -> per-dimension KL")
    matches = [k for k in results if math.isclose(float(k), float(value), rel_tol=1e-9, abs_tol=1e-12)]
    if not matches:
        raise ValueError(f"no model with {what} = {value!r}; the trained ones are {sorted(results)}")
    kl = torch.as_tensor(results[matches[0]], dtype=DTYPE).flatten()
    top = units if units is not None else max(float(torch.as_tensor(v).max()) for v in results.values())
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.2))
    else:
        fig = ax.figure
    ordered = kl.sort(descending=True).values
    ax.bar(range(1, len(ordered) + 1), ordered.numpy(), color="C0")
    if "λ" in what and value > 0:
        ax.axhline(float(value), color="C3", ls="--", lw=1, label=f"λ = {value:g}")
        ax.legend(loc="upper right")
    ax.set_ylim(0, 1.05 * top)
    ax.set_xlabel("latent dimension, sorted by its KL")
    ax.set_ylabel("mean KL per image [nats]")
    ax.set_title(f"{what} = {value:g}: total KL {kl.sum():.1f} nats, "
                 f"{int((kl > 0.1).sum())} of {len(kl)} dimensions above 0.1 nats")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def surgery_table_rows(names: Sequence[str], surgeries: Sequence[Surgery]) -> dict[str, dict[str, float]]:
    """The parts of several surgeries as columns of :func:`vae_lib.compare.markdown_table`. Notebook 10."""
    if len(names) != len(surgeries) or not names:
        raise ValueError("names and surgeries must be non-empty and of the same length")
    return {name: {"average KL": s.average_kl, "I_q(x; z)": s.mutual_information, "KL(q(z) || p(z))": s.marginal_kl,
                   "sum of the parts": s.total} for name, s in zip(names, surgeries)}
