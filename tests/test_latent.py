"""vae_lib.latent: codes, the prior's quantile grid, interpolation and the latent-space plots."""
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vae_lib.latent import (  # noqa: E402
    aggregate_posterior_sample, decode, draw_latent_explorer, interpolate, latent_codes, plot_aggregate_posterior,
    plot_latent_scatter, plot_manifold, plot_prior_contours, quantile_grid,
)
from vae_lib.models import VAE, AutoEncoder  # noqa: E402

CLASSES = ("zero", "one", "two")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def tiny_vae(latent_dim=2):
    torch.manual_seed(0)
    return VAE(latent_dim=latent_dim, hidden_dim=8)


def tiny_ae(latent_dim=2):
    torch.manual_seed(0)
    return AutoEncoder(latent_dim=latent_dim, hidden_dim=8)


def images(n=12, seed=0):
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(seed))


def labels(n=12):
    return torch.arange(n) % len(CLASSES)


# --------------------------------------------------------------------------- codes


def test_latent_codes_are_the_posterior_means_and_the_autoencoders_codes():
    vae, ae, x = tiny_vae(), tiny_ae(), images(10)
    codes = latent_codes(vae, x, batch_size=3)  # several batches, the last one short
    mu, _ = vae.encode(x)
    assert codes.shape == (10, 2) and codes.device.type == "cpu"
    assert torch.allclose(codes, mu.detach())
    assert torch.allclose(latent_codes(ae, x), ae.encode(x).detach())


def test_latent_codes_of_a_conditional_vae_read_each_images_label():
    from vae_lib.models.conditional import ConditionalVAE

    torch.manual_seed(0)
    cvae, x, y = ConditionalVAE(latent_dim=2, hidden_dim=8, n_classes=3), images(7), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    assert torch.allclose(latent_codes(cvae, x, batch_size=3, labels=y), cvae.encode(x, y)[0].detach())
    with pytest.raises(ValueError, match="labels"):
        latent_codes(cvae, x)


def test_latent_codes_restore_the_training_mode_and_need_no_grad():
    vae = tiny_vae()
    vae.train()
    codes = latent_codes(vae, images(4))
    assert vae.training and not codes.requires_grad


def test_latent_codes_reject_bad_input():
    with pytest.raises(ValueError, match="VAE or AutoEncoder"):
        latent_codes(torch.nn.Linear(784, 2), images(3))
    with pytest.raises(ValueError, match="784"):
        latent_codes(tiny_vae(), torch.rand(3, 28, 28))
    with pytest.raises(ValueError, match=r"N >= 1"):
        latent_codes(tiny_vae(), torch.rand(0, 784))
    with pytest.raises(ValueError, match="batch_size"):
        latent_codes(tiny_vae(), images(3), batch_size=0)


def test_aggregate_posterior_sample_draws_mu_plus_sigma_eps():
    vae, x = tiny_vae(), images(6)
    z = aggregate_posterior_sample(vae, x, generator=torch.Generator().manual_seed(1), batch_size=4)
    mu, logvar = vae.encode(x)
    eps = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))  # the first batch's draw
    assert z.shape == (6, 2)
    assert torch.allclose(z[:4], (mu[:4] + torch.exp(0.5 * logvar[:4]) * eps).detach(), atol=1e-6)
    again = aggregate_posterior_sample(vae, x, generator=torch.Generator().manual_seed(1), batch_size=4)
    assert torch.equal(z, again)  # reproducible with a generator


def test_aggregate_posterior_sample_spreads_like_the_posterior():
    """With a huge batch of copies of one image, the draws have the posterior's mean and std."""
    vae = tiny_vae()
    x = images(1).repeat(20000, 1)
    z = aggregate_posterior_sample(vae, x, generator=torch.Generator().manual_seed(0))
    mu, logvar = vae.encode(x[:1])
    std = torch.exp(0.5 * logvar)[0].detach()
    # Four standard errors of a mean of 20000 draws: 4 std / sqrt(20000).
    assert torch.all((z.mean(0) - mu[0].detach()).abs() < 4 * std / math.sqrt(20000))
    assert torch.allclose(z.std(0), std, rtol=0.05)


def test_aggregate_posterior_sample_rejects_bad_input():
    with pytest.raises(ValueError, match="no posterior"):
        aggregate_posterior_sample(tiny_ae(), images(3))
    with pytest.raises(ValueError, match="784"):
        aggregate_posterior_sample(tiny_vae(), torch.rand(3, 10))
    with pytest.raises(ValueError, match="generator"):
        aggregate_posterior_sample(tiny_vae(), images(3), generator=0)


# --------------------------------------------------------------------------- grid and interpolation


