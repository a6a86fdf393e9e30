"""vae_lib.theory: exact linear-Gaussian quantities, Monte Carlo estimators, and their bad inputs.

Monte Carlo checks use a fixed generator and a tolerance of five standard errors: a correct
estimator fails one of them with probability below 1e-6 for a fresh seed, and a wrong formula
(a dropped factor 1/2, a missing score) is off by dozens of standard errors.
"""
import dataclasses
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch.distributions import Independent, Normal, kl_divergence  # noqa: E402

from vae_lib.losses import gaussian_kl  # noqa: E402
from vae_lib.theory import (  # noqa: E402
    LinearGaussian,
    MCEstimate,
    draw_elbo_gap,
    gaussian_kl_mc,
    log_normal,
    mc_estimate,
    normal_kl,
    reparam_grad_samples,
    score_grad_samples,
    show_source,
)

F64 = torch.float64
MODEL = LinearGaussian(w=2.0, b=0.5, s=0.8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def within(est: MCEstimate, exact, k=5.0, atol=1e-12):
    return bool((est.mean - torch.as_tensor(exact, dtype=F64)).abs().le(k * est.stderr + atol).all())


# --------------------------------------------------------------------------- helpers


def test_log_normal_matches_torch_distributions():
    x = torch.linspace(-3, 3, 11, dtype=F64)
    expected = Normal(torch.tensor(0.5, dtype=F64), torch.tensor(1.7, dtype=F64)).log_prob(x)
    assert torch.allclose(log_normal(x, 0.5, 1.7), expected, atol=1e-14)
    assert log_normal(0.0, 0.0, 1.0).dtype == F64


@pytest.mark.parametrize("args", [(0.0, 0.0, 0.0), (0.0, 0.0, -1.0), (float("nan"), 0.0, 1.0), ("a", 0.0, 1.0),
                                  (True, 0.0, 1.0)])
def test_log_normal_rejects_bad_input(args):
    with pytest.raises(ValueError):
        log_normal(*args)


def test_normal_kl_matches_torch_and_is_gaussian_kl_against_the_prior():
    qm, qs = torch.tensor([0.3, -1.0, 2.0], dtype=F64), torch.tensor([0.5, 1.0, 2.5], dtype=F64)
    pm, ps = torch.tensor([1.0, 0.0, -0.5], dtype=F64), torch.tensor([2.0, 0.7, 1.0], dtype=F64)
    expected = kl_divergence(Normal(qm, qs), Normal(pm, ps))
    assert torch.allclose(normal_kl(qm, qs, pm, ps), expected, atol=1e-13)
    against_prior = normal_kl(qm, qs, 0.0, 1.0)
    assert torch.allclose(against_prior, gaussian_kl(qm[:, None], 2 * qs.log()[:, None]), atol=1e-13)
    assert normal_kl(1.2, 0.4, 1.2, 0.4).item() == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError):
        normal_kl(0.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        normal_kl(0.0, -1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="broadcast"):
        normal_kl(torch.zeros(2), 1.0, torch.zeros(3), 1.0)


def test_mc_estimate_mean_and_standard_error():
    samples = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]], dtype=F64)
    est = mc_estimate(samples)
    assert isinstance(est, MCEstimate) and est.n == 3
    assert torch.allclose(est.mean, torch.tensor([3.0, 6.0], dtype=F64))
    assert torch.allclose(est.stderr, torch.tensor([2.0, 4.0], dtype=F64) / math.sqrt(3))
    assert mc_estimate(samples, dim=1).n == 2


@pytest.mark.parametrize("bad", [torch.tensor([1.0]), torch.tensor(1.0), torch.tensor([1, 2]), [1.0, 2.0],
                                 torch.tensor([1.0, float("inf")])])
def test_mc_estimate_rejects_bad_samples(bad):
    with pytest.raises(ValueError):
        mc_estimate(bad)


def test_mc_estimate_rejects_a_bad_dim():
    with pytest.raises(ValueError):
        mc_estimate(torch.zeros(4, 2), dim=2)


def test_show_source_renders_library_code():
    md = show_source(LinearGaussian.posterior)
    assert md.data.startswith("```python\ndef posterior(self, x)")
    assert "w * (x - self.b)" in md.data
    with pytest.raises(ValueError):
        show_source(3)


# --------------------------------------------------------------------------- LinearGaussian


