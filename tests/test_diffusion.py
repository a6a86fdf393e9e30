"""Notebook 15's latent diffusion: the forward process against its chain, the ELBO's terms as weighted noise
errors, the model's loss and sampler, training through fit and train_or_load, and the explorer."""
import pytest
import torch
from matplotlib import pyplot as plt

from splits import make_split
from vae_lib.checkpoints import TrainConfig, train_or_load
from vae_lib.latent_diffusion import (Denoiser, DiffusionConfig, LatentDiffusion, LatentDiffusionFit, alpha_bars,
                                      denoising_trajectory, diffusion_path, draw_denoising, encode_latents,
                                      forward_marginal, gaussian_kl, linear_betas, latent_scale, model_mean,
                                      noise_weight, posterior, posterior_variance, q_sample, run_chain,
                                      train_or_load_diffusion)
from vae_lib.models import SpatialVAE


def test_the_schedule_is_ho_et_al_rescaled_and_bad_input_is_refused():
    betas = linear_betas(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    short = linear_betas(200)
    assert short[0].item() == pytest.approx(5e-4) and short[-1].item() == pytest.approx(0.1)
    ab = alpha_bars(short)
    assert torch.allclose(ab[1:], ab[:-1] * (1 - short[1:])) and 0 < ab[-1] < 1e-3
    for bad in (1, 0, 2.5, "10"):
        with pytest.raises(ValueError, match="steps"):
            linear_betas(bad)
    for bad in (torch.tensor([0.0, 0.1]), torch.tensor([0.5, 1.0]), torch.ones(2, 2) * 0.1):
        with pytest.raises(ValueError, match="betas"):
            alpha_bars(bad)


@pytest.mark.parametrize("t", [0, 4, 30, 199])
def test_the_closed_form_marginal_matches_running_the_chain(t):
    """Mean and variance of z_t from the chain, against forward_marginal, within four standard errors."""
    betas = linear_betas(200)
    n = 40_000
    z0 = torch.full((n, 1), 1.5, dtype=torch.float64)
    zt = run_chain(z0, betas, t, torch.Generator().manual_seed(t))
    mean_factor, variance = forward_marginal(alpha_bars(betas)[t])
    mean, var = zt.mean().item(), zt.var().item()
    assert abs(mean - 1.5 * mean_factor.item()) < 4 * (variance.item() / n) ** 0.5
    assert abs(var - variance.item()) < 4 * variance.item() * (2 / n) ** 0.5
    one_step = q_sample(z0, torch.full((n,), t), alpha_bars(betas), torch.randn(n, 1, dtype=torch.float64))
    assert abs(one_step.var().item() - var) < 8 * variance.item() * (2 / n) ** 0.5


def test_q_sample_scales_the_signal_and_the_noise_by_the_marginal():
    betas = linear_betas(50)
    ab = alpha_bars(betas)
    z0, noise = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    t = torch.tensor([0, 10, 49])
    expected = ab[t].sqrt()[:, None] * z0 + (1 - ab[t]).sqrt()[:, None] * noise
    assert torch.allclose(q_sample(z0, t, ab, noise), expected)
    with pytest.raises(ValueError, match="t must"):
        run_chain(z0, betas, 50)
    for bad in (torch.tensor([0, 50, 1]), torch.tensor([-1, 0, 1]), torch.tensor([0.0, 1.0, 2.0])):
        with pytest.raises(ValueError, match="t must"):
            q_sample(z0, bad, ab, noise)


def test_gaussian_kl_is_torch_distributions():
    mq, mp = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    ours = gaussian_kl(mq, 0.3, mp, 0.7)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, 0.3 ** 0.5),
                                            torch.distributions.Normal(mp, 0.7 ** 0.5)).sum(1)
    assert torch.allclose(ours, ref)


@pytest.mark.parametrize("t", [1, 5, 60, 199])
def test_each_elbo_term_is_a_weighted_squared_noise_error(t):
    """L_{t-1} = KL(q(z_{t-1}|z_t, z_0) || p(z_{t-1}|z_t)) = lambda_t ||noise - noise_hat||^2, when z_t was
    drawn by q_sample: fails if the forward marginal's variance is wrong."""
    betas = linear_betas(200)
    ab = alpha_bars(betas)
    g = torch.Generator().manual_seed(t)
    z0, noise, noise_hat = (torch.randn(8, 12, generator=g, dtype=torch.float64) for _ in range(3))
    zt = q_sample(z0, torch.full((8,), t), ab, noise)
    mean_q, var_q = posterior(z0, zt, t, betas)
    kl = gaussian_kl(mean_q, var_q, model_mean(zt, t, betas, noise_hat), var_q)
    assert torch.allclose(kl, noise_weight(t, betas) * (noise - noise_hat).pow(2).sum(1), rtol=1e-8)
    # a perfect noise prediction makes the model's mean the posterior's
    assert torch.allclose(model_mean(zt, t, betas, noise), mean_q)
    with pytest.raises(ValueError, match="t must"):
        posterior(z0, zt, 0, betas)
    assert torch.equal(posterior_variance(t, betas), var_q)


