"""Evaluation: how good is a VAE? Estimators of log p(x) and the beta trade-off, for notebook 07.

* Importance sampling: :func:`importance_log_weights` draws z_i ~ q(z|x) and returns the log
  weights log p(x, z_i) - log q(z_i|x); :func:`iwae_from_log_weights` turns groups of k of them
  into the importance-weighted bound IWAE_k; :func:`iwae_bound` does both for large k without
  keeping the weights. Everything is summed with log-sum-exp (:func:`log_mean_exp`).
* Quadrature over a 2-D latent space: :class:`LatentGrid`, :func:`grid_log_joint` (the table of
  log p(x, z) over the grid), :func:`log_marginal_grid` (log p(x) with an error estimate),
  :func:`grid_posterior` and :func:`grid_moments` (the true posterior p(z|x) on the grid), and
  :func:`gaussian_elbo_grid` / :func:`fit_gaussian_grid` (the ELBO of a Gaussian q, and the best
  diagonal Gaussian per image).
* The beta-VAE: :class:`BetaResult`, :func:`beta_result` and :func:`draw_beta_vae`, the drawing
  function of notebook 07's slider.

A *model* argument is either a VAE (anything with ``encode`` and ``decode_logits``, the interface of
:class:`vae_lib.models.VAEBase`: its decoder's distribution is ``model.likelihood``, its q(z|x) the
encoder's Gaussian; a conditional VAE also needs the images' ``labels``) or a
function ``log_joint(x, z)`` with x of shape (N, D) and z of shape (S, N, d) returning log p(x, z)
of shape (S, N); a function needs q's parameters ``q=(mu, logvar)`` for importance sampling. The
estimators work in float64: the decoder runs in its own precision and on its own device, its logits
are then promoted. Apple's MPS has no float64, so for images on MPS the float64 work (and the
results) live on the CPU. Random draws are made on the ``generator``'s device and then moved, so a CPU
generator gives the same numbers on every device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


DTYPE = torch.float64
_LOG_2PI = math.log(2 * math.pi)
#: Rows of (sample, image) pairs decoded at once: bounds the memory of the logits (x 784 x 8 bytes).
MAX_ROWS = 8192


def _max_rows(model) -> int:
    """:data:`MAX_ROWS` for a decoder of one or two numbers per pixel, fewer for one of more (a 256-way
    categorical outputs 256 per pixel), so that a decoded chunk stays about the same size in memory."""
    per_pixel = getattr(_likelihood(model), "params_per_pixel", 1) if _is_vae(model) else 1
    return max(1, MAX_ROWS * 2 // max(2, per_pixel))


# --------------------------------------------------------------------------- input checks


def _is_vae(model) -> bool:
    return isinstance(model, nn.Module) and hasattr(model, "encode") and hasattr(model, "decode_logits")


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_x(x, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor of shape (N, D), one row per image; got {got}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: pass at least one image")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _likelihood(model):
    """A model's decoder distribution: its ``likelihood``, or the seed's Bernoulli for a model without one."""
    from .likelihoods import get_likelihood

    return getattr(model, "likelihood", None) or get_likelihood("bernoulli")


def _check_model(model, x: torch.Tensor, labels=None) -> None:
    if _is_vae(model):
        _likelihood(model).check(x, name="x")
        if x.shape[1] != model.input_dim:
            raise ValueError(f"x has {x.shape[1]} pixels but the model expects {model.input_dim}")
        if getattr(model, "conditional", False) and labels is None:
            raise ValueError(f"{type(model).__name__} is conditional: pass the images' labels=...")
        if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != (x.shape[0],)):
            raise ValueError(f"labels must be a tensor of shape ({x.shape[0]},), one per image")
    elif not callable(model):
        raise ValueError(f"model must be a VAE (with encode and decode_logits) or a function log_joint(x, z), "
                         f"got {type(model).__name__}")


def _check_q(model, x: torch.Tensor, q, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z|x)'s parameters (mu, logvar) as float64 tensors of shape (N, d)."""
    if q is None:
        if not _is_vae(model):
            raise ValueError("a log_joint function has no encoder: pass q=(mu, logvar), each of shape (N, latent_dim)")
        with torch.no_grad():
            mu, logvar = model.encode(x) if labels is None else model.encode(x, labels)
    else:
        if not (isinstance(q, (tuple, list)) and len(q) == 2 and all(isinstance(t, torch.Tensor) for t in q)):
            raise ValueError("q must be a pair of tensors (mu, logvar)")
        mu, logvar = q
    if mu.ndim != 2 or mu.shape != logvar.shape or mu.shape[0] != x.shape[0]:
        raise ValueError(f"q's mu and logvar must both have shape ({x.shape[0]}, latent_dim), "
                         f"got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
        raise ValueError("q's mu or logvar contains NaN or inf")
    work = _work_device(x.device)
    return _f64(mu, work), _f64(logvar, work)


def _check_generator(generator) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def _work_device(device: torch.device | str) -> torch.device:
    """Where the float64 work happens: ``device`` itself, or the CPU for MPS (which has no float64)."""
    device = torch.device(device)
    return torch.device("cpu") if device.type == "mps" else device


def _f64(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` as float64 on ``device``, moved first (so that an MPS tensor is never cast to float64 on MPS)."""
    return t.detach().to(device).to(DTYPE)


# --------------------------------------------------------------------------- small pieces


def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log((1/k) sum_i exp(values_i)) along ``dim``, computed stably with log-sum-exp.

    The largest value is factored out before exponentiating, so log weights of -300 nats do not
    underflow to log 0. Introduced in notebook 07.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point() or values.ndim == 0:
        raise ValueError("values must be a float tensor with at least one dimension")
    if not -values.ndim <= dim < values.ndim:
        raise ValueError(f"dim={dim} is out of range for a tensor of shape {tuple(values.shape)}")
    if values.shape[dim] == 0:
        raise ValueError("log_mean_exp of an empty dimension is undefined")
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])


def _log_prior(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (_LOG_2PI + z**2).sum(-1)


def _decoder_log_joint(model: nn.Module, x: torch.Tensor, z: torch.Tensor, labels=None) -> torch.Tensor:
    """log p(z) + log p_theta(x|z) for images x (N, D) and codes z (S, N, d): (S, N), float64."""
    if z.ndim != 3 or z.shape[1] != x.shape[0]:
        raise ValueError(f"z must have shape (S, {x.shape[0]}, latent_dim), got {tuple(z.shape)}")
    work = _work_device(z.device)
    parameter = next(model.parameters())
    s = z.shape[0]
    with torch.no_grad():
        z_model = z.reshape(-1, z.shape[-1]).to(parameter.dtype).to(parameter.device)
        # Row s * N + n of z_model is sample s of image n, so labels and images are tiled s times.
        y = None if labels is None else labels.to(parameter.device).repeat(s)
        # An autoregressive decoder reads the image it scores (teacher forcing); the others ignore x.
        x_model = x.to(parameter.device, parameter.dtype).repeat(s, 1) if getattr(model, "autoregressive", False) else None
        params = (model.decode_logits(z_model) if y is None and x_model is None
                  else model.decode_logits(z_model, y, x_model)).reshape(*z.shape[:2], -1)
        # Per pixel in the decoder's precision (each term is accurate to ~1e-7 of itself); the sum
        # over 784 pixels, where float32 rounding would add up, in float64.
        terms = _likelihood(model).log_prob(params, x.to(params.device, params.dtype))
        log_lik = _f64(terms, work).sum(-1)
    return _log_prior(_f64(z, work)) + log_lik


def vae_log_joint(model: nn.Module, labels: torch.Tensor | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The function log p_theta(x, z) = log p(z) + log p_theta(x|z) of a VAE, its decoder's
    distribution being ``model.likelihood``.

    The returned ``log_joint(x, z)`` takes images x of shape (N, 784) and codes z of shape
    (S, N, latent_dim) and returns (S, N) float64 values. log p_theta(x|z) is the likelihood's
    :meth:`~vae_lib.likelihoods.Likelihood.log_prob` summed over pixels (for the seed's Bernoulli,
    minus the BCE). A conditional VAE needs the ``labels`` of those N images. Introduced in notebook 07.
    """
    if not _is_vae(model):
        raise ValueError(f"model must be a VAE with encode and decode_logits, got {type(model).__name__}")

    def log_joint(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return _decoder_log_joint(model, x, z, labels)

    return log_joint


# --------------------------------------------------------------------------- importance sampling


def importance_log_weights(model, x: torch.Tensor, n_samples: int, q=None, batch_size: int | None = None,
                           generator: torch.Generator | None = None, progress: bool = False,
                           labels: torch.Tensor | None = None) -> torch.Tensor:
    """Log importance weights log p(x, z_i) - log q(z_i|x) for z_i ~ q(z|x), i = 1..n_samples.

    Returns a float64 tensor of shape (n_samples, N), one column per image (on x's device, or on
    the CPU for MPS). Their mean over i is
    the Monte Carlo ELBO; groups of k of them give IWAE_k (:func:`iwae_from_log_weights`).
    ``model`` is a VAE or a ``log_joint`` function (see the module's docstring); ``q`` overrides
    the encoder's (mu, logvar). Images go ``batch_size`` at a time (default: as many as keep
    about 8192 decoded rows in memory); the draws z = mu + sigma * eps use ``generator``.
    ``labels``: the images' labels, for a conditional VAE. Introduced in notebook 07.
    """
    x = _check_x(x)
    n_samples = _positive_int(n_samples, "n_samples")
    _check_model(model, x, labels)
    mu, logvar = _check_q(model, x, q, labels)
    generator = _check_generator(generator)
    if _is_vae(model):
        def log_joint(xb, z, rows):
            return _decoder_log_joint(model, xb, z, None if labels is None else labels[rows])
    else:
        def log_joint(xb, z, rows):
            return model(xb, z)
    n = x.shape[0]
    if batch_size is None:
        batch_size = max(1, min(n, _max_rows(model) // n_samples))
    batch_size = _positive_int(batch_size, "batch_size")
    chunk = max(1, _max_rows(model) // batch_size)  # samples per decoder call
    work = mu.device  # float64 work: x's device, or the CPU for MPS
    out = torch.empty(n_samples, n, dtype=DTYPE, device=work)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"importance sampling, {n_samples} draws per image", leave=False)
    for start in starts:
        xb, mub, lvb = x[start:start + batch_size], mu[start:start + batch_size], logvar[start:start + batch_size]
        std = (0.5 * lvb).exp()
        for s in range(0, n_samples, chunk):
            m = min(chunk, n_samples - s)
            where = generator.device if generator is not None else work
            eps = torch.randn((m, *mub.shape), dtype=DTYPE, device=where, generator=generator).to(work)
            z = mub + std * eps
            log_q = -0.5 * (_LOG_2PI + lvb + eps**2).sum(-1)
            values = log_joint(xb, z, slice(start, start + xb.shape[0]))
            if not isinstance(values, torch.Tensor) or values.shape != (m, xb.shape[0]):
                got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
                raise ValueError(f"log_joint(x, z) must return shape ({m}, {xb.shape[0]}) for z of shape "
                                 f"{tuple(z.shape)}; got {got}")
            out[s:s + m, start:start + xb.shape[0]] = _f64(values, work) - log_q
    return out


def iwae_from_log_weights(log_weights: torch.Tensor, k: int) -> torch.Tensor:
    """IWAE_k = log (1/k) sum_i w_i for each disjoint group of k log weights.

    ``log_weights`` has shape (n_samples, N) as :func:`importance_log_weights` returns it and
    n_samples must be a multiple of k. Returns shape (n_samples // k, N): independent IWAE_k
    estimates for each image, whose mean and spread give the estimate and its standard error.
    With k = 1 they are single-sample ELBO estimates. Introduced in notebook 07.
    """
    if not isinstance(log_weights, torch.Tensor) or log_weights.ndim != 2 or not log_weights.is_floating_point():
        raise ValueError("log_weights must be a float tensor of shape (n_samples, N)")
    k = _positive_int(k, "k")
    n_samples = log_weights.shape[0]
    if n_samples % k:
        raise ValueError(f"k={k} must divide the number of samples {n_samples}")
    return log_mean_exp(log_weights.reshape(n_samples // k, k, -1), dim=1)


def iwae_bound(model, x: torch.Tensor, k: int, q=None, batch_size: int | None = None,
               generator: torch.Generator | None = None, progress: bool = False,
               labels: torch.Tensor | None = None) -> torch.Tensor:
    """The importance-weighted bound IWAE_k = log (1/k) sum_{i<=k} p(x, z_i) / q(z_i|x), z_i ~ q(z|x).

    One estimate per image, shape (N,), float64. The k weights are summed with a running
    log-sum-exp, a chunk of samples at a time, so k = 5000 over a whole test set needs little
    memory. For the same generator state it equals
    ``iwae_from_log_weights(importance_log_weights(model, x, k, ...), k)[0]``. Arguments as for
    :func:`importance_log_weights`. Introduced in notebook 07.
    """
    x = _check_x(x)
    k = _positive_int(k, "k")
    _check_model(model, x, labels)
    mu, logvar = _check_q(model, x, q, labels)
    n = x.shape[0]
    if batch_size is None:
        batch_size = max(1, min(n, _max_rows(model) // min(k, _max_rows(model))))
    batch_size = _positive_int(batch_size, "batch_size")
    chunk = max(1, _max_rows(model) // batch_size)
    result = torch.empty(n, dtype=DTYPE, device=mu.device)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"IWAE, k = {k}", leave=False)
    for start in starts:
        sl = slice(start, start + batch_size)
        running = None
        for s in range(0, k, chunk):
            m = min(chunk, k - s)
            lw = importance_log_weights(model, x[sl], m, q=(mu[sl], logvar[sl]), batch_size=batch_size,
                                        generator=generator, labels=None if labels is None else labels[sl])
            part = torch.logsumexp(lw, dim=0)
            running = part if running is None else torch.logaddexp(running, part)
        result[sl] = running - math.log(k)
    return result


# --------------------------------------------------------------------------- quadrature on a grid


class LatentGrid:
    """A regular grid of ``steps`` points per axis over the box center +- span in ``dim`` dimensions.

    The points include the box's edges, so the step is h = 2 span / (steps - 1). ``axes`` is a
    float64 tensor (dim, steps); ``points`` is (steps**dim, dim), row-major (the last coordinate
    varies fastest); ``cell`` is h**dim, the weight of every point in the quadrature sum
    integral f(z) dz ~ cell * sum_g f(z_g) (the trapezoid rule, whose end weights do not matter when
    f vanishes at the edges). ``steps`` must be odd, so that every other point forms the grid of
    twice the step (:meth:`coarse_index`), against which :func:`log_marginal_grid` estimates its
    error. Introduced in notebook 07.
    """

    def __init__(self, span: float, steps: int, dim: int = 2, center=None):
        if isinstance(span, bool) or not isinstance(span, (int, float)) or not (math.isfinite(span) and span > 0):
            raise ValueError(f"span (the half-width of the box) must be a positive number, got {span!r}")
        steps = _positive_int(steps, "steps", minimum=3)
        if steps % 2 == 0:
            raise ValueError(f"steps must be odd (every other point then forms the grid of twice the step), "
                             f"got {steps}")
        dim = _positive_int(dim, "dim")
        if dim > 3:
            raise ValueError(f"a grid in {dim} dimensions has steps**{dim} points; use importance sampling instead")
        center = torch.zeros(dim, dtype=DTYPE) if center is None else torch.as_tensor(center, dtype=DTYPE).flatten()
        if center.shape != (dim,) or not torch.isfinite(center).all():
            raise ValueError(f"center must be {dim} finite numbers, got {center.tolist()}")
        self.span, self.steps, self.dim, self.center = float(span), steps, dim, center
        base = torch.linspace(-self.span, self.span, steps, dtype=DTYPE)
        self.axes = center[:, None] + base[None, :]
        self.step = 2 * self.span / (steps - 1)
        self.cell = self.step**dim
        mesh = torch.meshgrid(*self.axes, indexing="ij")
        self.points = torch.stack([m.reshape(-1) for m in mesh], dim=-1)

    def __len__(self) -> int:
        return self.points.shape[0]

    def __repr__(self) -> str:
        return (f"LatentGrid(span={self.span}, steps={self.steps}, dim={self.dim}, step={self.step:.4g}, "
                f"points={len(self)})")

    def coarse_index(self) -> torch.Tensor:
        """Indices (into ``points``) of every other point per axis: the grid of step 2h."""
        idx = torch.arange(0, self.steps, 2)
        mesh = torch.meshgrid(*([idx] * self.dim), indexing="ij")
        flat = torch.zeros_like(mesh[0])
        for m in mesh:
            flat = flat * self.steps + m
        return flat.reshape(-1)

    def edge_mask(self) -> torch.Tensor:
        """Boolean mask of the points on the box's boundary (the outermost ring)."""
        idx = torch.arange(self.steps)
        mesh = torch.meshgrid(*([idx] * self.dim), indexing="ij")
        on_edge = torch.zeros_like(mesh[0], dtype=torch.bool)
        for m in mesh:
            on_edge |= (m == 0) | (m == self.steps - 1)
        return on_edge.reshape(-1)


def _check_grid(grid) -> LatentGrid:
    if not isinstance(grid, LatentGrid):
        raise ValueError(f"grid must be a LatentGrid, got {type(grid).__name__}")
    return grid


def _check_table(table, grid: LatentGrid) -> torch.Tensor:
    if not isinstance(table, torch.Tensor) or table.ndim != 2 or table.shape[1] != len(grid):
        got = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise ValueError(f"the log-joint table must have shape (N, {len(grid)}) for this grid, got {got}")
    total = table.sum()  # one pass: NaN or +inf anywhere makes the sum NaN or +inf (-inf is log 0, allowed)
    if torch.isnan(total) or total == math.inf:
        raise ValueError("the log-joint table contains NaN or +inf")
    return table


def grid_log_joint(model, x: torch.Tensor, grid: LatentGrid, chunk: int = 4096,
                   labels: torch.Tensor | None = None) -> torch.Tensor:
    """The table log p(x_n, z_g) for every image x_n and every grid point z_g: shape (N, G), float64.

    For a VAE with a Bernoulli decoder the decoder runs once per grid point, not once per (image,
    point) pair: log p_theta(x|z) = sum_i [x_i a_i(z) - softplus(a_i(z))] is linear in x, so the whole
    table is one matrix product of the images with the grid's logits a(z_g). Other VAEs (another
    likelihood, a conditional or an autoregressive decoder) are decoded for every pair, which costs
    N times more. A ``log_joint`` function is called with z of shape (chunk, N, d). ``chunk`` grid
    points are decoded at a time. The table is on x's device, or on the CPU for MPS. Introduced in
    notebook 07.
    """
    from .likelihoods import Bernoulli

    x = _check_x(x)
    grid = _check_grid(grid)
    _check_model(model, x, labels)
    chunk = _positive_int(chunk, "chunk")
    n, work = x.shape[0], _work_device(x.device)
    points = grid.points.to(work)
    table = torch.empty(n, len(grid), dtype=DTYPE, device=work)
    vae = _is_vae(model)
    if vae and model.latent_dim != grid.dim:
        raise ValueError(f"the model's latent space has {model.latent_dim} dimensions but the grid {grid.dim}")
    if vae and isinstance(_likelihood(model), Bernoulli) and not getattr(model, "conditional", False) \
            and not getattr(model, "autoregressive", False):
        parameter = next(model.parameters())
        x64 = _f64(x, work)
        with torch.no_grad():
            for s in range(0, len(grid), chunk):
                z = points[s:s + chunk]
                logits = _f64(model.decode_logits(z.to(parameter.dtype).to(parameter.device)), work)
                table[:, s:s + chunk] = x64 @ logits.T - F.softplus(logits).sum(-1) + _log_prior(z)
        return table
    log_joint = vae_log_joint(model, labels) if vae else model
    if vae:
        chunk = max(1, min(chunk, _max_rows(model) // n))  # every (point, image) pair is decoded
    for s in range(0, len(grid), chunk):
        z = points[s:s + chunk]
        values = log_joint(x, z[:, None, :].expand(z.shape[0], n, grid.dim))
        if not isinstance(values, torch.Tensor) or values.shape != (z.shape[0], n):
            raise ValueError(f"log_joint(x, z) must return shape ({z.shape[0]}, {n}) for z of shape "
                             f"({z.shape[0]}, {n}, {grid.dim})")
        table[:, s:s + chunk] = _f64(values, work).T
    return table


@dataclass
class GridMarginal:
    """log p(x) by quadrature, one value per image, with what is needed to trust it.

    ``log_px``: the estimate on the grid of step h. ``log_px_coarse``: the same on the grid of
    step 2h. ``error``: their absolute difference, the error estimate obtained by halving the step.
    The rule's error shrinks at least like h**2 (a ReLU decoder makes the integrand only piecewise
    smooth; for a smooth one it shrinks faster still), so for small h the difference is about three
    times the error of ``log_px`` or more: a generous bound. ``edge_mass``: the posterior mass on
    the grid's outermost ring; it must be tiny, or the box cuts off part of p(z|x). Introduced in
    notebook 07.
    """

    log_px: torch.Tensor
    log_px_coarse: torch.Tensor
    error: torch.Tensor
    edge_mass: torch.Tensor


def log_marginal_grid(table: torch.Tensor, grid: LatentGrid) -> GridMarginal:
    """log p(x) = log integral p(x, z) dz by quadrature over ``grid``, from the table of :func:`grid_log_joint`.

    log p(x) ~ log(cell * sum_g exp(log p(x, z_g))), with log-sum-exp. The same sum over the grid of
    twice the step gives the error estimate; see :class:`GridMarginal`. Introduced in notebook 07.
    """
    grid = _check_grid(grid)
    table = _check_table(table, grid)
    log_px = torch.logsumexp(table, dim=1) + math.log(grid.cell)
    coarse_cell = (2 * grid.step) ** grid.dim
    coarse = torch.logsumexp(table[:, grid.coarse_index().to(table.device)], dim=1) + math.log(coarse_cell)
    edge = torch.logsumexp(table[:, grid.edge_mask().to(table.device)], dim=1) + math.log(grid.cell)
    return GridMarginal(log_px, coarse, (log_px - coarse).abs(), (edge - log_px).exp())


@dataclass
class Quadrature:
    """What :func:`adaptive_quadrature` found: the ``grid`` it chose, the ``table`` of log p(x, z) on
    it, the ``marginal`` (:class:`GridMarginal`), and how it got there: ``halvings`` of the step and
    ``enlargements`` of the box. Introduced in notebook 07."""

    grid: LatentGrid
    table: torch.Tensor
    marginal: GridMarginal
    halvings: int
    enlargements: int


def posterior_box(mu: torch.Tensor, logvar: torch.Tensor, sds: float = 8.0, prior_span: float = 5.0) -> tuple[float, float]:
    """A grid's half-width and starting step for posteriors N(mu, diag exp(logvar)) (N, 2): ``(span, step)``.

    The box, centred on 0, holds the prior's +-``prior_span`` and every posterior's mean +- ``sds``
    standard deviations; the step is 1.5 times the smallest posterior standard deviation (at most
    0.1), so that the narrowest q has points across it. These follow from the model in hand, not
    from one data set's typical values. Introduced in notebook 07.
    """
    sd = (0.5 * logvar.detach().double()).exp()
    span = max(prior_span, float((mu.detach().double().abs() + sds * sd).max()))
    return math.ceil(span * 4) / 4, min(0.1, 1.5 * float(sd.min()))


def adaptive_quadrature(model, x: torch.Tensor, tol: float = 0.1, edge_tol: float = 1e-6,
                        max_points: int = 2_000_000, labels: torch.Tensor | None = None) -> Quadrature:
    """log p(x) of a model with a 2-D latent space by quadrature, on a grid that adapts to the model.

    The first grid comes from the encoder's posteriors on ``x`` (:func:`posterior_box`). Then, until
    both hold for every image, the step is halved while the error estimate of
    :func:`log_marginal_grid` exceeds ``tol`` nats, and the box grows by half while more than
    ``edge_tol`` of some true posterior's mass lies on its edge. Raises ``ValueError`` when that
    would take more than ``max_points`` grid points. Introduced in notebook 07 (and used in 08 and 10).
    """
    x = _check_x(x)
    if not _is_vae(model):
        raise ValueError("adaptive_quadrature needs a VAE (its encoder places the first grid), "
                         f"got {type(model).__name__}; build a LatentGrid yourself for a log_joint function")
    _check_model(model, x, labels)
    if model.latent_dim != 2:
        raise ValueError(f"adaptive_quadrature needs a model with a 2-D latent space, not {model.latent_dim}-D; "
                         "use importance sampling (iwae_bound) instead")
    with torch.no_grad():
        mu, logvar = model.encode(x, labels)
    span, step = posterior_box(mu.cpu(), logvar.cpu())
    halvings = enlargements = 0
    while True:
        steps = 2 * math.ceil(span / step) + 1
        if steps * steps > max_points:
            raise ValueError(f"the quadrature needs a grid of {steps} x {steps} points for tolerance {tol} "
                             f"(span {span:g}, step {step:.3g}), more than max_points={max_points:,}: raise "
                             "max_points, or tol, or use fewer images")
        grid = LatentGrid(span, steps)
        table = grid_log_joint(model, x, grid, labels=labels)
        marginal = log_marginal_grid(table, grid)
        if marginal.edge_mass.max() > edge_tol:
            span, enlargements = span * 1.5, enlargements + 1
        elif marginal.error.max() > tol:
            step, halvings = grid.step / 2, halvings + 1
        else:
            return Quadrature(grid, table, marginal, halvings, enlargements)


def grid_posterior(table: torch.Tensor, grid: LatentGrid) -> torch.Tensor:
    """The true posterior p(z|x) on the grid: log densities of shape (N, G), float64.

    log p(z_g|x) = log p(x, z_g) - log p(x), with log p(x) from the same quadrature, so that
    cell * sum_g p(z_g|x) = 1 for every image. Introduced in notebook 07.
    """
    grid = _check_grid(grid)
    table = _check_table(table, grid)
    return table - (torch.logsumexp(table, dim=1, keepdim=True) + math.log(grid.cell))


def grid_moments(log_density: torch.Tensor, grid: LatentGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (N, d) and covariance (N, d, d) of the densities ``log_density`` (N, G) on ``grid``.

    With :func:`grid_posterior` these are the posterior's mean and covariance: the moment-matched
    Gaussian. Introduced in notebook 07.
    """
    grid = _check_grid(grid)
    log_density = _check_table(log_density, grid)
    weights = torch.softmax(log_density, dim=1)  # normalised masses of the points
    points = grid.points.to(log_density.device)
    mean = weights @ points
    outer = (points[:, :, None] * points[:, None, :]).reshape(len(grid), -1)  # z z^T per point, flattened
    second = (weights @ outer).reshape(-1, grid.dim, grid.dim)
    return mean, second - mean[:, :, None] * mean[:, None, :]


def _check_gaussian(mu, logvar, n: int, dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(mu, torch.Tensor) and isinstance(logvar, torch.Tensor)) or mu.shape != (n, dim) \
            or logvar.shape != mu.shape:
        raise ValueError(f"mu and logvar must both be tensors of shape ({n}, {dim})")
    if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
        raise ValueError("mu or logvar contains NaN or inf")
    # Moved before the cast: mu may come from an encoder on MPS, which has no float64.
    return mu.to(device).to(DTYPE), logvar.to(device).to(DTYPE)


def _gaussian_elbo(values: torch.Tensor, axes: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """E_q[log p(x, z)] + H(q) from log-joint ``values`` (N, W**d) on per-image axes (N, d, W)."""
    n, d, width = axes.shape
    # q is diagonal, so its weights on the grid factorise over the axes; each axis' weights are
    # normalised to sum to 1, which keeps E_q[1] = 1 exactly whatever the grid's step.
    weights = torch.softmax(-0.5 * (axes - mu[:, :, None]) ** 2 / logvar.exp()[:, :, None], dim=-1)
    out = values.reshape(n, -1, width)
    for j in reversed(range(d)):  # contract the last axis first
        out = (out @ weights[:, j, :, None]).squeeze(-1)
        if j:
            out = out.reshape(n, -1, width)
    entropy = 0.5 * (_LOG_2PI + 1 + logvar).sum(-1)
    return out.reshape(n) + entropy


def gaussian_elbo_grid(table: torch.Tensor, grid: LatentGrid, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The ELBO of q(z|x) = N(mu, diag(exp(logvar))) per image, by quadrature: shape (N,).

    ELBO(q) = E_q[log p(x, z)] + H(q). The entropy H(q) = sum_j (log(2 pi e) + logvar_j) / 2 is
    exact; the expectation is the table summed against q's weights on the grid. The weights
    factorise over the axes (q is diagonal) and are normalised per axis. Differentiable in ``mu``
    and ``logvar``; accurate while q's standard deviations are not much below the grid's step.
    Introduced in notebook 07.
    """
    grid = _check_grid(grid)
    table = _check_table(table, grid)
    mu, logvar = _check_gaussian(mu, logvar, table.shape[0], grid.dim, table.device)
    axes = grid.axes.to(table.device).expand(table.shape[0], -1, -1)
    return _gaussian_elbo(table, axes, mu, logvar)


def _window(table: torch.Tensor, grid: LatentGrid, centre: torch.Tensor, half: int):
    """Each image's (2 half + 1)**d grid points nearest to ``centre`` (N, d), kept inside the grid."""
    n, steps = table.shape[0], grid.steps
    index = ((centre - grid.axes[:, 0].to(centre)) / grid.step).round().long()
    offsets = torch.arange(-half, half + 1, device=table.device)
    per_axis = [index[:, j].clamp(half, steps - 1 - half)[:, None] + offsets for j in range(grid.dim)]
    flat = torch.zeros((n,) + (1,) * grid.dim, dtype=torch.long, device=table.device)
    for j, idx in enumerate(per_axis):
        shape = [n] + [1] * grid.dim
        shape[1 + j] = 2 * half + 1
        flat = flat * steps + idx.reshape(shape)
    values = table.gather(1, flat.reshape(n, -1))
    axes = torch.stack([grid.axes[j].to(table.device)[per_axis[j]] for j in range(grid.dim)], dim=1)
    return values, axes


@dataclass
class GaussianFit:
    """The best diagonal Gaussian per image found by :func:`fit_gaussian_grid`.

    ``mu``, ``logvar``: its parameters (N, d). ``elbo``: its ELBO on the whole grid (N,).
    ``start_elbo``: the ELBO of the starting Gaussian, the same way. ``window_mass``: how much of
    the fitted q lies inside the window of points the fit used; it should be 1 to many digits.
    Introduced in notebook 07.
    """

    mu: torch.Tensor
    logvar: torch.Tensor
    elbo: torch.Tensor
    start_elbo: torch.Tensor
    window_mass: torch.Tensor


def fit_gaussian_grid(table: torch.Tensor, grid: LatentGrid, mu: torch.Tensor, logvar: torch.Tensor,
                      steps: int = 100, lr: float = 0.2, window: int | None = 40,
                      from_mode: bool = True) -> GaussianFit:
    """The best diagonal Gaussian q*(z|x) per image: maximise :func:`gaussian_elbo_grid`, starting at (mu, logvar).

    Adam on (mu - mu0) / sigma0 and log sigma - log sigma0 (a step means the same for wide and
    narrow posteriors), with the learning rate ``lr`` decaying to 1% of itself along a cosine,
    for ``steps`` steps: a local optimum near the start. A posterior with several modes can have a
    better Gaussian elsewhere, so with ``from_mode`` every image whose posterior's highest grid point
    lies more than 3 standard deviations of the start away is also fitted from there (with the
    start's variances), and keeps the better of the two. With ``window`` (a number of grid steps)
    each image's sums run over the (2 window + 1)**d points around q's current mean only, the
    window following q every 10 steps; this makes the fit far cheaper. Images whose q* does not fit
    inside (``window_mass`` below 1 - 1e-6) or ends below its start are fitted again over the whole
    grid, which ``window=None`` uses for all images. The result's ELBOs are computed
    on the whole grid, and an image whose fit ends below its start keeps the start, so q* is never
    worse than the start. ELBO(q*) - ELBO(encoder's q) is the amortization gap,
    log p(x) - ELBO(q*) the approximation gap. Introduced in notebook 07.
    """
    grid = _check_grid(grid)
    table = _check_table(table, grid)
    mu0, logvar0 = _check_gaussian(mu, logvar, table.shape[0], grid.dim, table.device)
    mu0, logvar0 = mu0.detach(), logvar0.detach()
    steps = _positive_int(steps, "steps")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    half = (grid.steps - 1) // 2
    if window is not None:
        half = min(_positive_int(window, "window"), half)
    sigma0 = (0.5 * logvar0).exp()
    shift = torch.zeros_like(mu0, requires_grad=True)
    log_scale = torch.zeros_like(mu0, requires_grad=True)
    optimizer = torch.optim.Adam([shift, log_scale], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=0.01 * lr)
    for step in range(steps):
        m, lv = mu0 + sigma0 * shift, logvar0 + 2 * log_scale
        if step % 10 == 0:
            values, axes = _window(table, grid, m.detach(), half)
        elbo = _gaussian_elbo(values, axes, m, lv)
        optimizer.zero_grad()
        (-elbo.sum()).backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        m, lv = mu0 + sigma0 * shift, logvar0 + 2 * log_scale
        _, axes = _window(table, grid, m, half)
        start_elbo = gaussian_elbo_grid(table, grid, mu0, logvar0)
        elbo = gaussian_elbo_grid(table, grid, m, lv)
        worse = elbo < start_elbo
        m[worse], lv[worse], elbo[worse] = mu0[worse], logvar0[worse], start_elbo[worse]
        normal = torch.distributions.Normal(m, (0.5 * lv).exp())
        lo, hi = axes[:, :, 0] - grid.step / 2, axes[:, :, -1] + grid.step / 2
        window_mass = (normal.cdf(hi) - normal.cdf(lo)).prod(-1)
        window_mass[worse] = 1.0
    redo = worse | (window_mass < 1 - 1e-6)
    if half < (grid.steps - 1) // 2 and redo.any():
        # q* left its window (a broad or distant optimum) or the fit went wrong: fit those images
        # again over the whole grid.
        again = fit_gaussian_grid(table[redo], grid, mu0[redo], logvar0[redo], steps=steps, lr=lr, window=None)
        m[redo], lv[redo], elbo[redo], window_mass[redo] = again.mu, again.logvar, again.elbo, again.window_mass
    if from_mode:
        mode = grid.points.to(table.device)[table.argmax(dim=1)]
        far = ((mode - mu0) / sigma0).abs().amax(dim=1) > 3
        if far.any():
            other = fit_gaussian_grid(table[far], grid, mode[far], logvar0[far], steps=steps, lr=lr, window=window,
                                      from_mode=False)
            better = torch.zeros_like(far)
            better[far] = other.elbo > elbo[far]
            pick = better[far]
            m[better], lv[better] = other.mu[pick], other.logvar[pick]
            elbo[better], window_mass[better] = other.elbo[pick], other.window_mass[pick]
    return GaussianFit(m, lv, elbo, start_elbo, window_mass)


# --------------------------------------------------------------------------- the beta-VAE


@dataclass
class BetaResult:
    """What notebook 07 keeps of one beta-VAE: its beta, rate and distortion, samples and codes.

    ``rate``: the test set's mean KL(q(z|x) || p(z)) in nats per image. ``distortion``: its mean
    reconstruction term E_q[-log p_theta(x|z)]. ``samples``: decoded prior draws (n, 784).
    ``codes``: posterior means of test images (N, 2); ``labels``: their classes (N,).
    """

    beta: float
    rate: float
    distortion: float
    samples: torch.Tensor
    codes: torch.Tensor
    labels: torch.Tensor


def beta_result(model: nn.Module, beta: float, test, n_samples: int = 64, n_codes: int = 2000,
                generator: torch.Generator | None = None) -> BetaResult:
    """Measure a trained beta-VAE on the test split and keep what :func:`draw_beta_vae` draws.

    Rate and distortion come from :func:`vae_lib.training.evaluate` over the whole split; samples
    are ``n_samples`` prior draws (from ``generator``); codes are the posterior means of the first
    ``n_codes`` test images (only their first two coordinates are drawn). Introduced in notebook 07.
    """
    from .training import evaluate

    if not _is_vae(model):
        raise ValueError(f"model must be a VAE, got {type(model).__name__}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    n_samples, n_codes = _positive_int(n_samples, "n_samples"), _positive_int(n_codes, "n_codes")
    _check_generator(generator)
    terms = evaluate(model, test)
    with torch.no_grad():
        samples = model.sample(n_samples, generator=generator).cpu()
        codes, _ = model.encode(test.images[:n_codes])
    return BetaResult(float(beta), terms["kl"], terms["recon"], samples, codes.cpu(), test.labels[:n_codes].cpu())


def draw_beta_vae(results: Sequence[BetaResult], beta: float, class_names: Sequence[str] | None = None):
    """Draw the beta-VAE with the given ``beta`` among ``results``: rate-distortion, samples, codes.

    Left: distortion against rate for every model, the chosen one ringed, with lines of equal
    negative ELBO (distortion + rate). Middle: 36 of its prior samples. Right: its test codes
    coloured by class. Returns the figure. The slider of notebook 07 calls it with the chosen beta.
    """
    import matplotlib.pyplot as plt

    from .plots import show_images

    if not results or not all(isinstance(r, BetaResult) for r in results):
        raise ValueError("results must be a non-empty sequence of BetaResult")
    betas = [r.beta for r in results]
    matches = [r for r in results if math.isclose(r.beta, float(beta), rel_tol=1e-9)]
    if not matches:
        raise ValueError(f"no model with beta={beta!r}; the trained betas are {betas}")
    chosen = matches[0]
    ordered = sorted(results, key=lambda r: r.beta)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1.1, 1, 1]})

    ax = axes[0]
    rates = [r.rate for r in ordered]
    distortions = [r.distortion for r in ordered]
    ax.plot(rates, distortions, "o-", color="C0")
    for r in ordered:
        ax.annotate(f"β={r.beta:g}", (r.rate, r.distortion), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.plot([chosen.rate], [chosen.distortion], "o", ms=14, mfc="none", mec="C3", mew=2)
    lo, hi = min(rates), max(rates)
    pad = 0.15 * (hi - lo) + 0.5
    r_line = torch.linspace(max(lo - pad, 0.0), hi + pad, 50)
    for total in sorted({round(r.rate + r.distortion, 6) for r in ordered}):
        ax.plot(r_line, total - r_line, ":", color="0.7", lw=1)
    ax.set_xlim(r_line[0].item(), r_line[-1].item())
    span = max(distortions) - min(distortions)
    ax.set_ylim(min(distortions) - 0.15 * span - 0.5, max(distortions) + 0.15 * span + 0.5)
    ax.set_xlabel("rate: KL(q(z|x) || p(z))  [nats]")
    ax.set_ylabel("distortion: E_q[-log p(x|z)]  [nats]")
    ax.set_title("rate and distortion (dotted: equal −ELBO)")
    ax.grid(alpha=0.3)

    show_images(chosen.samples[:36], nrow=6, ax=axes[1], title=f"β = {chosen.beta:g}: prior samples")

    ax = axes[2]
    codes = chosen.codes[:, :2].numpy()
    scatter = ax.scatter(codes[:, 0], codes[:, 1], c=chosen.labels.numpy(), cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
    ax.set_xlim(-4, 4)
    ax.set_ylim(-4, 4)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(f"β = {chosen.beta:g}: posterior means of test images")
    if class_names is not None:
        handles = [plt.Line2D([], [], marker="o", ls="", color=scatter.cmap(scatter.norm(i)), label=name)
                   for i, name in enumerate(class_names)]
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(f"β = {chosen.beta:g}: rate {chosen.rate:.2f} nats, distortion {chosen.distortion:.2f} nats, "
                 f"−ELBO {chosen.rate + chosen.distortion:.2f} nats")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- bounds on 8-bit images


def eight_bit_bounds(model: nn.Module, images: torch.Tensor, k: int, generator: torch.Generator | None = None,
                     labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Upper bounds on -log P(x) of 8-bit images, in nats per image: from the ELBO and from IWAE_k.

    ``images``: grey levels k / 255, as the course loads them. A likelihood of the 256 levels (the
    discretized logistic) scores them as they are. A density on [0, 1] scores them dequantized,
    y = (k + u) / 256 with u ~ U[0, 1) drawn from ``generator``, and its -ELBO and -IWAE_k gain the
    change of scale D log 256 (:func:`vae_lib.likelihoods.eight_bit_offset`): then, for one draw of u,
    E_u of the returned numbers bounds -log P(x) from above. Both come from the same k importance
    samples per image: ``"elbo"`` from their mean, ``"iwae"`` from their log-mean-exp. The seed's
    Bernoulli on grey levels, a sub-normalised density, is scored like a density (a valid, loose bound).
    Likelihoods that are no distribution of 8-bit images (the binarized Bernoulli) get the
    ``ValueError`` of ``eight_bit_offset``. Introduced in notebook 09.
    """
    from .likelihoods import dequantize, eight_bit_offset

    if not _is_vae(model):
        raise ValueError(f"model must be a VAE with encode and decode_logits, got {type(model).__name__}")
    x = _check_x(images, "images")
    k = _positive_int(k, "k")
    offset = eight_bit_offset(_likelihood(model), x.shape[1])
    if _likelihood(model).measures in ("density", "subdensity"):
        x = dequantize(x, generator)
    log_w = importance_log_weights(model, x, k, generator=generator, labels=labels)
    return {"elbo": offset - log_w.mean(0), "iwae": offset - iwae_from_log_weights(log_w, k)[0]}