def test_log_marginal_matches_quadrature_of_the_joint():
    z = torch.linspace(-12, 12, 40001, dtype=F64)
    for x in (-1.0, 0.5, 2.0, 4.0):
        numeric = torch.trapezoid(MODEL.log_joint(x, z).exp(), z).log()
        assert numeric.item() == pytest.approx(MODEL.log_marginal(x).item(), abs=1e-9)


def test_posterior_is_bayes_rule_for_every_z():
    x = torch.tensor([-1.0, 0.5, 2.0], dtype=F64)
    mean, std = MODEL.posterior(x)
    assert mean.shape == std.shape == x.shape
    z = torch.linspace(-4, 4, 33, dtype=F64)[:, None]
    bayes = MODEL.log_joint(x, z) - MODEL.log_marginal(x)
    assert torch.allclose(log_normal(z, mean, std), bayes, atol=1e-12)


def test_exact_elbo_gap_is_kl_to_the_posterior_and_closes_at_it():
    x = 2.0
    means = torch.linspace(-2, 3, 21, dtype=F64)[:, None]
    stds = torch.logspace(-1.5, 0.5, 17, dtype=F64)[None, :]
    post_mean, post_std = MODEL.posterior(x)
    gap = MODEL.log_marginal(x) - MODEL.elbo(x, means, stds)
    assert gap.shape == (21, 17)
    assert torch.allclose(gap, normal_kl(means, stds, post_mean, post_std), atol=1e-12)
    assert (gap >= 0).all()
    assert MODEL.elbo(x, post_mean, post_std).item() == pytest.approx(MODEL.log_marginal(x).item(), abs=1e-13)


@pytest.mark.parametrize("kl", ["mc", "analytic"])
def test_elbo_mc_is_unbiased(kl):
    x = torch.tensor([2.0, -0.5], dtype=F64)
    q_mean, q_std = torch.tensor([0.0, 0.3], dtype=F64), torch.tensor([1.0, 0.2], dtype=F64)
    est = MODEL.elbo_mc(x, q_mean, q_std, 20000, kl=kl, generator=gen(1))
    assert est.mean.shape == (2,) and est.n == 20000
    assert within(est, MODEL.elbo(x, q_mean, q_std))


def test_elbo_mc_is_reproducible_and_exact_at_the_posterior():
    a = MODEL.elbo_mc(1.0, 0.2, 0.5, 100, generator=gen(3))
    b = MODEL.elbo_mc(1.0, 0.2, 0.5, 100, generator=gen(3))
    assert torch.equal(a.mean, b.mean)
    # At q = p(z|x), log p(x, z) - log q(z) = log p(x) for every z: a zero-variance estimator.
    post_mean, post_std = MODEL.posterior(1.0)
    est = MODEL.elbo_mc(1.0, post_mean, post_std, 100, generator=gen(3))
    assert est.stderr.item() < 1e-12
    assert est.mean.item() == pytest.approx(MODEL.log_marginal(1.0).item(), abs=1e-12)


def test_sample_has_the_marginal_moments():
    z, x = MODEL.sample(200000, generator=gen(4))
    assert z.shape == x.shape == (200000,) and x.dtype == F64
    var = MODEL.w**2 + MODEL.s**2
    assert abs(x.mean().item() - MODEL.b) < 5 * math.sqrt(var / 200000)
    assert abs(x.var().item() - var) < 5 * var * math.sqrt(2 / 200000)


@pytest.mark.parametrize("kwargs", [dict(w=1.0, b=0.0, s=0.0), dict(w=1.0, b=0.0, s=-1.0),
                                    dict(w=float("nan")), dict(w="2"), dict(b=None), dict(s=True)])
def test_linear_gaussian_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        LinearGaussian(**kwargs)


