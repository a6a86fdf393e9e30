"""The likelihood objects of notebook 09: each formula checked against a sum, an integral or torch."""
import math

import pytest
import torch

from vae_lib.likelihoods import (
    LIKELIHOODS, LOG_256, Bernoulli, BinarizedBernoulli, ContinuousBernoulli, DiscretizedLogistic, Gaussian,
    LearnedGaussian, binarize, continuous_bernoulli_log_norm, dequantize, eight_bit_offset, get_likelihood,
    nats_to_bits_per_dim,
)

torch.set_printoptions(precision=10)
F64 = torch.float64
#: Logits from saturated to nearly 1/2: lambda = sigmoid(a) within 1e-4 of 1/2 for |a| <= 4e-4.
LOGITS = torch.tensor([-12.0, -4.0, -1.0, -0.05, -4e-4, -1e-7, 0.0, 1e-7, 2e-4, 4e-4, 1e-3, 0.5, 3.0, 12.0], dtype=F64)


def _quadrature(f, lo=0.0, hi=1.0, n=400_001):
    """The integral of f over [lo, hi] by the trapezoid rule on n points (f vectorised over a 1-D tensor)."""
    y = torch.linspace(lo, hi, n, dtype=F64)
    return torch.trapezoid(f(y), y, dim=-1)


def test_names_and_the_seeds_names():
    assert get_likelihood("bernoulli") is LIKELIHOODS["bernoulli"] and isinstance(LIKELIHOODS["bernoulli"], Bernoulli)
    assert isinstance(get_likelihood("gaussian"), Gaussian) and get_likelihood("gaussian").sigma == 1.0
    lik = LearnedGaussian()
    assert get_likelihood(lik) is lik
    assert set(LIKELIHOODS) == {"bernoulli", "binarized-bernoulli", "continuous-bernoulli", "gaussian",
                                "gaussian-learned", "discretized-logistic", "gaussian-discretized", "categorical"}
    with pytest.raises(ValueError, match="likelihood must be one of"):
        get_likelihood("poisson")
    with pytest.raises(ValueError, match="positive number"):
        Gaussian(sigma=0.0)


def test_bernoulli_sums_to_one_and_matches_the_seeds_bce():
    lik = Bernoulli()
    a = LOGITS[None]
    total = lik.log_prob(a, torch.zeros_like(a)).exp() + lik.log_prob(a, torch.ones_like(a)).exp()
    assert torch.allclose(total, torch.ones_like(total), rtol=0, atol=1e-15)
    x = torch.rand(3, 784, dtype=F64)
    logits = 3 * torch.randn(3, 784, dtype=F64)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    assert torch.allclose(lik.nll(logits, x), bce)
    # The broadcasting path (importance sampling: params (S, N, D) against x (N, D)) is the same formula.
    assert torch.allclose(lik.log_prob(logits[None].expand(2, -1, -1), x)[1].sum(-1), -bce)


def test_discretized_logistic_sums_to_one_over_the_256_levels():
    lik = DiscretizedLogistic()
    locations = torch.tensor([-9.0, -3.0, -0.5, 0.0, 0.7, 2.5, 9.0], dtype=F64)
    scales = torch.tensor([-20.0, -7.0, -4.0, -2.0, 0.0, 3.0], dtype=F64)   # raw: log s from -7 to about 3
    a, b = torch.meshgrid(locations, scales, indexing="ij")
    params = torch.cat([a.reshape(1, -1), b.reshape(1, -1)], dim=1)        # (1, 2 * 42): 42 pixels
    levels = torch.arange(256, dtype=F64) / 255
    log_p = torch.stack([lik.log_prob(params, torch.full((1, 42), v, dtype=F64)) for v in levels])
    assert torch.isfinite(log_p).all()
    assert torch.allclose(log_p.exp().sum(0), torch.ones(1, 42, dtype=F64), rtol=0, atol=1e-12)
    # The mean is the probability-weighted level, and samples average to it.
    mean = (log_p.exp() * levels[:, None, None]).sum(0)
    assert torch.allclose(lik.mean(params), mean, rtol=0, atol=1e-12)
    draws = lik.sample(params.expand(40_000, -1), generator=torch.Generator().manual_seed(0))
    assert set(torch.unique(draws * 255).round().tolist()) <= set(range(256))
    sd = (log_p.exp() * (levels[:, None, None] - mean) ** 2).sum(0).sqrt()
    assert ((draws.mean(0) - mean).abs() <= 5 * sd / math.sqrt(40_000) + 1e-12).all()


