"""Priors as objects (notebook 12): densities against torch.distributions, samplers against their
mixture, the Monte Carlo KL against the closed form, and every consumer asking the model's prior."""
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vae_lib.checkpoints import TrainConfig, load_checkpoint, train_or_load
from vae_lib.data import Split
from vae_lib.diagnostics import elbo_surgery, kl_per_dimension
from vae_lib.evaluation import importance_log_weights, vae_log_joint
from vae_lib.models import VAE, ConditionalVAE
from vae_lib.priors import (FittedMixture, MixtureOfGaussians, StandardNormal, VampPrior, fit_mixture, get_prior,
                            with_prior)
from vae_lib.registry import build_model
from vae_lib.training import fit, model_terms

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def torch_mixture(means, logvars, log_weights):
    return MixtureSameFamily(Categorical(logits=log_weights),
                             Independent(Normal(means, torch.exp(0.5 * logvars)), 1))


def mog(k=5, d=3, seed=0):
    prior = MixtureOfGaussians(d, k, generator=gen(seed))
    with torch.no_grad():   # unequal weights and variances, so that a formula that ignores them fails
        prior.logits.copy_(torch.randn(k, generator=gen(seed + 1)))
        prior.logvars.copy_(0.5 * torch.randn(k, d, generator=gen(seed + 2)))
    return prior


def tiny_vamp_vae(k=7, latent_dim=2, seed=0):
    torch.manual_seed(seed)
    return VAE(latent_dim=latent_dim, hidden_dim=16).use_prior("vamp", k, generator=gen(seed))


# --------------------------------------------------------------------------- densities


def test_standard_normal_log_prob_and_closed_form_kl():
    prior = StandardNormal(3)
    z = torch.randn(4, 5, 3, generator=gen(0), dtype=F64)
    assert torch.allclose(prior.log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1))
    mu, logvar = torch.randn(6, 3, generator=gen(1)), torch.randn(6, 3, generator=gen(2))
    expected = torch.distributions.kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    assert prior.kl(None, mu, logvar).shape == (6, 3) and torch.allclose(prior.kl(None, mu, logvar), expected, atol=1e-5)


def test_mixture_log_prob_matches_torch_mixture_same_family():
    prior = mog()
    z = 2 * torch.randn(50, 3, generator=gen(3), dtype=F64)
    means, logvars, log_weights = (t.detach().double() for t in prior.mixture())
    expected = torch_mixture(means, logvars, log_weights).log_prob(z)
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-10)
    assert prior.log_prob(z.reshape(5, 10, 3)).shape == (5, 10)
    resp = prior.responsibilities(z)
    assert torch.allclose(resp.sum(-1), torch.ones(50, dtype=F64))


def test_vampprior_is_the_uniform_mixture_of_the_encoders_posteriors_at_its_pseudo_inputs():
    model = tiny_vamp_vae(k=7)
    prior = model.prior
    with torch.no_grad():
        mu, logvar = model.encode(prior.pseudo_inputs())
    z = torch.randn(40, 2, generator=gen(4), dtype=F64)
    expected = torch_mixture(mu.double(), logvar.double(), torch.zeros(7, dtype=F64)).log_prob(z)
    with torch.no_grad():
        got = prior.log_prob(z)
    # the uniform weights carry -log K: a mixture that forgot it would be off by log 7 = 1.95 nats
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert prior.pseudo_inputs().min() >= 0 and prior.pseudo_inputs().max() <= 1
    assert abs(prior.pseudo_inputs().mean().item() - 0.05) < 0.005, "Tomczak and Welling's N(0.05, 0.01^2) start"


def test_a_vampprior_without_an_encoder_says_how_to_get_one():
    with pytest.raises(RuntimeError, match="use_prior"):
        VampPrior(2, 5).log_prob(torch.zeros(1, 2))


# --------------------------------------------------------------------------- samplers


