"""Notebook 10's diagnostics: KL per dimension, active units and the ELBO surgery, with known answers."""
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from vae_lib.diagnostics import (  # noqa: E402
    ActiveUnits, Surgery, active_units, draw_kl_per_dimension, elbo_surgery, kl_per_dimension,
    log_aggregate_posterior, surgery_table_rows,
)
from vae_lib.evaluation import LatentGrid  # noqa: E402
from vae_lib.models import VAE, AutoEncoder  # noqa: E402
from vae_lib.training import evaluate  # noqa: E402

from splits import make_split  # noqa: E402


def _model(latent=4, dead=()):
    """A VAE whose posterior ignores the image in the ``dead`` dimensions: mean 0, variance 1 there."""
    torch.manual_seed(0)
    model = VAE(latent_dim=latent, hidden_dim=32)
    with torch.no_grad():
        model.fc_mu.weight.mul_(100.0)           # spread the codes of the live dimensions
        for j in dead:
            model.fc_mu.weight[j] = 0.0
            model.fc_mu.bias[j] = 0.0
            model.fc_logvar.weight[j] = 0.0
            model.fc_logvar.bias[j] = 0.0
    return model


def test_kl_per_dimension_adds_up_to_the_elbos_kl_and_is_zero_where_unused():
    model = _model(dead=(1, 3))
    split = make_split(200, train=False)
    kl = kl_per_dimension(model, split.images)
    assert kl.shape == (4,) and kl.dtype == torch.float64
    torch.manual_seed(1)
    assert kl.sum().item() == pytest.approx(evaluate(model, split)["kl"], rel=1e-5)
    assert kl[1] == 0 and kl[3] == 0 and (kl[[0, 2]] > 0.01).all()


def test_active_units_count_the_dimensions_whose_mean_moves_with_the_image():
    model = _model(dead=(1, 3))
    images = make_split(200, train=False).images
    units = active_units(model, images)
    assert isinstance(units, ActiveUnits) and units.count == 2
    assert units.active.tolist() == [True, False, True, False]
    mu, _ = model.encode(images)
    assert torch.allclose(units.variance, mu.double().var(0, unbiased=False), rtol=1e-6)
    # An active unit spends at least threshold / 2 nats: KL_j >= mu_j^2 / 2 >= Var(mu_j) / 2 on average.
    assert (kl_per_dimension(model, images) >= units.variance / 2 - 1e-9).all()
    assert active_units(model, images, threshold=1e9).count == 0
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="threshold"):
            active_units(model, images, threshold=bad)
    with pytest.raises(ValueError, match="VAEBase"):
        active_units(AutoEncoder(hidden_dim=8), images)
    with pytest.raises(ValueError, match="shape"):
        active_units(model, images[:1])


def test_a_unit_whose_mean_is_far_from_zero_but_the_same_for_every_image_is_not_active():
    """Activity is the variance of the posterior mean over images, not its size: a constant code says nothing."""
    model = _model(dead=(1, 3))
    with torch.no_grad():
        model.fc_mu.bias[1] = 3.0                # unit 1: mean 3 for every image, still dead
        model.fc_mu.weight[2].mul_(0.0)
        model.fc_mu.bias[2] = 0.0                # unit 2: mean 0 for every image
        model.fc_mu.weight[3] = model.fc_mu.weight[0]   # unit 3: moves with the image as unit 0 does, centred below
    images = make_split(200, train=False).images
    with torch.no_grad():
        mu, _ = model.encode(images)
        model.fc_mu.bias[3] -= mu[:, 3].mean()   # zero average, yet it varies from image to image
        mu, _ = model.encode(images)
    assert abs(mu[:, 1].mean().item() - 3.0) < 1e-6 and abs(mu[:, 3].mean().item()) < 1e-5
    assert mu[:, 3].var(unbiased=False) > 0.01
    units = active_units(model, images)
    assert units.active.tolist() == [True, False, False, True]


def test_surgery_of_a_posterior_that_ignores_the_image_is_all_zero():
    model = _model(dead=(0, 1, 2, 3))
    s = elbo_surgery(model, make_split(100, train=False).images, n_samples=500, generator=torch.Generator().manual_seed(0))
    assert s.average_kl == 0 and abs(s.mutual_information) < 1e-9 and abs(s.marginal_kl) < 1e-9


def test_surgery_parts_add_up_to_the_average_kl():
    model = _model(latent=3)
    images = make_split(300, train=False, seed=2).images
    s = elbo_surgery(model, images, n_samples=4000, generator=torch.Generator().manual_seed(0))
    assert isinstance(s, Surgery) and s.marginal_kl_method == "Monte Carlo"
    assert abs(s.total - s.average_kl) < 4 * s.total_se + 1e-6, (s.total, s.average_kl, s.total_se)
    assert 0 <= s.mutual_information <= math.log(300) + 4 * s.mutual_information_se
    rows = surgery_table_rows(["m"], [s])
    assert rows["m"]["sum of the parts"] == pytest.approx(s.total)


