import math

import pytest
import torch

from vae_lib.losses import (
    LossTerms, bernoulli_nll, check_pixels, gaussian_kl, gaussian_nll, vae_loss,
)
from vae_lib.models import VAE, AutoEncoder, reparameterize
from vae_lib.registry import build_model
from seed_code import seed_namespace


def test_vae_shapes_and_seed_layer_names():
    model = VAE(latent_dim=3, hidden_dim=50)
    x = torch.rand(5, 784)
    logits, mu, logvar = model(x)
    assert logits.shape == (5, 784) and mu.shape == (5, 3) and logvar.shape == (5, 3)
    assert model.decode(mu).min() >= 0 and model.decode(mu).max() <= 1
    assert model.sample(7).shape == (7, 784)
    assert set(dict(model.named_parameters())) == {
        f"{layer}.{p}" for layer in ("fc1", "fc_mu", "fc_logvar", "fc3", "fc4") for p in ("weight", "bias")
    }


def test_seed_weights_load_and_give_the_same_outputs():
    seed = seed_namespace()["VAE"]()
    model = VAE()
    model.load_state_dict(seed.state_dict())
    x = torch.rand(4, 784)
    mu_s, logvar_s = seed.encode(x)
    mu, logvar = model.encode(x)
    assert torch.allclose(mu, mu_s) and torch.allclose(logvar, logvar_s)
    z = torch.randn(4, 2)
    assert torch.allclose(model.decode(z), seed.decode(z), atol=1e-6)


def test_loss_equals_the_seeds_loss_function():
    ns = seed_namespace(latent_dim=2)
    torch.manual_seed(1)
    x = torch.rand(16, 784)
    logits = torch.randn(16, 784) * 3
    mu, logvar = torch.randn(16, 2), torch.randn(16, 2)
    seed_loss = ns["loss_function"](torch.sigmoid(logits), x, mu, logvar)
    ours = vae_loss(logits, x, mu, logvar, reduction="sum")
    assert torch.allclose(ours.loss, seed_loss, rtol=1e-5)
    assert torch.allclose(ours.loss, ours.recon + ours.kl)
    per_image = vae_loss(logits, x, mu, logvar, reduction="mean")
    assert torch.allclose(per_image.loss * 16, seed_loss, rtol=1e-5)
    assert vae_loss(logits, x, mu, logvar, reduction="none").loss.shape == (16,)


def test_logits_stay_finite_where_sigmoid_then_bce_saturates():
    x = torch.ones(1, 784)
    logits = torch.full((1, 784), -120.0)
    ours = bernoulli_nll(logits, x, reduction="sum")
    assert torch.isfinite(ours) and abs(ours.item() - 120.0 * 784) < 1.0
    # sigmoid(-120) underflows to 0 in float32, and BCE then clamps log(0) to -100 per pixel.
    seed = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")
    assert abs(seed.item() - 100 * 784) < 1.0


def test_gaussian_kl_known_values():
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(4.0)]])
    expected = 0.5 * 1.0 + 0.5 * (4.0 - 1.0 - math.log(4.0))
    assert torch.allclose(gaussian_kl(mu, logvar), torch.tensor([expected]))
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    assert torch.allclose(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1))


def test_gaussian_nll():
    x = torch.rand(2, 784)
    assert torch.allclose(gaussian_nll(x, x), torch.zeros(2))
    assert torch.allclose(gaussian_nll(torch.zeros(2, 784), x), 0.5 * (x ** 2).sum(-1))
    const = gaussian_nll(torch.zeros(2, 784), x, constant=True)
    ref = -torch.distributions.Normal(torch.zeros(2, 784), 1.0).log_prob(x).sum(-1)
    assert torch.allclose(const, ref, rtol=1e-5)
    terms = vae_loss(torch.rand(2, 784), x, torch.zeros(2, 2), torch.zeros(2, 2), likelihood="gaussian")
    assert isinstance(terms, LossTerms) and terms.kl.item() == 0


def test_beta_weights_only_the_kl():
    x, logits = torch.rand(3, 784), torch.randn(3, 784)
    mu, logvar = torch.randn(3, 2), torch.randn(3, 2)
    t1 = vae_loss(logits, x, mu, logvar, beta=1.0)
    t4 = vae_loss(logits, x, mu, logvar, beta=4.0)
    assert torch.allclose(t4.loss - t1.loss, 3 * t1.kl)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(4, 784) * 255, r"in \[0, 1\]"),
    (torch.rand(4, 784) - 0.5, r"in \[0, 1\]"),
    (torch.full((4, 784), float("nan")), "NaN or inf"),
    (torch.rand(4, 28, 28), r"shape \(batch, pixels\)"),
    (torch.randint(0, 2, (4, 784)), "float"),
])
def test_bad_pixels_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        vae_loss(torch.zeros(4, 784), bad, torch.zeros(4, 2), torch.zeros(4, 2))