def test_continuous_bernoulli_integrates_to_one_even_next_to_one_half():
    lik = ContinuousBernoulli()
    integrals = _quadrature(lambda y: lik.log_prob(LOGITS[:, None].expand(-1, len(y)), y.expand(len(LOGITS), -1)).exp())
    assert torch.allclose(integrals, torch.ones_like(integrals), rtol=0, atol=1e-6), integrals
    # Without its normalising constant the density is the seed's Bernoulli "density": it integrates to
    # 1 / C(lambda), at most 1/2 (at lambda = 1/2), so that integral is far from 1.
    unnormalised = _quadrature(lambda y: Bernoulli().log_prob(LOGITS[:, None].expand(-1, len(y)),
                                                              y.expand(len(LOGITS), -1)).exp())
    assert (unnormalised <= 0.5 + 1e-9).all()
    assert torch.allclose(unnormalised, torch.exp(-continuous_bernoulli_log_norm(LOGITS)), atol=1e-9)


def test_continuous_bernoulli_agrees_with_torch_distributions():
    lik = ContinuousBernoulli()
    a = LOGITS[:, None]
    x = torch.rand(len(LOGITS), 50, dtype=F64, generator=torch.Generator().manual_seed(0))
    ref = torch.distributions.ContinuousBernoulli(logits=a.expand(-1, 50))
    assert torch.allclose(lik.log_prob(a.expand(-1, 50), x), ref.log_prob(x), rtol=0, atol=1e-9)
    assert torch.allclose(lik.mean(LOGITS), torch.distributions.ContinuousBernoulli(logits=LOGITS).mean,
                          rtol=0, atol=1e-9)
    # torch's CDF is the uniform one, y, wherever lambda is within 1e-3 of 1/2 (|a| < 4e-3); ours is exact
    # there too. Compare with torch outside that region and with the closed form, in float64, inside it.
    cdf = lik.cdf(a.expand(-1, 50), x)
    outside = LOGITS.abs() > 4e-3
    assert torch.allclose(cdf[outside], ref.cdf(x)[outside], rtol=0, atol=1e-9)
    inside = ~outside & (LOGITS != 0)
    closed = torch.expm1(a * x) / torch.expm1(a)
    assert torch.allclose(cdf[inside], closed[inside], rtol=0, atol=1e-12)
    assert torch.equal(cdf[LOGITS == 0], x[LOGITS == 0])


def test_continuous_bernoulli_normaliser_is_smooth_through_one_half():
    a = torch.tensor([0.0, 5e-4, 9.99e-4, 1.001e-3, 0.01], dtype=F64, requires_grad=True)
    log_c = continuous_bernoulli_log_norm(a)
    exact = torch.tensor([math.log(2.0)] + [math.log(v / math.tanh(v / 2)) for v in a.tolist()[1:]], dtype=F64)
    assert torch.allclose(log_c, exact, rtol=0, atol=1e-15)
    (grad,) = torch.autograd.grad(log_c.sum(), a)
    # d/da log C = 1/a - 1/sinh(a), which is a/6 near 0: finite, and continuous across the switch at 1e-3.
    expected = torch.tensor([0.0] + [1 / v - 1 / math.sinh(v) for v in a.tolist()[1:]], dtype=F64)
    assert torch.allclose(grad, expected, rtol=1e-6, atol=1e-12)
    f32 = continuous_bernoulli_log_norm(torch.tensor([0.0, 1e-4, 30.0]))
    assert torch.isfinite(f32).all() and abs(f32[2].item() - math.log(30.0)) < 1e-6


def test_continuous_bernoulli_samples_follow_its_cdf():
    lik = ContinuousBernoulli()
    a = torch.tensor([-6.0, -0.3, 0.0, 2.0, 15.0], dtype=F64)
    draws = lik.sample(a[None].expand(50_000, -1), generator=torch.Generator().manual_seed(1))
    assert (draws >= 0).all() and (draws <= 1).all()
    for q in (0.1, 0.5, 0.9):
        empirical = (draws <= q).double().mean(0)
        expected = lik.cdf(a, torch.full_like(a, q))
        assert ((empirical - expected).abs() <= 5 * (expected * (1 - expected) / 50_000).sqrt() + 1e-9).all()


