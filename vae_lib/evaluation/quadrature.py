"""Quadrature over a 2-D latent space, for notebooks 07 and 08: log p(x) to a known error, and the true
posterior on a grid.

:class:`LatentGrid`, :func:`grid_log_joint` (the table of log p(x, z) over the grid),
:func:`log_marginal_grid` (log p(x) with an error estimate), :func:`posterior_box` and
:func:`adaptive_quadrature` (a grid placed and refined from the model in hand),
:func:`grid_posterior` and :func:`grid_moments` (the true posterior p(z|x) on the grid), and
:func:`gaussian_elbo_grid` / :func:`fit_gaussian_grid` (the ELBO of a Gaussian q, and the best
diagonal Gaussian per image).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..likelihoods import Bernoulli
from .joint import (_check_model, _check_x, DTYPE, _f64, _is_vae, _likelihood, _LOG_2PI, log_prior, _max_rows,
                    _positive_int, vae_log_joint, _work_device)


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
                table[:, s:s + chunk] = x64 @ logits.T - F.softplus(logits).sum(-1) + log_prior(model, z)
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
                        max_points: int = 2_000_000, labels: torch.Tensor | None = None,
                        max_table_bytes: float = 2e9) -> Quadrature:
    """log p(x) of a model with a 2-D latent space by quadrature, on a grid that adapts to the model.

    The first grid comes from the encoder's posteriors on ``x`` (:func:`posterior_box`). Then, until
    both hold for every image, the step is halved while the error estimate of
    :func:`log_marginal_grid` exceeds ``tol`` nats, and the box grows by half while more than
    ``edge_tol`` of some true posterior's mass lies on its edge. Raises ``ValueError`` when that
    would take more than ``max_points`` grid points, or a float64 table of log p(x, z) (images x points) larger
    than ``max_table_bytes``. Introduced in notebook 07 (and used in 08 and 10).
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
        steps = 4 * math.ceil(span / (2 * step)) + 1   # 4m + 1: every other point is a grid of odd size too
        if steps * steps * len(x) * 8 > max_table_bytes:
            raise ValueError(f"the quadrature's table for {len(x)} images on a grid of {steps} x {steps} points would "
                             f"take {steps * steps * len(x) * 8 / 1e9:.1f} GB, more than max_table_bytes="
                             f"{max_table_bytes / 1e9:g} GB: use fewer images at a time, or a larger tol")
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