def test_quantile_grid_sits_at_the_priors_quantiles():
    values, z = quantile_grid(4)
    normal = torch.distributions.Normal(0.0, 1.0)
    assert torch.allclose(normal.cdf(values), torch.tensor([0.125, 0.375, 0.625, 0.875]), atol=1e-6)
    assert torch.allclose(values, -values.flip(0), atol=1e-6)  # symmetric about 0
    assert z.shape == (16, 2)
    # Reading order: the top row has the largest z2, and z1 grows along each row.
    assert torch.allclose(z[:4, 1], values[-1].expand(4)) and torch.allclose(z[:4, 0], values)
    assert torch.allclose(z[-4:, 1], values[0].expand(4))
    assert torch.allclose(z[::4, 1], values.flip(0))


def test_quantile_grid_of_twenty_spans_1_96_standard_deviations():
    values, _ = quantile_grid(20)
    assert abs(values[-1].item() - 1.96) < 0.001 and abs(values[0].item() + 1.96) < 0.001


@pytest.mark.parametrize("n", [1, 0, 2.5, "10", True])
def test_quantile_grid_rejects_bad_sizes(n):
    with pytest.raises(ValueError, match="n must be an integer"):
        quantile_grid(n)


def test_interpolate_runs_straight_from_start_to_end():
    a, b = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([2.0, 1.0, 2.0])
    path = interpolate(a, b, 5)
    assert path.shape == (5, 3)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    assert torch.allclose(path[2], (a + b) / 2)
    steps = path[1:] - path[:-1]
    assert torch.allclose(steps, steps[0].expand_as(steps))  # equal steps: a straight line


def test_interpolate_rejects_bad_input():
    a = torch.zeros(2)
    with pytest.raises(ValueError, match="same shape"):
        interpolate(a, torch.zeros(3), 4)
    with pytest.raises(ValueError, match="1-D tensor"):
        interpolate(torch.zeros(1, 2), torch.zeros(1, 2), 4)
    with pytest.raises(ValueError, match="1-D tensor"):
        interpolate([0.0, 0.0], a, 4)
    with pytest.raises(ValueError, match="steps"):
        interpolate(a, a, 1)


def test_decode_returns_pixel_means_on_the_cpu():
    vae = tiny_vae()
    x = decode(vae, torch.zeros(3, 2))
    assert x.shape == (3, 784) and x.device.type == "cpu" and 0 <= x.min() and x.max() <= 1
    assert torch.allclose(x, vae.decode(torch.zeros(3, 2)).detach())
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        decode(vae, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="NaN"):
        decode(vae, torch.tensor([[math.nan, 0.0]]))


# --------------------------------------------------------------------------- plots


def test_plot_prior_contours_draws_one_circle_per_radius():
    _, ax = plt.subplots()
    plot_prior_contours(ax, radii=(1, 2))
    assert len(ax.lines) == 2
    x, y = ax.lines[1].get_data()
    assert abs(max(x) - 2) < 1e-3 and abs(min(y) + 2) < 1e-3
    for bad in [(), (0,), (-1,), (math.inf,)]:
        with pytest.raises(ValueError, match="radii"):
            plot_prior_contours(ax, radii=bad)


def test_plot_latent_scatter_colours_by_class_and_names_them():
    codes = torch.randn(30, 2)
    ax = plot_latent_scatter(codes, labels(30), CLASSES, prior=True, title="t")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(CLASSES)
    assert len(ax.collections) == 3 and len(ax.lines) == 3  # one scatter per class, three contours
    assert sum(len(c.get_offsets()) for c in ax.collections) == 30
    ax = plot_latent_scatter(codes, labels(30), CLASSES, max_points=10, legend=False)
    assert sum(len(c.get_offsets()) for c in ax.collections) == 10 and ax.get_legend() is None


def test_plot_latent_scatter_writes_each_class_name_on_its_cloud():
    """Not by colour alone: each class's name sits at the median of its codes."""
    lab = labels(30)
    codes = torch.randn(30, 2) + 10.0 * torch.stack([lab.float(), -lab.float()], 1)   # classes far apart
    ax = plot_latent_scatter(codes, lab, CLASSES, max_points=None)
    placed = {t.get_text(): t.get_position() for t in ax.texts}
    assert set(placed) == set(CLASSES)
    for k, name in enumerate(CLASSES):
        median = codes[lab == k].median(0).values     # torch's median of an even count is the lower one
        assert torch.allclose(torch.tensor(placed[name], dtype=torch.float32), median, atol=1.5)
    assert not plot_latent_scatter(codes, lab, CLASSES, names=False).texts


def test_plot_latent_scatter_rejects_bad_input():
    codes = torch.randn(6, 2)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_latent_scatter(torch.randn(6, 3), labels(6), CLASSES)
    with pytest.raises(ValueError, match="one per code"):
        plot_latent_scatter(codes, labels(5), CLASSES)
    with pytest.raises(ValueError, match="one per code"):
        plot_latent_scatter(codes, labels(6).float(), CLASSES)
    with pytest.raises(ValueError, match="name a class"):
        plot_latent_scatter(codes, labels(6) + 1, CLASSES)
    with pytest.raises(ValueError, match="class names"):
        plot_latent_scatter(codes, labels(6), "abc")
    with pytest.raises(ValueError, match="max_points"):
        plot_latent_scatter(codes, labels(6), CLASSES, max_points=0)