def test_gaussians_integrate_to_one_and_match_torch():
    fixed, learned = Gaussian(sigma=0.3), LearnedGaussian()
    x = torch.rand(4, 6, dtype=F64)
    logits = torch.randn(4, 6, dtype=F64)
    ref = torch.distributions.Normal(torch.sigmoid(logits), 0.3)
    assert torch.allclose(fixed.log_prob(logits, x), ref.log_prob(x))
    raw = torch.tensor([[-30.0, -6.0, -1.0, 0.5, 2.0, -7.0]], dtype=F64).expand(4, -1)
    params = torch.cat([logits, raw], dim=1)
    sigma = learned.scale(params)
    assert torch.allclose(sigma, torch.exp(-7 + torch.nn.functional.softplus(raw + 7)))
    assert (sigma >= math.exp(-7.0)).all() and abs(sigma[0, 4].log().item() - 2.0) < 1e-3  # log sigma ~ raw above -5
    assert torch.allclose(learned.log_prob(params, x), torch.distributions.Normal(torch.sigmoid(logits), sigma).log_prob(x))
    # Each pixel's density integrates to 1 over a range wide enough to hold it.
    for j in range(6):
        mu, s = torch.sigmoid(logits[0, j]).item(), sigma[0, j].item()
        p = torch.cat([logits[:1, j:j + 1], raw[:1, j:j + 1]], dim=1)
        total = _quadrature(lambda y, p=p: learned.log_prob(p.expand(len(y), -1), y[:, None]).exp()[:, 0],
                            mu - 12 * s, mu + 12 * s)
        assert abs(total.item() - 1) < 1e-6


def test_checks_say_what_each_likelihood_needs():
    grey = torch.rand(2, 784)
    for name in ("bernoulli", "continuous-bernoulli", "gaussian-learned", "discretized-logistic"):
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            get_likelihood(name).check(grey * 255)
    get_likelihood("gaussian").check(torch.randn(2, 784))      # the seed's MSE takes any real values
    with pytest.raises(ValueError, match="binary"):
        BinarizedBernoulli().check(grey)
    BinarizedBernoulli().check(torch.bernoulli(grey))
    with pytest.raises(ValueError, match="8-bit levels"):
        DiscretizedLogistic().check(dequantize(torch.round(grey * 255) / 255))
    DiscretizedLogistic().check(torch.round(grey * 255) / 255)
    with pytest.raises(ValueError, match="number"):
        LearnedGaussian().nll(torch.zeros(2, 784), grey)      # one number per pixel where it needs two
    with pytest.raises(ValueError, match="NaN or inf"):
        Bernoulli().nll(torch.full((2, 784), float("nan")), grey)


def test_binarize_and_dequantize():
    levels = torch.randint(0, 256, (500, 784)).float() / 255
    g = torch.Generator().manual_seed(0)
    b = binarize(levels, g)
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(b, binarize(levels, torch.Generator().manual_seed(0)))
    assert abs(b.mean().item() - levels.mean().item()) < 4 * 0.5 / math.sqrt(b.numel())
    y = dequantize(levels, g)
    k = torch.round(levels * 255)
    assert ((y >= k / 256) & (y < (k + 1) / 256)).all(), "each value stays inside its own bin of width 1/256"
    assert abs((y * 256 - k).mean().item() - 0.5) < 4 * math.sqrt(1 / 12) / math.sqrt(y.numel())
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        dequantize(levels * 255)


def test_eight_bit_offset_and_bits_per_dim():
    assert eight_bit_offset("discretized-logistic") == 0.0
    assert eight_bit_offset("continuous-bernoulli") == pytest.approx(784 * LOG_256)
    assert eight_bit_offset("gaussian-learned", pixels=4) == pytest.approx(4 * math.log(256))
    assert eight_bit_offset("bernoulli") == pytest.approx(784 * LOG_256)      # a sub-normalised density
    with pytest.raises(ValueError, match="not a distribution of 8-bit images"):
        eight_bit_offset("binarized-bernoulli")
    assert nats_to_bits_per_dim(784 * math.log(2) * 8) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="positive integer"):
        nats_to_bits_per_dim(1.0, pixels=0)