def test_the_elbo_terms_refuse_steps_out_of_range():
    """noise_weight(0) would silently wrap alpha_bar[-1] to alpha_bar_T; model_mean and q_sample would index past T."""
    betas = linear_betas(20)
    zt = torch.randn(2, 3, dtype=torch.float64)
    for bad in (0, 20, -1, 1.0, True):
        with pytest.raises(ValueError, match="t must"):
            noise_weight(bad, betas)
        with pytest.raises(ValueError, match="t must"):
            posterior_variance(bad, betas)
    for bad in (20, -1, 2.0):
        with pytest.raises(ValueError, match="t must"):
            model_mean(zt, bad, betas, zt)
    assert model_mean(zt, 0, betas, zt).shape == zt.shape


def test_the_simple_loss_and_the_sampler():
    torch.manual_seed(0)
    model = LatentDiffusion(2, width=8, layers=1, steps=20, scale=3.0)
    z0 = torch.randn(5, 98)
    t, noise = torch.randint(20, (5,)), torch.randn(5, 98)
    zt = q_sample(z0, t, alpha_bars(model.betas), noise)
    expected = (model.predict_noise(zt, t) - noise).pow(2).sum(1)
    assert torch.allclose(model.loss(z0, t, noise), expected)
    assert model.loss(z0).shape == (5,)
    assert model.timesteps().tolist() == list(range(19, -1, -1))
    assert model.timesteps(5).tolist()[0] == 19 and model.timesteps(5).tolist()[-1] == 0
    assert model.timesteps(1).tolist() == [19] and model.timesteps(2).tolist() == [19, 0]
    for k in (1, 2, 3, 7, 19, 20):
        visited = model.timesteps(k)
        assert len(visited) == k and (visited[:-1] > visited[1:]).all() and visited[0] == 19
        # the shorter chain keeps the visited steps' alpha_bar
        assert torch.allclose(alpha_bars(model.respaced_betas(visited)), alpha_bars(model.betas)[visited.flip(0)])
    a = model.sample(3, 5, torch.Generator().manual_seed(1))
    b, path = model.sample(3, 5, torch.Generator().manual_seed(1), trajectory=True)
    assert a.shape == (3, 98) and torch.equal(a, b) and len(path) == 5
    assert model.sample(2, 1, torch.Generator().manual_seed(0)).shape == (2, 98)
    for bad in (0, 21, 2.0):
        with pytest.raises(ValueError, match="steps"):
            model.timesteps(bad)
    with pytest.raises(ValueError, match="latents"):
        model.loss(torch.randn(5, 97))
    with pytest.raises(ValueError, match="positive"):
        Denoiser(2, width=7)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale"):
            LatentDiffusion(2, width=8, layers=1, steps=20, scale=bad)


class _ExactGaussian(LatentDiffusion):
    """A DDPM whose noise prediction is exact for 1-D data N(m, v), 49 independent numbers per grid:
    eps*(z_t, t) = sqrt(1 - abar_t) (z_t - sqrt(abar_t) m) / (abar_t v + 1 - abar_t)."""

    def __init__(self, m: float, v: float, steps: int = 200):
        super().__init__(1, width=2, layers=1, steps=steps)
        self.m, self.v = m, v

    def predict_noise(self, zt, t):
        ab = alpha_bars(self.betas)[t].to(zt.dtype)[:, None]
        return (1 - ab).sqrt() * (zt - ab.sqrt() * self.m) / (ab * self.v + 1 - ab)


def _exact_sampler_moments(model, steps, m, v):
    """The mean and variance of what the ancestral sampler returns with the exact eps*, worked out by hand: every
    step is linear in z, z_prev = a z + b (+ sigma noise), so the moments follow step by step from N(0, 1)."""
    ab_all = alpha_bars(model.betas)
    visited = model.timesteps(steps).tolist()
    mean, var = 0.0, 1.0
    for i, t in enumerate(visited):
        ab = ab_all[t].item()
        ab_prev = ab_all[visited[i + 1]].item() if i + 1 < len(visited) else 1.0
        beta = 1 - ab / ab_prev
        c = (1 - ab) ** 0.5 / (ab * v + 1 - ab)                 # eps* = c (z - sqrt(ab) m)
        a = (1 - beta * c / (1 - ab) ** 0.5) / (1 - beta) ** 0.5
        b = beta * c * ab ** 0.5 * m / ((1 - ab) * (1 - beta)) ** 0.5
        sigma2 = beta * (1 - ab_prev) / (1 - ab) if i + 1 < len(visited) else 0.0
        mean, var = a * mean + b, a * a * var + sigma2
    return mean, var