def test_mixture_samples_follow_the_mixture():
    """Each component's share of the draws lies within 4 standard errors of its weight, and the draws'
    mean lies within 4 standard errors of the mixture's mean, their covariance close to its covariance."""
    prior = mog(k=6, d=2, seed=5)
    n = 40_000
    z, k = prior.sample(n, generator=gen(6), return_components=True)
    assert z.shape == (n, 2) and k.shape == (n,)
    weights = prior.mixture()[2].detach().double().exp()
    shares = torch.bincount(k, minlength=6).double() / n
    se = (weights * (1 - weights) / n).sqrt()
    assert ((shares - weights).abs() < 4 * se).all(), (shares, weights)
    mean, cov = prior.mixture_moments()
    assert ((z.double().mean(0) - mean).abs() < 4 * (cov.diagonal() / n).sqrt()).all()
    assert torch.allclose(torch.cov(z.double().T), cov, atol=0.05 * cov.diagonal().max().item())


def test_samples_are_reproducible_with_a_generator_and_land_on_the_models_device():
    model = tiny_vamp_vae()
    a, b = model.prior_draws(5, gen(1)), model.prior_draws(5, gen(1))
    assert torch.equal(a, b) and a.device == model.device
    assert model.sample(3, gen(2)).shape == (3, 784)


def test_vampprior_draws_come_from_the_chosen_pseudo_inputs_posterior():
    model = tiny_vamp_vae(k=3)
    z, k = model.prior.sample(30_000, gen(7), return_components=True)
    with torch.no_grad():
        mu, logvar = model.encode(model.prior.pseudo_inputs())
    for j in range(3):
        draws = z[k == j].double()
        se = (logvar[j].double().exp() / len(draws)).sqrt()
        assert ((draws.mean(0) - mu[j].double()).abs() < 4 * se).all()


# --------------------------------------------------------------------------- the KL term


def test_the_monte_carlo_kl_agrees_with_the_closed_form_for_the_standard_normal():
    prior = StandardNormal(2)
    mu, logvar = torch.tensor([[0.7, -1.2]], dtype=F64), torch.tensor([[-0.5, 0.4]], dtype=F64)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(200_000, 2, generator=gen(8), dtype=F64)
    values = prior.kl_monte_carlo(z, mu, logvar)
    closed = prior.kl(None, mu, logvar).sum().item()
    assert abs(values.mean().item() - closed) < 4 * values.std().item() / math.sqrt(len(values))


def test_model_terms_use_the_models_prior():
    torch.manual_seed(0)
    x = torch.rand(8, 784, generator=gen(9))
    standard = VAE(hidden_dim=16)
    _, kl = model_terms(standard, x)
    assert kl.shape == (8, 2)
    with torch.no_grad():
        mixture = with_prior(standard, mog(k=4, d=2))
    torch.manual_seed(1)
    rec, kl = model_terms(mixture, x)
    torch.manual_seed(1)
    mu, logvar = mixture.encode(x)
    z = mixture.reparameterize(mu, logvar)
    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1) - mixture.prior.log_prob(z)
    assert kl.shape == (8, 1) and torch.allclose(kl[:, 0], expected, atol=1e-5)


def test_fit_trains_the_prior_with_the_model_and_refuses_free_bits():
    torch.manual_seed(0)
    split = Split(torch.rand(64, 784, generator=gen(10)), torch.zeros(64, dtype=torch.long), ("one",), "mnist", True)
    model = tiny_vamp_vae(k=4)
    before = model.prior.raw_inputs.detach().clone()
    history = fit(model, split, epochs=2, batch_size=32, progress=False)
    assert len(history) == 2 and all(math.isfinite(v) for v in history.train_loss)
    assert not torch.equal(before, model.prior.raw_inputs.detach()), "the pseudo-inputs learn"
    with pytest.raises(ValueError, match="free bits"):
        fit(model, split, epochs=1, free_bits=0.5, progress=False)


# --------------------------------------------------------------------------- consumers ask the prior


