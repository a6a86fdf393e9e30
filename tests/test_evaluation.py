"""vae_lib.evaluation: importance sampling, quadrature and the beta-VAE drawing, checked where log p(x) is known.

The ground truth is notebook 01's linear-Gaussian model (vae_lib.theory.LinearGaussian): its
evidence log p(x) and posterior p(z|x) have closed forms. Two independent copies of it make a
model with a 2-D latent space for the grid. Monte Carlo checks use a fixed generator and five
standard errors, as in test_theory.py; quadrature checks use tolerances far below what a wrong
formula (a missing cell volume, an unnormalised weight) would be off by.
"""
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vae_lib.data import Split  # noqa: E402
from vae_lib.evaluation import (  # noqa: E402
    BetaResult,
    GaussianFit,
    GridMarginal,
    LatentGrid,
    beta_result,
    draw_beta_vae,
    fit_gaussian_grid,
    gaussian_elbo_grid,
    grid_log_joint,
    grid_moments,
    grid_posterior,
    importance_log_weights,
    iwae_bound,
    iwae_from_log_weights,
    log_marginal_grid,
    log_mean_exp,
    vae_log_joint,
)
from vae_lib.losses import bernoulli_nll  # noqa: E402
from vae_lib.models import VAE  # noqa: E402
from vae_lib.theory import LinearGaussian  # noqa: E402

F64 = torch.float64
LG = LinearGaussian(w=2.0, b=0.5, s=0.8)
LG2 = LinearGaussian(w=-1.0, b=0.0, s=0.5)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def lg_log_joint(x, z):
    """Notebook 01's model in the evaluation module's convention: x (N, 1), z (S, N, 1) -> (S, N)."""
    return LG.log_joint(x[:, 0], z[..., 0])


def lg2_log_joint(x, z):
    """Two independent linear-Gaussian models: x (N, 2), z (S, N, 2) -> (S, N); log p(x) is a sum."""
    return LG.log_joint(x[:, 0], z[..., 0]) + LG2.log_joint(x[:, 1], z[..., 1])


def lg2_log_marginal(x):
    return LG.log_marginal(x[:, 0]) + LG2.log_marginal(x[:, 1])


def observations(n=6, seed=0):
    _, x = LG.sample(n, generator=gen(seed))
    return x[:, None]


def observations2(n=5, seed=0):
    _, x1 = LG.sample(n, generator=gen(seed))
    _, x2 = LG2.sample(n, generator=gen(seed + 1))
    return torch.stack([x1, x2], dim=1)


def exact_posterior_q(x):
    mean, std = LG.posterior(x[:, 0])
    return mean[:, None], (2 * std.log())[:, None]


def tiny_vae(latent_dim=2, seed=0):
    torch.manual_seed(seed)
    model = VAE(latent_dim=latent_dim, hidden_dim=16).eval()
    return model


def tiny_images(n=8, seed=0):
    return torch.rand(n, 784, generator=gen(seed))


# --------------------------------------------------------------------------- log_mean_exp


def test_log_mean_exp_is_stable_and_exact():
    values = torch.tensor([[0.0, 1.0], [2.0, -1.0], [1.0, 0.5]], dtype=F64)
    assert torch.allclose(log_mean_exp(values, dim=0), values.exp().mean(0).log())
    assert torch.allclose(log_mean_exp(values, dim=1), values.exp().mean(1).log())
    far = torch.tensor([-1000.0, -1000.0 + math.log(3.0)], dtype=F64)  # exp underflows to 0 without the trick
    assert math.isclose(log_mean_exp(far).item(), -1000.0 + math.log(2.0), rel_tol=0, abs_tol=1e-12)


@pytest.mark.parametrize("values, dim", [(torch.tensor(1.0), 0), (torch.tensor([1, 2]), 0),
                                         (torch.zeros(3), 1), (torch.zeros(0, 2), 0), ([1.0, 2.0], 0)])
def test_log_mean_exp_rejects_bad_input(values, dim):
    with pytest.raises(ValueError):
        log_mean_exp(values, dim)


# --------------------------------------------------------------------------- importance sampling