def test_surgery_by_quadrature_agrees_with_monte_carlo_in_2d():
    model = _model(latent=2)
    with torch.no_grad():
        model.fc_mu.weight.mul_(0.05)            # codes within the grid's box
    images = make_split(200, train=False, seed=3).images
    grid = LatentGrid(6.0, 301)
    by_grid = elbo_surgery(model, images, n_samples=4000, grid=grid, generator=torch.Generator().manual_seed(1))
    by_mc = elbo_surgery(model, images, n_samples=4000, generator=torch.Generator().manual_seed(1))
    assert by_grid.marginal_kl_method == "quadrature" and by_grid.marginal_kl_se == 0
    assert abs(by_grid.marginal_kl - by_mc.marginal_kl) < 4 * by_mc.marginal_kl_se + 1e-3
    assert abs(by_grid.total - by_grid.average_kl) < 4 * by_grid.total_se + 1e-3
    with pytest.raises(ValueError, match="grid"):
        elbo_surgery(model, images, grid=LatentGrid(6.0, 11, dim=3))


def test_a_wrong_log_q_of_z_passes_the_sum_and_fails_the_quadrature(monkeypatch):
    """What each check can catch: log q(z) enters the two Monte Carlo parts with opposite signs, so a wrong one
    (here: the mixture without its 1/N) leaves their sum in place; the quadrature's KL(q(z) || p(z)) is off."""
    from vae_lib import diagnostics

    model = _model(latent=2)
    with torch.no_grad():
        model.fc_mu.weight.mul_(0.05)
    images = make_split(200, train=False, seed=3).images
    right = diagnostics.log_aggregate_posterior
    monkeypatch.setattr(diagnostics, "log_aggregate_posterior", lambda z, mu, logvar, chunk=1024:
                        right(z, mu, logvar, chunk) + math.log(mu.shape[0]))
    wrong_mc = elbo_surgery(model, images, n_samples=4000, generator=torch.Generator().manual_seed(1))
    wrong_grid = elbo_surgery(model, images, n_samples=4000, grid="auto", generator=torch.Generator().manual_seed(1))
    assert abs(wrong_mc.total - wrong_mc.average_kl) < 4 * wrong_mc.total_se + 1e-3, "the sum cannot see it"
    assert abs(wrong_grid.marginal_kl - wrong_mc.marginal_kl) > 10 * wrong_mc.marginal_kl_se + 1, "the quadrature does"


def test_the_automatic_grid_halves_its_step_until_the_quadrature_settles():
    model = _model(latent=2)
    images = make_split(200, train=False, seed=3).images
    s = elbo_surgery(model, images, n_samples=2000, grid="auto", generator=torch.Generator().manual_seed(0))
    mc = elbo_surgery(model, images, n_samples=4000, generator=torch.Generator().manual_seed(2))
    assert s.marginal_kl_method == "quadrature" and 0 <= s.marginal_kl_error < 1e-3
    assert abs(s.marginal_kl - mc.marginal_kl) < 4 * mc.marginal_kl_se + 1e-3
    with pytest.raises(ValueError, match="'auto' for d = 2"):
        elbo_surgery(_model(latent=3), images, grid="auto")


def test_the_aggregate_posterior_is_the_mixture_of_the_posteriors():
    mu = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0], [math.log(0.25)]], dtype=torch.float64)
    z = torch.tensor([[0.3], [1.9]], dtype=torch.float64)
    normal = torch.distributions.Normal(mu[:, 0], (0.5 * logvar[:, 0]).exp())
    expected = torch.log(0.5 * normal.log_prob(z).exp().sum(-1))
    assert torch.allclose(log_aggregate_posterior(z, mu, logvar), expected)
    with pytest.raises(ValueError, match="same d"):
        log_aggregate_posterior(torch.zeros(2, 3), mu, logvar)


def test_draw_kl_per_dimension():
    results = {0.0: torch.tensor([3.0, 0.0, 0.01]), 0.5: torch.tensor([2.0, 0.6, 0.5])}
    fig = draw_kl_per_dimension(results, 0.5)
    ax = fig.axes[0]
    assert [round(p.get_height(), 6) for p in ax.patches] == [2.0, 0.6, 0.5]
    assert "2 of 3" in ax.get_title() or "3 of 3" in ax.get_title()
    with pytest.raises(ValueError, match="no model"):
        draw_kl_per_dimension(results, 0.25)
    with pytest.raises(ValueError, match="non-empty"):
        draw_kl_per_dimension({}, 0.0)