def test_the_log_joint_and_the_importance_weights_use_the_prior():
    model = tiny_vamp_vae().eval()
    x = torch.rand(3, 784, generator=gen(11))
    z = torch.randn(2, 3, 2, generator=gen(12))
    with torch.no_grad():
        lik = -torch.nn.functional.binary_cross_entropy_with_logits(
            model.decode_logits(z.reshape(-1, 2)), x.repeat(2, 1), reduction="none").sum(-1).reshape(2, 3)
        expected = model.prior.log_prob(z.double()) + lik.double()
    assert torch.allclose(vae_log_joint(model)(x, z), expected, atol=1e-3)
    standard = VAE(hidden_dim=16).eval()
    standard.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("prior.")})
    w_vamp = importance_log_weights(model, x, 5, generator=gen(13))
    w_std = importance_log_weights(standard, x, 5, generator=gen(13))
    assert not torch.allclose(w_vamp, w_std), "the same draws score differently under another prior"


def test_elbo_surgery_under_a_learned_prior_estimates_its_kl_by_monte_carlo():
    model = with_prior(VAE(hidden_dim=16), mog(k=3, d=2)).eval()
    images = torch.rand(200, 784, generator=gen(14))
    s = elbo_surgery(model, images, n_samples=4000, generator=gen(15))
    assert s.average_kl_se > 0
    assert abs(s.average_kl - s.total) < 4 * math.hypot(s.average_kl_se, s.total_se)
    with pytest.raises(ValueError, match="does not split"):
        kl_per_dimension(model, images)
    closed = elbo_surgery(VAE(hidden_dim=16).eval(), images, n_samples=100, generator=gen(16))
    assert closed.average_kl_se == 0


# --------------------------------------------------------------------------- the fitted mixture


def test_fit_mixture_finds_two_clusters_and_leaves_the_model_alone():
    a = torch.randn(3000, 2, generator=gen(17), dtype=F64) * 0.3 + torch.tensor([-2.0, 0.0], dtype=F64)
    b = torch.randn(1000, 2, generator=gen(18), dtype=F64) * 0.5 + torch.tensor([2.0, 1.0], dtype=F64)
    fitted = fit_mixture(torch.cat([a, b]), 2, generator=gen(19))
    means, logvars, log_weights = fitted.mixture()
    order = means[:, 0].argsort()
    assert torch.allclose(means[order].double(), torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=F64), atol=0.05)
    assert torch.allclose(log_weights[order].exp().double(), torch.tensor([0.75, 0.25], dtype=F64), atol=0.02)
    assert torch.allclose(logvars[order].exp().sqrt().double(), torch.tensor([[0.3, 0.3], [0.5, 0.5]], dtype=F64),
                          atol=0.03)
    model = VAE(hidden_dim=16)
    twin = with_prior(model, fitted)
    assert isinstance(model.prior, StandardNormal) and isinstance(twin.prior, FittedMixture)
    with pytest.raises(ValueError, match="at least as many codes"):
        fit_mixture(torch.zeros(3, 2), 5)


# --------------------------------------------------------------------------- names, checks, checkpoints


def test_get_prior_and_use_prior_refuse_what_cannot_work():
    assert isinstance(get_prior("standard", 2), StandardNormal)
    with pytest.raises(ValueError, match="unknown prior"):
        get_prior("laplace", 2)
    with pytest.raises(ValueError, match="components"):
        get_prior("vamp", 2)
    with pytest.raises(ValueError, match="no components"):
        get_prior("standard", 2, components=3)
    with pytest.raises(ValueError, match="keeps the standard normal"):
        ConditionalVAE(latent_dim=2, hidden_dim=8).use_prior("mog", 3)
    with pytest.raises(ValueError, match="latent dimensions"):
        VAE(latent_dim=2, hidden_dim=8).use_prior(MixtureOfGaussians(3, 2))
    with pytest.raises(ValueError, match="no prior"):
        build_model("ae", prior="mog", prior_components=3)
    assert build_model("vae", hidden_dim=8).state_dict().keys() == VAE(hidden_dim=8).state_dict().keys(), \
        "the standard normal holds nothing: the textbook's state dict loads unchanged"