def test_linear_gaussian_accepts_ints_and_stores_floats():
    m = LinearGaussian(2, 0, 1)
    assert isinstance(m.w, float) and isinstance(m.s, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.w = 3.0  # frozen: the exact model cannot be changed under an estimator's feet


def test_linear_gaussian_methods_reject_bad_input():
    with pytest.raises(ValueError):
        MODEL.log_marginal(float("nan"))
    with pytest.raises(ValueError):
        MODEL.posterior("x")
    with pytest.raises(ValueError):
        MODEL.elbo(1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        MODEL.elbo(torch.zeros(3), torch.zeros(2), 1.0)  # shapes that do not broadcast
    with pytest.raises(ValueError):
        MODEL.elbo_mc(1.0, 0.0, 1.0, 1)
    with pytest.raises(ValueError):
        MODEL.elbo_mc(1.0, 0.0, 1.0, 10, kl="exact")
    with pytest.raises(ValueError):
        MODEL.elbo_mc(1.0, 0.0, 1.0, 10, generator=0)
    with pytest.raises(ValueError):
        MODEL.sample(0)
    with pytest.raises(ValueError):
        MODEL.log_joint(1.0, torch.tensor(float("inf")))
    with pytest.raises(ValueError, match="broadcast"):
        MODEL.log_joint(torch.zeros(3), torch.zeros(2))


# --------------------------------------------------------------------------- the drawing function


def test_draw_elbo_gap_draws_three_panels_and_reports_the_gap():
    fig = draw_elbo_gap(MODEL, 2.0, 0.0, 0.0)
    assert len(fig.axes) == 3
    gap = (MODEL.log_marginal(2.0) - MODEL.elbo(2.0, 0.0, 1.0)).item()
    assert f"gap = KL = {gap:.3f}" in fig._suptitle.get_text()
    # The red segment spans exactly the gap.
    segment = [line for line in fig.axes[1].lines if line.get_label().startswith("gap")][0]
    low, high = segment.get_ydata()
    assert high - low == pytest.approx(gap, abs=1e-9)
    plt.close(fig)


def test_draw_elbo_gap_shows_no_gap_at_the_posterior():
    post_mean, post_std = (t.item() for t in MODEL.posterior(1.0))
    fig = draw_elbo_gap(MODEL, 1.0, post_mean, math.log(post_std))
    assert "gap = KL = 0.000" in fig._suptitle.get_text()
    # The title clamps the gap at 0, so it cannot show an ELBO above log p(x). The red segment is
    # drawn from the unclamped values (ELBO, log p(x)): check its signed length, and the exact values.
    unclamped = (MODEL.log_marginal(1.0) - MODEL.elbo(1.0, post_mean, post_std)).item()
    assert unclamped == pytest.approx(0.0, abs=1e-12)
    for ax in fig.axes[1:]:
        segment = [line for line in ax.lines if line.get_label().startswith("gap")][0]
        low, high = segment.get_ydata()
        assert high - low == pytest.approx(0.0, abs=1e-12)
    plt.close(fig)


def test_draw_elbo_gap_segment_is_the_signed_gap_and_never_negative():
    # Away from the posterior, the segment's signed length is log p(x) - ELBO >= 0; an ELBO above
    # log p(x) would make it negative, which the clamped title would hide.
    for q_mean, q_log_std in ((0.0, 0.0), (1.5, -2.0), (-1.0, 0.8)):
        fig = draw_elbo_gap(MODEL, 1.0, q_mean, q_log_std)
        segment = [line for line in fig.axes[1].lines if line.get_label().startswith("gap")][0]
        low, high = segment.get_ydata()
        exact = (MODEL.log_marginal(1.0) - MODEL.elbo(1.0, q_mean, math.exp(q_log_std))).item()
        assert high - low == pytest.approx(exact, abs=1e-12) and high - low > 0
        plt.close(fig)


@pytest.mark.parametrize("args", [("model", 1.0, 0.0, 0.0), (MODEL, None, 0.0, 0.0), (MODEL, 1.0, "0", 0.0),
                                  (MODEL, 1.0, 0.0, float("inf"))])
def test_draw_elbo_gap_rejects_bad_input(args):
    with pytest.raises(ValueError):
        draw_elbo_gap(*args)
    with pytest.raises(ValueError):
        draw_elbo_gap(MODEL, 1.0, 0.0, 0.0, mean_range=(1.0, -1.0))
    plt.close("all")


# --------------------------------------------------------------------------- gradient estimators


def quadratic(c):
    return lambda z: ((z - c) ** 2).sum(-1) if z.ndim > 1 else (z - c) ** 2


@pytest.mark.parametrize("estimator", [reparam_grad_samples, score_grad_samples])
def test_gradient_estimators_are_unbiased(estimator):
    mu, sigma, c = torch.tensor([1.0, -0.5], dtype=F64), torch.tensor([0.5, 1.5], dtype=F64), 3.0
    grads = estimator(quadratic(c), mu, sigma, 200000, generator=gen(5))
    assert grads.shape == (200000, 2)
    assert within(mc_estimate(grads), 2 * (mu - c))  # grad_mu E[(z - c)^2] = grad_mu ((mu - c)^2 + sigma^2)


def test_reparam_samples_are_the_hand_derived_pathwise_gradients():
    mu, sigma, c, n = 0.7, 0.4, -1.0, 50
    grads = reparam_grad_samples(quadratic(c), mu, sigma, n, generator=gen(6))
    eps = torch.randn((n,), dtype=F64, generator=gen(6))  # the estimator's draws, documented
    assert torch.allclose(grads, 2 * (mu + sigma * eps - c), atol=1e-13)


def test_score_samples_are_f_times_the_score():
    mu, sigma, c, n = 0.7, 0.4, -1.0, 50
    grads = score_grad_samples(quadratic(c), mu, sigma, n, generator=gen(6))
    z = mu + sigma * torch.randn((n,), dtype=F64, generator=gen(6))
    assert torch.allclose(grads, (z - c) ** 2 * (z - mu) / sigma**2, atol=1e-12)


def test_score_baseline_keeps_the_mean_and_lowers_the_variance():
    mu, sigma, c = 1.0, 0.5, 3.0
    plain = score_grad_samples(quadratic(c), mu, sigma, 100000, generator=gen(7))
    based = score_grad_samples(quadratic(c), mu, sigma, 100000, generator=gen(7), baseline=(mu - c) ** 2 + sigma**2)
    assert within(mc_estimate(based), 2 * (mu - c))
    assert based.var() < 0.5 * plain.var()


def test_score_function_handles_a_non_differentiable_f_but_pathwise_refuses_it():
    def step(z):
        return (z > 0).to(F64)

    mu, sigma = 0.3, 1.0
    exact = math.exp(-0.5 * mu**2) / math.sqrt(2 * math.pi)  # d/dmu P(z > 0) = N(0; mu, 1)
    assert within(mc_estimate(score_grad_samples(step, mu, sigma, 100000, generator=gen(8))), exact)
    with pytest.raises(ValueError, match="differentiable"):
        reparam_grad_samples(step, mu, sigma, 10)


@pytest.mark.parametrize("estimator", [reparam_grad_samples, score_grad_samples])
def test_gradient_estimators_reject_bad_input(estimator):
    f = quadratic(0.0)
    with pytest.raises(ValueError):
        estimator("f", 0.0, 1.0, 10)
    with pytest.raises(ValueError):
        estimator(f, 0.0, 0.0, 10)
    with pytest.raises(ValueError):
        estimator(f, 0.0, 1.0, 0)
    with pytest.raises(ValueError):
        estimator(f, 0.0, 1.0, 10, generator="seed")
    with pytest.raises(ValueError, match="one value per sample"):
        estimator(lambda z: z.sum(), 0.0, 1.0, 10)
    with pytest.raises(ValueError):
        estimator(lambda z: z / 0.0, 0.0, 1.0, 10)


# --------------------------------------------------------------------------- the KL by Monte Carlo


@pytest.mark.parametrize("mu, sigma", [(0.0, 1.0), (1.0, 1.0), (0.0, 0.5), (-1.5, 2.0), (2.0, 0.3)])
def test_gaussian_kl_mc_agrees_with_the_closed_form(mu, sigma):
    mu_t = torch.tensor([mu], dtype=F64)
    logvar = torch.tensor([2 * math.log(sigma)], dtype=F64)
    est = gaussian_kl_mc(mu_t, logvar, 50000, generator=gen(9))
    assert est.mean.shape == ()
    assert within(est, gaussian_kl(mu_t, logvar))


def test_gaussian_kl_mc_sums_over_the_last_dimension():
    mu = torch.tensor([[0.5, -1.0, 0.0], [0.0, 0.0, 2.0]], dtype=F64)
    logvar = torch.tensor([[0.0, -1.0, 0.5], [0.2, -0.3, 0.0]], dtype=F64)
    est = gaussian_kl_mc(mu, logvar, 50000, generator=gen(10))
    assert est.mean.shape == (2,)
    assert within(est, gaussian_kl(mu, logvar))
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    assert torch.allclose(gaussian_kl(mu, logvar), kl_divergence(q, p), atol=1e-13)


@pytest.mark.parametrize("args", [(torch.zeros(2), torch.zeros(3), 10), (torch.tensor(0.0), torch.tensor(0.0), 10),
                                  (torch.zeros(2), torch.zeros(2), 1), (torch.zeros(2), torch.full((2,), math.inf), 10)])
def test_gaussian_kl_mc_rejects_bad_input(args):
    with pytest.raises(ValueError):
        gaussian_kl_mc(*args)