def test_plot_aggregate_posterior_draws_three_panels():
    fig = plot_aggregate_posterior(torch.randn(500, 2), lim=3.0, bins=20)
    assert len(fig.axes) == 3
    assert len(fig.axes[1].lines) == 1  # the N(0, 1) density
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_aggregate_posterior(torch.randn(10, 3))
    with pytest.raises(ValueError, match="lim"):
        plot_aggregate_posterior(torch.randn(10, 2), lim=0)
    with pytest.raises(ValueError, match="bins"):
        plot_aggregate_posterior(torch.randn(10, 2), bins=1)


def test_plot_manifold_tiles_n_by_n_decoded_images():
    ax = plot_manifold(tiny_vae(), n=5, title="m")
    image = ax.images[0].get_array()
    assert image.shape == (5 * 28, 5 * 28)
    top_left = decode(tiny_vae(), quantile_grid(5)[1][:1]).reshape(28, 28)
    assert torch.allclose(torch.as_tensor(image[:28, :28]), top_left, atol=1e-6)
    with pytest.raises(ValueError, match="2-D codes"):
        plot_manifold(tiny_vae(latent_dim=3))
    with pytest.raises(ValueError, match="n must be"):
        plot_manifold(tiny_vae(), n=1)


def test_draw_latent_explorer_decodes_the_point_for_one_model():
    vae = tiny_vae()
    codes = latent_codes(vae, images(12))
    fig = draw_latent_explorer(vae, 0.5, -1.0, codes, labels(), CLASSES)
    scatter, picture = fig.axes
    assert scatter.lines[-1].get_xdata()[0] == 0.5 and scatter.lines[-1].get_ydata()[0] == -1.0
    expected = vae.decode(torch.tensor([[0.5, -1.0]])).detach().reshape(28, 28)
    assert torch.allclose(torch.as_tensor(picture.images[0].get_array()), expected, atol=1e-6)


def test_draw_latent_explorer_sends_the_same_z_through_every_decoder():
    vae, ae = tiny_vae(), tiny_ae()
    x = images(12)
    models = {"VAE": vae, "autoencoder": ae}
    codes = {"VAE": latent_codes(vae, x), "autoencoder": latent_codes(ae, x)}
    fig = draw_latent_explorer(models, 1.0, 2.0, codes, labels(), CLASSES, lim=3.0)
    assert len(fig.axes) == 4
    assert fig.axes[0].get_xlim() == (-3.0, 3.0)
    for ax, model in ((fig.axes[1], vae), (fig.axes[3], ae)):
        expected = model.decode(torch.tensor([[1.0, 2.0]])).detach().reshape(28, 28)
        assert torch.allclose(torch.as_tensor(ax.images[0].get_array()), expected, atol=1e-6)
    assert "autoencoder" in fig.axes[3].get_title()


def test_draw_latent_explorer_rejects_bad_input():
    vae = tiny_vae()
    codes = latent_codes(vae, images(12))
    with pytest.raises(ValueError, match="finite number"):
        draw_latent_explorer(vae, math.nan, 0.0, codes, labels(), CLASSES)
    with pytest.raises(ValueError, match="finite number"):
        draw_latent_explorer(vae, "1", 0.0, codes, labels(), CLASSES)
    with pytest.raises(ValueError, match="2-D codes"):
        draw_latent_explorer(tiny_vae(3), 0.0, 0.0, torch.zeros(12, 3), labels(), CLASSES)
    with pytest.raises(ValueError, match="same keys"):
        draw_latent_explorer({"VAE": vae}, 0.0, 0.0, {"AE": codes}, labels(), CLASSES)
    with pytest.raises(ValueError, match="non-empty"):
        draw_latent_explorer({}, 0.0, 0.0, {}, labels(), CLASSES)
    with pytest.raises(ValueError, match="one per code"):
        draw_latent_explorer(vae, 0.0, 0.0, codes, labels(5), CLASSES)
    with pytest.raises(ValueError, match="lim"):
        draw_latent_explorer(vae, 0.0, 0.0, codes, labels(), CLASSES, lim=-1)


def test_draw_latent_explorer_works_inside_the_slider_explorer():
    import ipywidgets as widgets

    from vae_lib.widgets import slider_explorer

    vae = tiny_vae()
    codes = latent_codes(vae, images(12))
    calls = []

    def draw(z1, z2):
        calls.append((z1, z2))
        return draw_latent_explorer(vae, z1, z2, codes, labels(), CLASSES)

    sliders = {"z1": widgets.FloatSlider(value=0.0, min=-3, max=3), "z2": widgets.FloatSlider(value=1.0, min=-3, max=3)}
    slider_explorer(draw, sliders)
    assert calls == [(0.0, 1.0)]  # drawn once, headless, with the initial values