def test_gaussian_likelihood_accepts_values_outside_unit_interval():
    check_pixels(torch.randn(3, 784), likelihood="gaussian")
    with pytest.raises(ValueError, match="likelihood"):
        vae_loss(torch.zeros(2, 784), torch.rand(2, 784), torch.zeros(2, 2), torch.zeros(2, 2), likelihood="poisson")


def test_mismatched_shapes_raise():
    x = torch.rand(4, 784)
    with pytest.raises(ValueError, match="shape of x"):
        vae_loss(torch.zeros(4, 100), x, torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="same shape"):
        vae_loss(torch.zeros(4, 784), x, torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="one posterior per image"):
        vae_loss(torch.zeros(4, 784), x, torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="reduction"):
        vae_loss(torch.zeros(4, 784), x, torch.zeros(4, 2), torch.zeros(4, 2), reduction="avg")
    with pytest.raises(ValueError, match="NaN"):
        gaussian_kl(torch.tensor([[float("inf"), 0.0]]), torch.zeros(1, 2))


def test_models_reject_wrong_input_shapes():
    with pytest.raises(ValueError, match=r"x.view\(-1, 784\)"):
        VAE().encode(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        VAE().decode(torch.rand(2, 3))
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(latent_dim=0)
    with pytest.raises(ValueError, match="784"):
        AutoEncoder().encode(torch.rand(2, 10))


def test_reparameterize_is_differentiable_and_deterministic_given_eps():
    mu = torch.tensor([0.5, -1.0], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(9.0)], requires_grad=True)
    eps = torch.tensor([1.0, 2.0])
    z = reparameterize(mu, logvar, eps)
    assert torch.allclose(z, torch.tensor([1.5, 5.0]))
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(2))
    assert torch.allclose(logvar.grad, 0.5 * eps * torch.exp(0.5 * logvar.detach()))
    many = reparameterize(mu.detach(), logvar.detach(), torch.randn(1000, 2))
    assert many.shape == (1000, 2)
    with pytest.raises(ValueError, match="same shape"):
        reparameterize(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="broadcast"):
        reparameterize(torch.zeros(2), torch.zeros(2), torch.zeros(3))


def test_reparameterized_samples_have_the_right_moments():
    mu, logvar = torch.tensor([1.0, -2.0]), torch.tensor([0.0, math.log(0.25)])
    z = reparameterize(mu, logvar, torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0)))
    # Four standard errors of the sample mean (sigma / sqrt(n)).
    assert torch.all((z.mean(0) - mu).abs() < 4 * torch.tensor([1.0, 0.5]) / math.sqrt(200_000))
    assert torch.allclose(z.std(0), torch.tensor([1.0, 0.5]), rtol=0.01)


def test_autoencoder_and_build_model():
    ae = build_model("ae", latent_dim=2, hidden_dim=32)
    logits, z = ae(torch.rand(3, 784))
    assert isinstance(ae, AutoEncoder) and logits.shape == (3, 784) and z.shape == (3, 2)
    assert isinstance(build_model("vae"), VAE)
    with pytest.raises(ValueError, match="'vae', 'ae'"):
        build_model("gan")


def test_bernoulli_entropy_is_the_floor_of_the_reconstruction_term():
    from vae_lib.losses import bernoulli_entropy

    x = torch.rand(5, 784, dtype=torch.float64)
    x[:, :100] = 0.0
    x[:, 100:200] = 1.0
    floor = bernoulli_entropy(x)
    assert torch.allclose(bernoulli_nll(torch.logit(x, eps=1e-12), x), floor, rtol=0, atol=1e-6)
    assert torch.all(bernoulli_nll(torch.logit(x, eps=1e-12) + 0.3 * torch.randn_like(x), x) > floor)
    assert bernoulli_entropy(torch.full((1, 784), 0.5)).item() == pytest.approx(784 * math.log(2))
    assert bernoulli_entropy(torch.zeros(2, 784)).abs().max() == 0
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        bernoulli_entropy(torch.full((1, 784), 2.0))


def test_reconstruct_decodes_the_posterior_mean():
    model = VAE(hidden_dim=16)
    x = torch.rand(3, 784)
    mu, _ = model.encode(x)
    assert torch.allclose(model.reconstruct(x), model.decode(mu))
    ae = AutoEncoder(hidden_dim=16)
    assert torch.allclose(ae.reconstruct(x), ae.decode(ae.encode(x)))


def test_sample_with_a_generator_is_repeatable_and_checks_n():
    model = VAE(hidden_dim=16)
    a = model.sample(5, generator=torch.Generator().manual_seed(3))
    b = model.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (5, 784)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            model.sample(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_generator_gives_the_same_samples_on_cuda():
    model = VAE(hidden_dim=16)
    cpu = model.sample(4, generator=torch.Generator().manual_seed(0))
    gpu = model.cuda().sample(4, generator=torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda" and torch.allclose(cpu, gpu.cpu(), atol=1e-5)