def test_pseudo_inputs_can_start_at_training_images(tmp_path):
    images = torch.rand(30, 784, generator=gen(22))
    prior = VampPrior(2, 5)
    prior.start_from(images, gen(23))
    distance = torch.cdist(prior.raw_inputs.detach(), images)          # each pseudo-input near one image
    assert (distance.min(1).values < 0.01 * math.sqrt(784) * 2).all()
    assert len(set(distance.argmin(1).tolist())) == 5, "five different images"
    with pytest.raises(ValueError, match="at least as many images"):
        VampPrior(2, 50).start_from(images)
    with pytest.raises(ValueError, match="prior_init"):
        TrainConfig(prior="mog", prior_components=3, prior_init="data")
    split = Split(images.repeat(4, 1), torch.zeros(120, dtype=torch.long), ("one",), "mnist", True)
    config = TrainConfig(dataset="mnist", hidden_dim=16, epochs=1, prior="vamp", prior_components=5, prior_init="data")
    assert config.filename().count("_vamp5d_") == 1
    model, _ = train_or_load(config, split, folder=tmp_path, progress=False)
    assert torch.cdist(model.prior.pseudo_inputs().detach(), images).min(1).values.max() < 1.0, "trained from images"


def test_a_vampprior_checkpoint_round_trips(tmp_path):
    split = Split(torch.rand(64, 784, generator=gen(20)), torch.zeros(64, dtype=torch.long), ("one",), "mnist", True)
    config = TrainConfig(dataset="mnist", hidden_dim=16, epochs=1, batch_size=32, prior="vamp", prior_components=5)
    assert "_vamp5_" in config.filename()
    model, _ = train_or_load(config, split, folder=tmp_path, progress=False)
    loaded, _ = load_checkpoint(tmp_path / config.filename(), config)
    z = torch.randn(10, 2, generator=gen(21))
    with torch.no_grad():
        assert torch.allclose(loaded.prior.log_prob(z), model.prior.log_prob(z), atol=1e-6)
    assert torch.equal(loaded.prior.pseudo_inputs(), model.prior.pseudo_inputs())


def test_the_manifold_of_quantiles_refuses_a_learned_prior():
    from vae_lib.latent import plot_manifold

    with pytest.raises(ValueError, match="quantiles of N\\(0, I\\)"):
        plot_manifold(tiny_vamp_vae(), n=2)


def test_the_drawing_functions_of_notebook_12():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vae_lib.priors import component_order, draw_prior_density, draw_prior_explorer, view_limit

    model = tiny_vamp_vae(k=4).eval()
    mixture = with_prior(VAE(hidden_dim=16), mog(k=3, d=2)).eval()
    weights = mixture.prior.mixture()[2].detach()
    assert torch.equal(weights[component_order(mixture.prior)], weights.sort(descending=True).values)
    assert view_limit(torch.tensor([[0.5, -9.0], [1.0, 1.0]]), share=1.0) == 10.5
    assert view_limit(torch.zeros(5, 2)) == 3.0, "at least 3"
    ax = draw_prior_density(StandardNormal(2), torch.randn(100, 2, generator=gen(24)))
    assert ax.get_xlim()[1] >= 3.0 and ax.get_xlim()[0] == -ax.get_xlim()[1], "a square view centred on 0"
    fig = draw_prior_explorer({"vamp": model, "mog": mixture}, "vamp", 3)
    assert "component 3 of 4" in fig._suptitle.get_text()
    assert "pseudo-input" in " ".join(a.get_title() for a in fig.axes)
    assert "weight" in draw_prior_explorer({"mog": mixture}, "mog", 0)._suptitle.get_text()
    with pytest.raises(ValueError, match="component must be"):
        draw_prior_explorer({"mog": mixture}, "mog", 3)
    with pytest.raises(ValueError, match="no model with the prior"):
        draw_prior_explorer({"mog": mixture}, "vamp", 0)
    with pytest.raises(ValueError, match="not a mixture"):
        draw_prior_explorer({"std": VAE(hidden_dim=16)}, "std", 0)
    with pytest.raises(ValueError, match="2-D priors"):
        draw_prior_density(StandardNormal(3))
    plt.close("all")
