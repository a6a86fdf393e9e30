"""The MADE decoder of notebook 10: autoregressive by construction, checked with gradients."""
import pytest
import torch

from vae_lib.models.made import MADEHiddenVAE, MADEVAE, MaskedLinear, made_masks
from vae_lib.evaluation import importance_log_weights
from vae_lib.likelihoods import binarize
from vae_lib.registry import build_model
from vae_lib.training import fit, model_loss
from vae_lib.utils import set_seed

from splits import make_split


def test_masks_connect_each_output_only_to_earlier_pixels():
    to_hidden, to_output = made_masks(6, 10)
    assert to_hidden.shape == (10, 6) and to_output.shape == (6, 10)
    reach = (to_output @ to_hidden) > 0          # output j can see pixel i through some hidden unit
    assert not reach.triu().any(), "an output sees its own pixel or a later one"
    assert reach[5, :5].all(), "the last output should see every earlier pixel"
    with pytest.raises(ValueError, match="two pixels"):
        made_masks(1, 4)
    with pytest.raises(ValueError, match="mask must have shape"):
        MaskedLinear(3, 2, torch.ones(3, 2))


def test_every_pixel_but_the_last_feeds_a_hidden_unit_at_the_notebooks_size():
    """At (784, 500) the degrees must reach D - 1: with degrees 1 + k % (D - 1) they stopped at 500, and
    pixels 501-784 reached no hidden unit (the ordering test above passes with that bug: a missing
    connection violates no order)."""
    to_hidden, to_output = made_masks(784, 500)
    feeds = to_hidden.sum(0) > 0                       # pixel i reaches at least one hidden unit
    assert feeds[:-1].all() and not feeds[-1], f"pixels reaching no hidden unit: {(~feeds[:-1]).nonzero().flatten()[:5]}"
    informed = to_output.sum(1) > 0                    # output j reads at least one hidden unit
    assert informed[1:].all() and not informed[0]
    degrees = to_hidden.sum(1)                         # unit k sees m_k pixels: its degree
    assert degrees.min() == 1 and degrees.max() == 783 and (degrees.diff() >= 0).all()
    assert (degrees.float().diff().max() - 783 / 499) < 1.01, "the degrees are not spread evenly"


@pytest.mark.parametrize("cls", [MADEVAE, MADEHiddenVAE])
def test_the_decoder_is_autoregressive_and_sees_z(cls):
    """Every path (MADE, direct connections, z) respects the order: output j never sees pixel j or later."""
    set_seed(0)
    model = cls(latent_dim=3, hidden_dim=64)
    x = torch.rand(1, 784, requires_grad=True)
    z = torch.randn(1, 3, requires_grad=True)
    logits = model.decode_logits(z, x=x)
    for j in (0, 1, 100, 783):
        gx, gz = torch.autograd.grad(logits[0, j], (x, z), retain_graph=True)
        assert (gx[0, j:] == 0).all(), f"output {j} depends on pixel {j} or later"
        assert gz.abs().sum() > 0, f"output {j} ignores z"
    gx, _ = torch.autograd.grad(logits[0, 500], (x, z))
    assert gx[0, :500].abs().sum() > 0


def test_z_reaches_the_hidden_layer_only_in_the_control():
    set_seed(0)
    x, z = torch.rand(2, 784), torch.randn(2, 3, requires_grad=True)
    for cls, reaches in ((MADEVAE, False), (MADEHiddenVAE, True)):
        model = cls(latent_dim=3, hidden_dim=64)
        grad = torch.autograd.grad(model._hidden_input(x, z).sum(), z, allow_unused=True)[0]
        assert (grad is not None and grad.abs().sum() > 0) == reaches, f"{cls.__name__}: does z reach the hidden layer?"
    assert build_model("made-hidden", latent_dim=3, hidden_dim=64).z_hidden.weight.shape == (64, 3)


@pytest.mark.parametrize("cls", [MADEVAE, MADEHiddenVAE])
def test_it_needs_the_image_to_score_and_samples_pixel_by_pixel(cls):
    set_seed(0)
    model = cls(latent_dim=2, hidden_dim=32)
    with pytest.raises(ValueError, match="pass decode_logits"):
        model.decode_logits(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="one number per pixel"):
        MADEVAE(likelihood="gaussian-learned")
    z = torch.randn(4, 2)
    samples, means = model.ancestral(z, torch.Generator().manual_seed(1))
    assert set(samples.unique().tolist()) <= {0.0, 1.0} and ((means > 0) & (means < 1)).all()
    # The incremental sampler gives the same conditionals as one teacher-forced pass over its own draws.
    assert torch.allclose(torch.sigmoid(model.decode_logits(z, x=samples)), means, atol=1e-5)
    assert model.sample(3, generator=torch.Generator().manual_seed(2)).shape == (3, 784)


def test_fit_and_importance_weights_serve_it_unchanged():
    set_seed(0)
    model = MADEVAE(latent_dim=2, hidden_dim=32)
    train = make_split(128)
    history = fit(model, train, epochs=2, batch_size=32, lr=3e-3, binarize=True, progress=False)
    assert history.train_loss[-1] < history.train_loss[0]
    x = binarize(make_split(8, False).images, torch.Generator().manual_seed(0))
    mu, logvar = torch.zeros(8, 2), torch.zeros(8, 2)      # q = the prior: the weights are log p(x | z)
    log_w = importance_log_weights(model, x, 10, q=(mu, logvar), generator=torch.Generator().manual_seed(0))
    eps = torch.randn((10, 8, 2), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # Each (sample, image) pair scored on its own: image n teacher-forces its own decoder pass.
        loop = torch.tensor([[-torch.nn.functional.binary_cross_entropy_with_logits(
            model.decode_logits(eps[s, n:n + 1].float(), x=x[n:n + 1]), x[n:n + 1], reduction="sum").item()
            for n in range(8)] for s in range(10)], dtype=torch.float64)
    assert torch.allclose(log_w, loop, rtol=0, atol=1e-3), "the images are paired with the wrong samples"
    torch.manual_seed(5)
    assert torch.isfinite(model_loss(model, x, reduction="none").loss).all()