def test_importance_weights_are_constant_when_q_is_the_exact_posterior():
    # p(x, z) / p(z|x) = p(x) for every z, so every weight is log p(x) and IWAE_k = log p(x) for all k.
    x = observations()
    log_w = importance_log_weights(lg_log_joint, x, 40, q=exact_posterior_q(x), generator=gen())
    assert log_w.shape == (40, 6) and log_w.dtype == F64
    exact = LG.log_marginal(x[:, 0])
    assert torch.allclose(log_w, exact.expand(40, -1), atol=1e-10)
    for k in (1, 4, 40):
        assert torch.allclose(iwae_from_log_weights(log_w, k), exact.expand(40 // k, -1), atol=1e-10)


def test_iwae_1_is_the_elbo_and_iwae_k_climbs_towards_log_px():
    """With q = the prior (a poor proposal), E[IWAE_1] is the exact ELBO, and E[IWAE_k] rises with k to log p(x)."""
    x = observations(4)
    mu, logvar = torch.zeros(4, 1, dtype=F64), torch.zeros(4, 1, dtype=F64)
    log_w = importance_log_weights(lg_log_joint, x, 20000, q=(mu, logvar), generator=gen(1))
    elbo = LG.elbo(x[:, 0], 0.0, 1.0)
    log_px = LG.log_marginal(x[:, 0])
    means, stderrs = [], []
    for k in (1, 10, 100, 1000):
        groups = iwae_from_log_weights(log_w, k)
        means.append(groups.mean(0))
        stderrs.append(groups.std(0) / math.sqrt(groups.shape[0]))
    assert ((means[0] - elbo).abs() <= 5 * stderrs[0]).all()
    for lower, upper, se_lower, se_upper in zip(means, means[1:], stderrs, stderrs[1:]):
        assert (upper + 5 * se_upper >= lower - 5 * se_lower).all()
    assert (means[-1] <= log_px + 5 * stderrs[-1]).all()
    # The bound tightens: IWAE_1000 closes almost all of the gap that the ELBO leaves.
    assert ((log_px - means[-1]) < 0.05 * (log_px - elbo) + 5 * stderrs[-1]).all()


def test_iwae_bound_streams_the_same_draws_as_importance_log_weights():
    x = observations(5)
    q = (torch.full((5, 1), 0.3, dtype=F64), torch.full((5, 1), -0.5, dtype=F64))
    streamed = iwae_bound(lg_log_joint, x, 300, q=q, batch_size=5, generator=gen(2))
    log_w = importance_log_weights(lg_log_joint, x, 300, q=q, batch_size=5, generator=gen(2))
    stored = iwae_from_log_weights(log_w, 300)
    assert streamed.shape == (5,)
    assert torch.allclose(streamed, stored[0], atol=1e-12)


def test_iwae_bound_with_a_large_k_uses_chunks(monkeypatch):
    import vae_lib.evaluation.joint as evaluation

    monkeypatch.setattr(evaluation, "MAX_ROWS", 64)  # force many chunks of samples and of images
    x = observations(3)
    q = exact_posterior_q(x)
    value = iwae_bound(lg_log_joint, x, 500, q=q, generator=gen(3))
    assert torch.allclose(value, LG.log_marginal(x[:, 0]), atol=1e-10)


def test_vae_log_joint_is_prior_plus_minus_bce():
    model = tiny_vae()
    x = tiny_images(4)
    z = torch.randn(3, 4, 2, generator=gen(4))
    log_prior = -0.5 * (2 * math.log(2 * math.pi) + (z.double() ** 2).sum(-1))
    expected = torch.stack([-bernoulli_nll(model.decode_logits(z[s]), x).double() for s in range(3)]) + log_prior
    assert torch.allclose(vae_log_joint(model)(x, z), expected, atol=1e-3)


def test_importance_sampling_on_a_vae_uses_its_encoder_unless_q_is_given():
    model = tiny_vae()
    x = tiny_images(5)
    log_w = importance_log_weights(model, x, 7, generator=gen(5))
    assert log_w.shape == (7, 5) and torch.isfinite(log_w).all()
    with torch.no_grad():
        mu, logvar = model.encode(x)
    same = importance_log_weights(model, x, 7, q=(mu, logvar), generator=gen(5))
    assert torch.allclose(log_w, same)
    other = importance_log_weights(model, x, 7, q=(mu + 1, logvar), generator=gen(5))
    assert not torch.allclose(log_w, other)


def test_float64_work_leaves_mps_for_the_cpu_and_cpu_generators_reproduce():
    from vae_lib.evaluation.joint import _work_device

    assert _work_device("mps") == torch.device("cpu") and _work_device("cpu") == torch.device("cpu")
    # float32 parameters of q are promoted; the same CPU generator state gives the same draws.
    x = observations(3)
    q32 = (torch.zeros(3, 1), torch.zeros(3, 1))
    first = importance_log_weights(lg_log_joint, x, 20, q=q32, generator=gen(9))
    again = importance_log_weights(lg_log_joint, x, 20, q=(q32[0].double(), q32[1].double()), generator=gen(9))
    assert first.dtype == F64 and torch.equal(first, again)


def test_importance_sampling_rejects_bad_input():
    x = observations(3)
    q = exact_posterior_q(x)
    with pytest.raises(ValueError, match="q="):
        importance_log_weights(lg_log_joint, x, 5)
    with pytest.raises(ValueError, match="n_samples"):
        importance_log_weights(lg_log_joint, x, 0, q=q)
    with pytest.raises(ValueError, match="shape"):
        importance_log_weights(lg_log_joint, x[:, 0], 5, q=q)
    with pytest.raises(ValueError, match="q's mu"):
        importance_log_weights(lg_log_joint, x, 5, q=(q[0][:2], q[1][:2]))
    with pytest.raises(ValueError, match="pair"):
        importance_log_weights(lg_log_joint, x, 5, q=q[0])
    with pytest.raises(ValueError, match="generator"):
        importance_log_weights(lg_log_joint, x, 5, q=q, generator=0)
    with pytest.raises(ValueError, match="must return shape"):
        importance_log_weights(lambda x, z: z.sum(), x, 5, q=q)
    with pytest.raises(ValueError, match="VAE"):
        importance_log_weights("not a model", x, 5, q=q)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        importance_log_weights(tiny_vae(), tiny_images(2) * 255, 5)
    with pytest.raises(ValueError, match="NaN"):
        importance_log_weights(lg_log_joint, x * float("nan"), 5, q=q)
    with pytest.raises(ValueError, match="k"):
        iwae_bound(lg_log_joint, x, 0, q=q)
    with pytest.raises(ValueError, match="divide"):
        iwae_from_log_weights(torch.zeros(10, 3, dtype=F64), 3)
    with pytest.raises(ValueError, match="shape"):
        iwae_from_log_weights(torch.zeros(10, dtype=F64), 2)
    with pytest.raises(ValueError, match="VAE"):
        vae_log_joint(lg_log_joint)


# --------------------------------------------------------------------------- the grid


def test_latent_grid_points_step_and_subgrids():
    grid = LatentGrid(2.0, 9)
    assert len(grid) == 81 and grid.points.shape == (81, 2) and grid.points.dtype == F64
    assert math.isclose(grid.step, 0.5) and math.isclose(grid.cell, 0.25)
    assert torch.allclose(grid.points[1], torch.tensor([-2.0, -1.5], dtype=F64))  # last coordinate fastest
    coarse = LatentGrid(2.0, 5)
    assert torch.equal(grid.points[grid.coarse_index()], coarse.points)
    assert int(grid.edge_mask().sum()) == 81 - 49
    shifted = LatentGrid(1.0, 3, dim=2, center=[1.0, -1.0])
    assert torch.allclose(shifted.axes, torch.tensor([[0.0, 1.0, 2.0], [-2.0, -1.0, 0.0]], dtype=F64))
    assert "step=0.5" in repr(grid)
    assert LatentGrid(1.0, 5, dim=1).points.shape == (5, 1)


@pytest.mark.parametrize("kwargs", [dict(span=0.0, steps=5), dict(span=-1.0, steps=5), dict(span=float("inf"), steps=5),
                                    dict(span=1.0, steps=4), dict(span=1.0, steps=1), dict(span=1.0, steps=5.0),
                                    dict(span=1.0, steps=5, dim=0), dict(span=1.0, steps=5, dim=4),
                                    dict(span=1.0, steps=5, center=[0.0]), dict(span="1", steps=5)])
def test_latent_grid_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        LatentGrid(**kwargs)


def test_quadrature_recovers_the_exact_evidence_in_two_dimensions():
    x = observations2()
    grid = LatentGrid(6.0, 121)  # step 0.1; the posteriors' standard deviations are 0.37 and 0.45
    table = grid_log_joint(lg2_log_joint, x, grid, chunk=1000)
    assert table.shape == (5, 121**2) and table.dtype == F64
    result = log_marginal_grid(table, grid)
    assert isinstance(result, GridMarginal)
    exact = lg2_log_marginal(x)
    assert torch.allclose(result.log_px, exact, atol=1e-9)
    assert (result.error < 1e-6).all() and (result.edge_mass < 1e-12).all()
    # A box too small to hold the posterior: the edge mass and the answer both say so.
    small = LatentGrid(0.3, 61)
    cut = log_marginal_grid(grid_log_joint(lg2_log_joint, x, small), small)
    assert (cut.edge_mass > 1e-3).any() and ((exact - cut.log_px) > 1e-3).any()


def test_halving_the_step_estimates_the_error():
    """On a coarse grid the error estimate |I_h - I_2h| is at least the true error."""
    x = observations2()
    grid = LatentGrid(6.0, 25)  # step 0.5, about the posterior's width
    result = log_marginal_grid(grid_log_joint(lg2_log_joint, x, grid), grid)
    true_error = (result.log_px - lg2_log_marginal(x)).abs()
    assert (true_error <= result.error + 1e-12).all() and (result.error > 1e-6).any()


def test_vae_table_by_matrix_product_equals_the_direct_log_joint():
    model = tiny_vae()
    x = tiny_images(3)
    grid = LatentGrid(3.0, 21)
    fast = grid_log_joint(model, x, grid, chunk=100)
    slow = grid_log_joint(vae_log_joint(model), x, grid, chunk=100)
    assert torch.allclose(fast, slow, atol=1e-3, rtol=1e-7)


def test_iwae_of_a_vae_approaches_its_quadrature_evidence_from_below():
    model = tiny_vae(seed=1)
    x = tiny_images(6, seed=1)
    grid = LatentGrid(6.0, 241)
    exact = log_marginal_grid(grid_log_joint(model, x, grid), grid)
    assert (exact.edge_mass < 1e-8).all() and (exact.error < 1e-3).all()
    groups = iwae_from_log_weights(importance_log_weights(model, x, 4000, generator=gen(6)), 400)
    mean, se = groups.mean(0), groups.std(0) / math.sqrt(groups.shape[0])
    assert (mean <= exact.log_px + 5 * se + 1e-3).all()
    assert (exact.log_px - mean < 0.05).all()


def test_grid_posterior_and_moments_match_the_exact_posterior():
    x = observations2()
    grid = LatentGrid(6.0, 121)
    log_post = grid_posterior(grid_log_joint(lg2_log_joint, x, grid), grid)
    assert torch.allclose(log_post.exp().sum(1) * grid.cell, torch.ones(5, dtype=F64), atol=1e-12)
    mean, cov = grid_moments(log_post, grid)
    m1, s1 = LG.posterior(x[:, 0])
    m2, s2 = LG2.posterior(x[:, 1])
    assert torch.allclose(mean, torch.stack([m1, m2], 1), atol=1e-8)
    expected_cov = torch.diag_embed(torch.stack([s1**2, s2**2], 1))
    assert torch.allclose(cov, expected_cov, atol=1e-8)


def test_gaussian_elbo_on_the_grid_is_the_exact_elbo():
    x = observations()
    grid = LatentGrid(8.0, 801, dim=1)
    table = grid_log_joint(lg_log_joint, x, grid)
    q_mean = torch.linspace(-1, 1, 6, dtype=F64)[:, None]
    q_logvar = torch.linspace(-3, 0.5, 6, dtype=F64)[:, None]
    elbo = gaussian_elbo_grid(table, grid, q_mean, q_logvar)
    exact = LG.elbo(x[:, 0], q_mean[:, 0], (0.5 * q_logvar[:, 0]).exp())
    assert torch.allclose(elbo, exact, atol=1e-8)
    # At the exact posterior the ELBO is log p(x).
    post_mean, post_logvar = exact_posterior_q(x)
    assert torch.allclose(gaussian_elbo_grid(table, grid, post_mean, post_logvar), LG.log_marginal(x[:, 0]), atol=1e-8)


def test_fitting_a_gaussian_on_the_grid_finds_the_exact_posterior():
    """The linear-Gaussian posterior is Gaussian, so the best Gaussian closes the gap to 0."""
    x = observations2(4)
    grid = LatentGrid(6.0, 121)
    table = grid_log_joint(lg2_log_joint, x, grid)
    exact = lg2_log_marginal(x)
    start_mu = torch.zeros(4, 2, dtype=F64)
    start_logvar = torch.full((4, 2), -1.0, dtype=F64)
    for window in (None, 30):
        fit = fit_gaussian_grid(table, grid, start_mu, start_logvar, steps=150, lr=0.2, window=window)
        assert isinstance(fit, GaussianFit)
        assert (fit.elbo >= fit.start_elbo).all()
        assert (exact - fit.elbo < 1e-4).all() and (fit.elbo <= exact + 1e-8).all()
        m1, s1 = LG.posterior(x[:, 0])
        m2, s2 = LG2.posterior(x[:, 1])
        assert torch.allclose(fit.mu, torch.stack([m1, m2], 1), atol=5e-3)
        assert torch.allclose((0.5 * fit.logvar).exp(), torch.stack([s1, s2], 1), atol=5e-3)
        assert (fit.window_mass > 1 - 1e-6).all()


def two_bumps(x, z):
    """An unnormalised bimodal 'posterior': masses 0.2 at (-2, 0) and 0.8 at (2, 0), each N(., 0.2^2 I)."""
    def log_bump(centre, mass):
        squared = ((z - torch.tensor(centre, dtype=F64)) ** 2).sum(-1)
        return math.log(mass) - math.log(2 * math.pi * 0.04) - squared / 0.08
    return torch.logaddexp(log_bump([-2.0, 0.0], 0.2), log_bump([2.0, 0.0], 0.8))


def test_fit_from_the_mode_escapes_a_minor_mode():
    x = torch.zeros(1, 1, dtype=F64)
    grid = LatentGrid(4.0, 161)
    table = grid_log_joint(two_bumps, x, grid)
    assert abs(log_marginal_grid(table, grid).log_px.item()) < 1e-6  # total mass 1
    start_mu, start_logvar = torch.tensor([[-2.0, 0.0]], dtype=F64), torch.full((1, 2), math.log(0.1), dtype=F64)
    stuck = fit_gaussian_grid(table, grid, start_mu, start_logvar, from_mode=False)
    found = fit_gaussian_grid(table, grid, start_mu, start_logvar)
    # A Gaussian on one bump has ELBO = log(its mass) (the bumps are 20 standard deviations apart).
    assert abs(stuck.elbo.item() - math.log(0.2)) < 1e-3
    assert abs(found.elbo.item() - math.log(0.8)) < 1e-3
    assert torch.allclose(found.mu, torch.tensor([[2.0, 0.0]], dtype=F64), atol=1e-3)


def test_grid_moments_of_a_correlated_gaussian():
    cov = torch.tensor([[0.5, 0.3], [0.3, 0.4]], dtype=F64)
    mean = torch.tensor([0.7, -0.4], dtype=F64)
    grid = LatentGrid(5.0, 201)
    dist = torch.distributions.MultivariateNormal(mean, cov)
    log_density = dist.log_prob(grid.points)[None, :]
    got_mean, got_cov = grid_moments(log_density, grid)
    assert torch.allclose(got_mean[0], mean, atol=1e-8) and torch.allclose(got_cov[0], cov, atol=1e-8)


def test_grid_functions_reject_bad_input():
    x = observations2(2)
    grid = LatentGrid(2.0, 11)
    table = grid_log_joint(lg2_log_joint, x, grid)
    mu = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(ValueError, match="LatentGrid"):
        grid_log_joint(lg2_log_joint, x, "grid")
    with pytest.raises(ValueError, match="must return shape"):
        grid_log_joint(lambda x, z: z.sum(-1).T, x, grid)
    with pytest.raises(ValueError, match="latent space"):
        grid_log_joint(tiny_vae(latent_dim=3), tiny_images(2), grid)
    with pytest.raises(ValueError, match="table"):
        log_marginal_grid(table[:, :-1], grid)
    with pytest.raises(ValueError, match="NaN"):
        log_marginal_grid(table * float("nan"), grid)
    with pytest.raises(ValueError, match="table"):
        grid_posterior(table[0], grid)
    with pytest.raises(ValueError, match="table"):
        grid_moments(table[:, :5], grid)
    with pytest.raises(ValueError, match="shape"):
        gaussian_elbo_grid(table, grid, mu[:1], mu[:1])
    with pytest.raises(ValueError, match="NaN"):
        gaussian_elbo_grid(table, grid, mu * float("nan"), mu)
    with pytest.raises(ValueError, match="steps"):
        fit_gaussian_grid(table, grid, mu, mu, steps=0)
    with pytest.raises(ValueError, match="lr"):
        fit_gaussian_grid(table, grid, mu, mu, lr=-1.0)
    with pytest.raises(ValueError, match="window"):
        fit_gaussian_grid(table, grid, mu, mu, window=0)
    with pytest.raises(ValueError, match="chunk"):
        grid_log_joint(lg2_log_joint, x, grid, chunk=0)


# --------------------------------------------------------------------------- the beta-VAE


def tiny_split(n=40):
    images = torch.rand(n, 784, generator=gen(7))
    labels = torch.arange(n) % 10
    return Split(images, labels, tuple(f"class {i}" for i in range(10)), "mnist", False)


def test_beta_result_measures_rate_and_distortion():
    model, test = tiny_vae(), tiny_split()
    result = beta_result(model, 2.0, test, n_samples=9, n_codes=30, generator=gen(8))
    assert isinstance(result, BetaResult) and result.beta == 2.0
    assert result.samples.shape == (9, 784) and result.codes.shape == (30, 2) and result.labels.shape == (30,)
    assert result.rate >= 0 and result.distortion > 0
    with pytest.raises(ValueError, match="beta"):
        beta_result(model, -1.0, test)
    with pytest.raises(ValueError, match="VAE"):
        beta_result(lg_log_joint, 1.0, test)
    with pytest.raises(ValueError, match="n_samples"):
        beta_result(model, 1.0, test, n_samples=0)


def test_draw_beta_vae_draws_the_chosen_model_and_rejects_unknown_betas():
    test = tiny_split()
    results = [beta_result(tiny_vae(seed=i), beta, test, n_samples=36, generator=gen(i))
               for i, beta in enumerate((0.5, 1.0, 4.0))]
    fig = draw_beta_vae(results, 4.0, class_names=test.classes)
    assert len(fig.axes) == 3
    assert "β = 4" in fig.axes[1].get_title() and "β = 4" in fig.axes[2].get_title()
    assert len(fig.axes[0].lines) >= 2  # the curve and the ring around the chosen model
    plt.close(fig)
    with pytest.raises(ValueError, match="trained betas"):
        draw_beta_vae(results, 2.0)
    with pytest.raises(ValueError, match="non-empty"):
        draw_beta_vae([], 1.0)


# --- every VAE of the course, with any likelihood (notebooks 08-11) ----------------------------

def test_the_generic_grid_path_agrees_with_the_fast_bernoulli_path():
    torch.manual_seed(0)
    model = VAE(latent_dim=2, hidden_dim=16)
    x = torch.rand(5, 784)
    grid = LatentGrid(3.0, 21)
    fast = grid_log_joint(model, x, grid)
    generic = grid_log_joint(vae_log_joint(model), x, grid)    # a log_joint function: one decode per pair
    # The fast path takes the float32 logits into float64 before the softplus; the generic one computes
    # each pixel's term in float32 (relative error ~6e-8 of a term of order 1) and sums 784 of them.
    assert torch.allclose(fast, generic, rtol=0, atol=784 * 1.2e-7)
    assert not torch.allclose(fast, generic + 0.01, rtol=0, atol=784 * 1.2e-7)


def test_importance_weights_use_the_models_own_likelihood():
    torch.manual_seed(0)
    model = VAE(latent_dim=2, hidden_dim=16, likelihood="gaussian-learned")
    x = torch.rand(3, 784)
    mu, logvar = torch.zeros(3, 2), torch.zeros(3, 2)          # q = the prior, so log p(z) - log q(z) = 0
    log_w = importance_log_weights(model, x, 4, q=(mu, logvar), generator=gen(1))
    eps = torch.randn((4, 3, 2), dtype=F64, generator=gen(1))
    with torch.no_grad():
        params = model.decode_logits(eps.float().reshape(-1, 2)).reshape(4, 3, -1).double()
    mean, raw = params.chunk(2, dim=-1)
    sigma = (-7 + torch.nn.functional.softplus(raw + 7)).exp()
    expected = torch.distributions.Normal(torch.sigmoid(mean), sigma).log_prob(x.double()).sum(-1)
    assert torch.allclose(log_w, expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        importance_log_weights(model, x * 300, 4)


def test_eight_bit_bounds_add_the_change_of_scale_only_for_densities():
    from vae_lib.evaluation import eight_bit_bounds
    from vae_lib.likelihoods import LOG_256, dequantize

    torch.manual_seed(0)
    x = torch.randint(0, 256, (4, 784)).float() / 255
    for name, offset in (("discretized-logistic", 0.0), ("continuous-bernoulli", 784 * LOG_256),
                         ("bernoulli", 784 * LOG_256)):
        model = VAE(latent_dim=2, hidden_dim=16, likelihood=name)
        b = eight_bit_bounds(model, x, 20, generator=gen(3))
        g = gen(3)
        data = dequantize(x, g) if offset else x                   # the same draws, by hand
        log_w = importance_log_weights(model, data, 20, generator=g)
        assert torch.allclose(b["elbo"], offset - log_w.mean(0))
        assert torch.allclose(b["iwae"], offset - iwae_from_log_weights(log_w, 20)[0])
        assert (b["iwae"] <= b["elbo"] + 1e-9).all()
    with pytest.raises(ValueError, match="not a distribution of 8-bit images"):
        eight_bit_bounds(VAE(latent_dim=2, hidden_dim=16, likelihood="binarized-bernoulli"), x, 5)


# --------------------------------------------------------------------------- the grid that adapts to the model


def test_posterior_box_holds_every_posterior_and_steps_across_the_narrowest():
    from vae_lib.evaluation import posterior_box

    mu = torch.tensor([[0.0, 0.0], [6.0, -1.0]], dtype=F64)
    logvar = torch.log(torch.tensor([[0.04, 1.0], [0.25, 0.0025]], dtype=F64))
    span, step = posterior_box(mu, logvar)
    assert span >= 6.0 + 8 * 0.5 and span * 4 == int(span * 4), "mean + 8 sd, rounded up to a quarter"
    assert step == pytest.approx(1.5 * 0.05), "1.5 times the smallest posterior sd"
    assert posterior_box(torch.zeros(1, 2), torch.zeros(1, 2)) == (8.0, 0.1), "a wide posterior: at most 0.1"


def _blind_decoder_vae():
    """A VAE whose decoder ignores z: its true posterior is the prior and log p(x) = log p(x|z) for any z."""
    model = tiny_vae()
    with torch.no_grad():
        model.fc3.weight.zero_()
    return model


def test_adaptive_quadrature_grows_the_box_refines_the_step_and_matches_the_exact_value():
    from vae_lib.evaluation import adaptive_quadrature

    model = _blind_decoder_vae()
    x = tiny_images(3)
    with torch.no_grad():
        exact = -bernoulli_nll(model.decode_logits(torch.zeros(3, 2)), x).double()
    # the encoder's q is narrow but the true posterior is N(0, I): a strict edge test must grow the box
    model.encode = lambda x, y=None: (torch.zeros(len(x), 2), torch.full((len(x), 2), -6.0))
    result = adaptive_quadrature(model, x, tol=1e-3, edge_tol=1e-9)
    assert result.enlargements >= 1 and result.marginal.edge_mass.max() <= 1e-9
    assert torch.allclose(result.marginal.log_px, exact, atol=1e-3)
    assert result.grid.steps % 4 == 1, "every other point is a grid of odd size too (notebook 07's exercise)"
    coarse = LatentGrid(result.grid.span, (result.grid.steps + 1) // 2)
    assert torch.allclose(log_marginal_grid(grid_log_joint(model, x, coarse), coarse).log_px,
                          result.marginal.log_px_coarse, atol=1e-9)


def test_adaptive_quadrature_halves_the_step_until_the_error_is_small_and_says_when_it_cannot():
    from vae_lib.evaluation import adaptive_quadrature

    model = tiny_vae()
    x = tiny_images(2)
    loose = adaptive_quadrature(model, x, tol=10.0)
    tol = loose.marginal.error.max().item() / 4      # the first grid is not good enough for this one
    tight = adaptive_quadrature(model, x, tol=tol)
    assert loose.halvings == 0 and tight.halvings >= 1 and tight.marginal.error.max() <= tol
    assert torch.allclose(tight.marginal.log_px, loose.marginal.log_px, atol=loose.marginal.error.max().item() + 1e-6)
    with pytest.raises(ValueError, match="max_points"):
        adaptive_quadrature(model, x, tol=1e-9, max_points=1_000)
    with pytest.raises(ValueError, match="GB"):
        adaptive_quadrature(model, x, max_table_bytes=1e5)