def test_the_seeds_bernoulli_dequantized_bounds_the_normalised_model_loosely():
    """exp(-BCE) on [0, 1] integrates to 1 / C(lambda) <= 1/2 per pixel: dequantized, its -ELBO + D log 256
    bounds -log P~(k) of the sub-normalised discrete model, and hence -log P(k) of P = P~ / sum P~, the
    normalised one; loosely, by at least log 2 per pixel. A 4-pixel model with a 1-D latent, summed exactly."""
    bern, cb = get_likelihood("bernoulli"), get_likelihood("continuous-bernoulli")
    g = torch.Generator().manual_seed(4)
    w, c = torch.randn(4, dtype=F64, generator=g) * 2, torch.randn(4, dtype=F64, generator=g)
    z = torch.linspace(-8, 8, 2001, dtype=F64)
    log_pz, dz = -0.5 * (z ** 2 + math.log(2 * math.pi)), z[1] - z[0]
    logits = z[:, None] * w + c                                          # (Z, 4)
    log_c = continuous_bernoulli_log_norm(logits)                       # the bins' masses sum to 1 / C per pixel
    log_total = torch.logsumexp(log_pz - log_c.sum(-1), 0) + dz.log()   # log sum over all 8-bit images of P~
    assert log_total <= 4 * -math.log(2) + 1e-9
    for levels in torch.tensor([[0, 37, 128, 255], [3, 200, 91, 17]], dtype=F64):
        lo, hi = levels / 256, (levels + 1) / 256
        mass = (cb.cdf(logits, hi.expand(len(z), -1)) - cb.cdf(logits, lo.expand(len(z), -1))).clamp_min(1e-300)
        exact_sub = -(torch.logsumexp(log_pz + (mass.log() - log_c).sum(-1), 0) + dz.log())   # -log P~(k)
        exact = exact_sub + log_total                                                      # -log P(k)
        u = torch.rand(2_000, 4, dtype=F64, generator=g)
        log_py = torch.logsumexp(log_pz[:, None] + bern.log_prob(logits[:, None, :], ((levels + u) / 256)[None]).sum(-1),
                                 0) + dz.log()
        bound = -log_py.mean() + eight_bit_offset(bern, pixels=4)
        se = log_py.std() / math.sqrt(len(u))
        assert bound >= exact_sub - 4 * se and bound - exact_sub < 4 * se + 0.05
        assert bound - exact > 4 * math.log(2) - 4 * se, "the normalised model is better by at least log 2 per pixel"


@pytest.mark.parametrize("name", ["continuous-bernoulli", "gaussian-learned"])
def test_dequantized_bound_lies_above_the_exact_discrete_likelihood(name):
    """A 4-pixel model with a 1-D latent, small enough to compute P(x) of 8-bit pixels exactly.

    p(y) = integral of N(z; 0, 1) prod_i p(y_i | z) dz, with decoder parameters linear in z. The
    discrete model gives level k the mass of p on its bin [k/256, (k+1)/256), exactly through the
    CDF. Uniform dequantization bounds it: -log P(k) <= E_u[-log p((k + u)/256)] + 4 log 256.
    """
    lik = get_likelihood(name)
    g = torch.Generator().manual_seed(3)
    per_pixel = lik.params_per_pixel
    w, c = torch.randn(per_pixel * 4, dtype=F64, generator=g) * 2, torch.randn(per_pixel * 4, dtype=F64, generator=g)
    z = torch.linspace(-8, 8, 2001, dtype=F64)
    log_pz = -0.5 * (z ** 2 + math.log(2 * math.pi))
    dz = z[1] - z[0]
    params = z[:, None] * w + c                                        # (Z, P * 4)
    k = torch.tensor([[0, 37, 128, 255], [3, 200, 91, 17]], dtype=F64)  # two images of 4 pixels
    for levels in k:
        lo, hi = levels / 256, (levels + 1) / 256
        mass = (lik.cdf(params, hi.expand(len(z), -1)) - lik.cdf(params, lo.expand(len(z), -1))).clamp_min(1e-300)
        exact = -(torch.logsumexp(log_pz + mass.log().sum(-1), 0) + dz.log())
        u = torch.rand(2_000, 4, dtype=F64, generator=g)
        y = (levels + u) / 256
        log_py = torch.logsumexp(log_pz[:, None] + lik.log_prob(params[:, None, :], y[None]).sum(-1), 0) + dz.log()
        bound = -log_py.mean() + eight_bit_offset(lik, pixels=4)
        se = log_py.std() / math.sqrt(len(u))
        assert bound >= exact - 4 * se, f"{name}: bound {bound:.4f} below the exact {exact:.4f}"
        # And tight: averaging inside bins 1/256 wide costs little (a wrong offset would show here).
        assert bound - exact < 4 * se + 0.05, f"{name}: bound {bound:.4f} far above the exact {exact:.4f}"
        # The change of scale matters: without the 4 log 256 nats the "bound" is far below the exact value.
        assert -log_py.mean() < exact - 10