def test_the_sampler_draws_the_data_distribution_with_the_exact_noise_predictor():
    """With the exact eps*, the ancestral sampler on all T steps must give N(m, v): the mean within four standard
    errors and the variance within 10% (the reverse chain's discretisation leaves it a few percent low). On fewer
    steps the last step returns a mean, so the variance falls with the steps (measured: 0.281 at 200, 0.239 at 50)."""
    m, v, n = 0.7, 0.3, 400                                   # 400 grids of 49 numbers: 19,600 draws
    model = _ExactGaussian(m, v)
    z = {k: model.sample(n, k, torch.Generator().manual_seed(k)).double().flatten() for k in (200, 50, 10, 1)}
    draws = len(z[200])
    assert abs(z[200].mean().item() - m) < 4 * (v / draws) ** 0.5
    assert z[200].var().item() == pytest.approx(v, rel=0.1)
    assert abs(z[50].mean().item() - m) < 4 * (v / draws) ** 0.5
    variances = [z[k].var().item() for k in (200, 50, 10, 1)]
    assert all(a > b for a, b in zip(variances, variances[1:])), variances
    # one step returns the predicted z_0 from pure noise: E[z_0 | z_T], almost the data's mean, with almost no spread
    assert abs(z[1].mean().item() - m) < 0.05 and variances[-1] < 0.01
    # every step count against the moments worked out by hand, four standard errors (fails for a wrong respacing)
    for k, samples in z.items():
        mean, var = _exact_sampler_moments(model, k, m, v)
        assert abs(samples.mean().item() - mean) < 4 * (var / draws) ** 0.5 + 1e-9, (k, samples.mean().item(), mean)
        assert abs(samples.var().item() - var) < 4 * var * (2 / draws) ** 0.5 + 1e-9, (k, samples.var().item(), var)


def test_the_scale_is_the_latents_standard_deviation():
    z = 4.0 * torch.randn(2000, 49, generator=torch.Generator().manual_seed(0))
    assert latent_scale(z) == pytest.approx(4.0, rel=0.02)
    with pytest.raises(ValueError, match="latents"):
        latent_scale(torch.ones(3))
    for bad in (torch.ones(5, 4), torch.full((3, 2), float("nan"))):
        with pytest.raises(ValueError, match="standard deviation"):
            latent_scale(bad)


def test_fit_trains_the_diffusion_model_over_a_frozen_vae_and_train_or_load_caches_it(tmp_path):
    train = make_split(256, True, 0)
    config = TrainConfig(dataset="mnist", model="spatial", latent_dim=2, channels=4, epochs=1, batch_size=64)
    vae, _ = train_or_load(config, train, folder=tmp_path, progress=False, log=None)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    latents = encode_latents(vae, train.images, torch.Generator().manual_seed(0))
    assert latents.shape == (256, 98)
    dconfig = DiffusionConfig(width=8, layers=1, steps=20, epochs=3, batch_size=64)
    lines = []
    model, history = train_or_load_diffusion(config, vae, dconfig, train, train, folder=tmp_path, progress=False,
                                             log=lines.append)
    assert history.test_loss[-1] < history.test_loss[0]
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items()), "the VAE must stay frozen"
    assert model.scale.item() == pytest.approx(latent_scale(latents))
    assert "Trained" in lines[-1]
    again, _ = train_or_load_diffusion(config, vae, dconfig, train, train, folder=tmp_path, progress=False,
                                       log=lines.append)
    assert "Loaded" in lines[-1] and torch.equal(again.net.out.weight, model.net.out.weight)
    unscaled, _ = train_or_load_diffusion(config, vae, DiffusionConfig(width=8, layers=1, steps=20, scaled=False),
                                          train, folder=tmp_path, progress=False, log=None)
    assert unscaled.scale.item() == 1.0
    diffusion_path(config, dconfig, tmp_path).write_bytes(b"not a checkpoint")
    train_or_load_diffusion(config, vae, dconfig, train, folder=tmp_path, progress=False, log=lines.append)
    assert "Cannot use" in lines[-2] and "Trained" in lines[-1]
    with pytest.raises(ValueError, match="channels"):
        LatentDiffusionFit(vae, LatentDiffusion(3, 8, 1, 20))
    with pytest.raises(ValueError, match="trained on"):
        train_or_load_diffusion(TrainConfig(dataset="fashion-mnist"), vae, dconfig, train, folder=tmp_path)
    with pytest.raises(ValueError, match="SpatialVAE"):
        train_or_load_diffusion(config, torch.nn.Linear(2, 2), dconfig, train, folder=tmp_path)


def test_the_explorer_draws_every_step_and_refuses_others():
    torch.manual_seed(0)
    vae = SpatialVAE(2, 4, likelihood="bernoulli")
    model = LatentDiffusion(2, width=8, layers=1, steps=20)
    path = denoising_trajectory(model, vae, 3, 4, torch.Generator().manual_seed(0))
    assert len(path) == 4 and path[0][1].shape == (3, 784) and path[0][0] == 19 and path[-1][0] == 0
    fig = draw_denoising(path, 3)
    assert len(fig.axes) == 6
    plt.close(fig)
    for bad in (-1, 4, 1.0):
        with pytest.raises(ValueError, match="step"):
            draw_denoising(path, bad)
