"""The convolutional VAE of notebook 08: the same interface as the MLP, its arithmetic, its costs."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from vae_lib.checkpoints import TrainConfig, checkpoint_path, load_checkpoint, train_or_load
from vae_lib.models.conv import ConvVAE, conv_output_size, conv_transpose_output_size, conv_vae_flops
from vae_lib.evaluation import LatentGrid, grid_log_joint, importance_log_weights, log_marginal_grid
from vae_lib.latent import draw_latent_explorer, latent_codes
from vae_lib.models import VAEBase
from vae_lib.registry import build_model
from vae_lib.training import evaluate, fit, model_loss
from vae_lib.utils import set_seed

from splits import make_split


def test_shapes_through_the_interface():
    model = ConvVAE(latent_dim=3, channels=4)
    x = torch.rand(5, 784)
    logits, mu, logvar = model(x)
    assert isinstance(model, VAEBase)
    assert logits.shape == (5, 784) and mu.shape == logvar.shape == (5, 3)
    assert model.decode(mu).shape == (5, 784) and 0 <= model.decode(mu).min() and model.decode(mu).max() <= 1
    assert model.reconstruct(x).shape == (5, 784) and model.sample(7).shape == (7, 784)
    two = ConvVAE(latent_dim=2, channels=4, likelihood="discretized-logistic")
    assert two.decode_logits(torch.zeros(3, 2)).shape == (3, 2 * 784)   # one output channel per number per pixel
    assert (model.side_1, model.side_2, model.features) == (14, 7, 2 * 4 * 49)


def test_bad_input_gets_the_same_errors_as_the_mlp():
    model = ConvVAE(channels=4)
    with pytest.raises(ValueError, match=r"x.view\(-1, 784\)"):
        model.encode(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        model.decode(torch.rand(2, 3))
    with pytest.raises(ValueError, match="torch.Tensor"):
        model.encode([[0.0] * 784])
    for bad in ({"latent_dim": 0}, {"channels": 0}, {"channels": 2.5}, {"likelihood": "poisson"}):
        with pytest.raises(ValueError):
            ConvVAE(**{"latent_dim": 2, "channels": 4, **bad})


def test_the_same_seed_gives_the_same_weights():
    set_seed(3)
    a = build_model("conv", latent_dim=2, channels=4)
    set_seed(3)
    b = build_model("conv", latent_dim=2, channels=4)
    set_seed(4)
    c = build_model("conv", latent_dim=2, channels=4)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_checkpoint_round_trip():
    config = TrainConfig(dataset="mnist", model="conv", channels=4, epochs=1, batch_size=64)
    train, test = make_split(128), make_split(32, False)
    model, history = train_or_load(config, train, test, progress=False, log=None)
    again, history2 = load_checkpoint(checkpoint_path(config), config)
    assert isinstance(again, ConvVAE) and again.channels == 4 and history2.to_dict() == history.to_dict()
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), again.state_dict().values()))
    assert "_c4_" in checkpoint_path(config).name


def test_output_size_formulas_match_pytorch():
    for size in (5, 7, 14, 28, 29):
        for kernel, stride, padding in ((3, 1, 1), (4, 2, 1), (3, 2, 0), (5, 3, 2)):
            if size + 2 * padding < kernel:
                continue
            got = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, kernel, kernel), stride=stride,
                           padding=padding).shape[-1]
            assert conv_output_size(size, kernel, stride, padding) == got
            for output_padding in range(stride):
                if (size - 1) * stride - 2 * padding + kernel + output_padding < 1:
                    continue
                up = F.conv_transpose2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, kernel, kernel),
                                        stride=stride, padding=padding, output_padding=output_padding).shape[-1]
                assert conv_transpose_output_size(size, kernel, stride, padding, output_padding) == up
    assert conv_output_size(28, 4, 2, 1) == 14 and conv_transpose_output_size(14, 4, 2, 1) == 28
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(2, 5)
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose_output_size(7, 4, 2, 1, output_padding=2)
    with pytest.raises(ValueError, match="non-negative integer"):
        conv_output_size(28, 4, stride=-1)


def test_transposed_convolution_is_the_adjoint_of_convolution():
    """<conv(x), y> = <x, conv_transpose(y)> for the same weights: why the transposed one goes up."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randn(2, 6, 14, 14, generator=g, dtype=torch.float64)
    left = (F.conv2d(x, w, stride=2, padding=1) * y).sum()
    right = (x * F.conv_transpose2d(y, w, stride=2, padding=1)).sum()
    assert torch.allclose(left, right, rtol=1e-12)
    wrong = (x * F.conv_transpose2d(y, w.flip(-1), stride=2, padding=1)).sum()
    assert not torch.allclose(left, wrong, rtol=1e-3)


@pytest.mark.parametrize("channels, latent, likelihood", [(16, 2, "bernoulli"), (8, 16, "bernoulli"),
                                                          (4, 3, "gaussian-learned")])
def test_flops_match_pytorchs_flop_counter(channels, latent, likelihood):
    model = ConvVAE(latent_dim=latent, channels=channels, likelihood=likelihood)
    x = torch.rand(8, 784)
    with FlopCounterMode(display=False) as forward:
        model(x)
    with FlopCounterMode(display=False) as training:
        model_loss(model, x, reduction="sum", validate=False).loss.backward()
    flops = conv_vae_flops(model)
    assert forward.get_total_flops() == 8 * flops["forward"]
    assert training.get_total_flops() == 8 * flops["training"]
    with pytest.raises(ValueError, match="ConvVAE"):
        conv_vae_flops(build_model("vae"))


def test_fit_evaluate_estimators_and_explorer_serve_the_conv_vae_unchanged():
    set_seed(0)
    model = ConvVAE(latent_dim=2, channels=4)
    train, test = make_split(256), make_split(64, False, seed=1)
    before = evaluate(model, test)["loss"]
    history = fit(model, train, test, epochs=2, batch_size=32, lr=3e-3, progress=False)
    assert history.test_loss[-1] < before
    x = test.images[:6]
    log_w = importance_log_weights(model, x, 50, generator=torch.Generator().manual_seed(0))
    grid = LatentGrid(6.0, 121)
    exact = log_marginal_grid(grid_log_joint(model, x, grid), grid)
    assert (log_w.mean(0) <= exact.log_px + exact.error + 1e-6).all(), "ELBO <= log p(x)"
    codes = latent_codes(model, test.images)
    fig = draw_latent_explorer(model, 0.5, -0.5, codes, test.labels, test.classes)
    assert len(fig.axes) == 2