def test_the_discretized_gaussian_is_a_distribution_of_the_levels_and_beats_dequantization():
    """Its 256 masses sum to 1 (far in the tails too), its mean matches them, and for a fixed Gaussian its
    -log P(k) lies below the dequantized E_u[-log p(y)] + log 256 of the same Gaussian (Jensen), most where
    sigma is narrower than a bin."""
    dg, lg = get_likelihood("gaussian-discretized"), get_likelihood("gaussian-learned")
    assert dg.measures == "levels" and eight_bit_offset(dg) == 0.0 and dg.params_per_pixel == 2
    mu_raw = torch.tensor([-30.0, -3.0, 0.0, 2.0, 8.0, 0.3], dtype=F64)
    raw_scale = torch.tensor([-8.0, -8.0, -3.0, -1.0, 0.5, -9.0], dtype=F64)
    params = torch.cat([mu_raw, raw_scale])[None]
    levels = torch.arange(256, dtype=F64) / 255
    mass = torch.stack([dg.log_prob(params, torch.full((1, 6), v, dtype=F64)) for v in levels]).exp()[:, 0]
    assert (mass >= 0).all() and torch.isfinite(mass).all()
    assert (mass.sum(0) - 1).abs().max() < 1e-12
    assert torch.allclose(dg.mean(params)[0], (mass * levels[:, None]).sum(0), atol=1e-12)
    # dequantized bound of the same Gaussian, level by level, by the midpoint rule over the bin
    u = (torch.arange(400, dtype=F64) + 0.5) / 400
    for k in (0, 3, 77, 128, 255):
        x = torch.full((1, 6), k / 255, dtype=F64)
        y = ((k + u) / 256)[:, None].expand(-1, 6)
        deq = -lg.log_prob(params.expand(400, -1), y).mean(0) + math.log(256)
        assert (-dg.log_prob(params, x)[0] <= deq + 1e-9).all()
    with pytest.raises(ValueError, match="8-bit levels"):
        dg.check(torch.full((1, 6), 0.5 / 256, dtype=F64))


def test_the_categorical_likelihood_is_a_softmax_over_the_levels_and_level_masses_sum_as_they_should():
    cat = get_likelihood("categorical")
    g = torch.Generator().manual_seed(0)
    params = torch.randn(3, 256 * 5, dtype=F64, generator=g)
    x = torch.randint(0, 256, (3, 5), generator=g).double() / 255
    reference = torch.distributions.Categorical(logits=params.view(3, 256, 5).transpose(1, 2))
    assert torch.allclose(cat.log_prob(params, x), reference.log_prob((x * 255).round().long()), atol=1e-12)
    assert torch.allclose(cat.mean(params), (reference.probs * torch.arange(256, dtype=F64) / 255).sum(-1))
    draws = cat.sample(params[:1].expand(4000, -1), torch.Generator().manual_seed(1))
    assert abs(draws.mean(0) - cat.mean(params)[0].float()).max() < 0.02       # 4,000 draws of the first image's pixels
    assert eight_bit_offset(cat) == 0.0 and cat.params_per_pixel == 256
    # level_masses: 1 for every distribution of the levels and for the continuous Bernoulli, 1 / C for the seed's
    # Bernoulli, below 1 for a Gaussian with mass outside [0, 1], two levels for the binarized Bernoulli
    from vae_lib.likelihoods import level_masses

    logit = torch.tensor([0.7], dtype=F64)
    for name in ("categorical", "discretized-logistic", "gaussian-discretized", "continuous-bernoulli"):
        p = torch.randn(get_likelihood(name).params_per_pixel, dtype=F64, generator=g)
        assert abs(level_masses(name, p).sum() - 1) < 1e-9, name
    assert abs(level_masses("bernoulli", logit).sum() - torch.exp(-continuous_bernoulli_log_norm(logit))) < 1e-9
    assert level_masses("gaussian", logit).sum() < 0.5
    two = level_masses("binarized-bernoulli", logit)
    assert (two > 0).sum() == 2 and abs(two.sum() - 1) < 1e-12 and two[255] == torch.sigmoid(logit)
    with pytest.raises(ValueError, match="params must end"):
        level_masses("discretized-logistic", logit)
