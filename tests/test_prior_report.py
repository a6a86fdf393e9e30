"""Notebook 12's table: the bounds from independent draws and every column of measure_prior."""
import math

import torch

from vae_lib.downstream import Judge
from vae_lib.models import VAE
from vae_lib.prior_report import bounds, measure_prior
from vae_lib.priors import MixtureOfGaussians, with_prior


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_bounds_use_independent_draws_and_see_the_prior():
    torch.manual_seed(0)
    model = VAE(hidden_dim=16).eval()
    x = torch.rand(20, 784, generator=gen(0))
    b = bounds(model, x, k=50, elbo_samples=50, generator=gen(1))
    assert b.negative_iwae <= b.negative_elbo + 4 * b.gap_se and b.gap > -4 * b.gap_se
    assert math.isclose(b.gap, b.negative_elbo - b.negative_iwae, abs_tol=1e-9), "the gap is the difference"
    shifted = with_prior(model, MixtureOfGaussians(2, 1, init_scale=0.0))   # one component: N(0, I) again
    again = bounds(shifted, x, k=50, elbo_samples=50, generator=gen(1))
    assert math.isclose(again.negative_elbo, b.negative_elbo, rel_tol=1e-9), "the same prior, the same numbers"
    with torch.no_grad():
        shifted.prior.means += 3.0                                           # a prior far from the codes
    far = bounds(shifted, x, k=50, elbo_samples=50, generator=gen(1))
    assert far.negative_elbo > b.negative_elbo + 1.0


def test_measure_prior_reports_every_column():
    torch.manual_seed(0)
    model = VAE(hidden_dim=16).eval()
    judge = Judge(hidden_dim=8).eval()
    test_images, train_images = torch.rand(60, 784, generator=gen(2)), torch.rand(200, 784, generator=gen(3))
    r = measure_prior(model, test_images, train_images, judge, n_eval=30, k=10, n_samples=100)
    expected = {"negative_elbo", "negative_elbo_se", "negative_iwae", "negative_iwae_se", "gap", "gap_se", "average KL",
                "average KL se", "I_q", "I_q se", "KL(q(z) || p(z))", "KL(q(z) || p(z)) error", "active units",
                "samples in holes", "confident share", "effective classes", "Fréchet distance"}
    assert set(r) == expected
    assert 0 <= r["samples in holes"] <= 1 and 0 <= r["confident share"] <= 1 and 1 <= r["effective classes"] <= 10
    assert r["KL(q(z) || p(z))"] >= -0.01 and r["average KL se"] == 0, "closed-form KL for the standard normal"
    assert r["Fréchet distance"] > 0
