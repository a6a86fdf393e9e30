"""vae_lib.compare: the measures notebook 06 uses to put a VAE next to an autoencoder."""
import math

import pytest
import torch
import torch.nn.functional as F

from vae_lib.compare import (
    fit_gaussian, gaussian_kl_to_prior, hole_fraction, markdown_table, nearest_distance, prior_fit_kl,
    reconstruction_error, total_variation,
)
from vae_lib.losses import gaussian_kl
from vae_lib.models import VAE, AutoEncoder


def images(n=10, seed=0):
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(seed))


def test_reconstruction_error_decodes_the_codes_mean():
    torch.manual_seed(0)
    vae, ae, x = VAE(hidden_dim=8), AutoEncoder(hidden_dim=8), images(7)
    result = reconstruction_error(vae, x, batch_size=3)
    mu, _ = vae.encode(x)
    logits = vae.decode_logits(mu)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean().item()
    sq = (torch.sigmoid(logits) - x).pow(2).sum(1).mean().item()
    assert math.isclose(result["bce"], bce, rel_tol=1e-5) and math.isclose(result["sq_error"], sq, rel_tol=1e-5)
    # The autoencoder decodes its code; the result is deterministic.
    logits = ae.decode_logits(ae.encode(x))
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean().item()
    assert math.isclose(reconstruction_error(ae, x)["bce"], bce, rel_tol=1e-5)
    assert reconstruction_error(ae, x) == reconstruction_error(ae, x)


def test_reconstruction_error_rejects_bad_input():
    with pytest.raises(ValueError, match="VAE or AutoEncoder"):
        reconstruction_error(torch.nn.Identity(), images())
    with pytest.raises(ValueError, match="784"):
        reconstruction_error(VAE(hidden_dim=8), torch.rand(3, 10))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reconstruction_error(VAE(hidden_dim=8), images() * 255)


def test_fit_gaussian_recovers_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    true_cov = torch.tensor([[4.0, 1.0], [1.0, 2.0]])
    z = torch.randn(50000, 2, generator=g) @ torch.linalg.cholesky(true_cov).T + torch.tensor([1.0, -2.0])
    mean, cov = fit_gaussian(z)
    assert mean.dtype == cov.dtype == torch.float64
    assert torch.allclose(mean, torch.tensor([1.0, -2.0], dtype=torch.float64), atol=0.05)
    assert torch.allclose(cov, true_cov.double(), atol=0.1)
    with pytest.raises(ValueError, match="more codes than dimensions"):
        fit_gaussian(torch.randn(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        fit_gaussian(torch.tensor([[0.0, 1.0], [math.nan, 0.0], [1.0, 1.0]]))


def test_gaussian_kl_to_prior_matches_the_diagonal_closed_form():
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    var = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    expected = gaussian_kl(mean, var.log()).item()
    assert math.isclose(gaussian_kl_to_prior(mean, torch.diag(var)), expected, rel_tol=1e-9)
    assert gaussian_kl_to_prior(torch.zeros(2), torch.eye(2)) == 0.0


def test_gaussian_kl_to_prior_with_correlation():
    """A rotated diagonal covariance has the same KL as the diagonal one (trace and det are invariant)."""
    c, s = math.cos(0.7), math.sin(0.7)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([0.25, 9.0], dtype=torch.float64)) @ rot.T
    expected = gaussian_kl(torch.zeros(2), torch.tensor([0.25, 9.0]).log()).item()
    assert math.isclose(gaussian_kl_to_prior(torch.zeros(2), cov), expected, rel_tol=1e-6)


def test_gaussian_kl_to_prior_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        gaussian_kl_to_prior(torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_kl_to_prior(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_kl_to_prior(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="finite"):
        gaussian_kl_to_prior(torch.tensor([math.inf, 0.0]), torch.eye(2))
    with pytest.raises(ValueError, match="1-D"):
        gaussian_kl_to_prior(torch.zeros(1, 2), torch.eye(2))


def test_prior_fit_kl_is_small_for_prior_samples_and_large_for_scaled_ones():
    z = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
    assert prior_fit_kl(z) < 0.01
    # N(0, 10^2 I): KL = 1/2 * 2 * (100 - 1 - log 100) = 94.4
    assert math.isclose(prior_fit_kl(10 * z), 99 - math.log(100), rel_tol=0.03)


def test_nearest_distance_finds_the_closest_row():
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(50, 6, generator=g)
    queries = torch.randn(9, 6, generator=g)
    dist, idx = nearest_distance(queries, reference, batch_size=4)
    brute = torch.cdist(queries, reference)
    assert torch.equal(idx, brute.argmin(dim=1))
    assert torch.allclose(dist, brute.min(dim=1).values, atol=1e-4)
    # A query equal to a reference row is at distance 0 from it.
    dist, idx = nearest_distance(reference[3:4], reference)
    assert idx.item() == 3 and dist.item() < 1e-3


def test_nearest_distance_rejects_bad_input():
    with pytest.raises(ValueError, match="features"):
        nearest_distance(torch.zeros(2, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="non-empty float"):
        nearest_distance(torch.zeros(0, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="non-empty float"):
        nearest_distance(torch.zeros(2, 3, dtype=torch.long), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="batch_size"):
        nearest_distance(torch.zeros(2, 3), torch.zeros(4, 3), batch_size=0)


def test_hole_fraction_finds_points_away_from_the_codes():
    g = torch.Generator().manual_seed(0)
    # Codes on two blobs at (-3, 0) and (3, 0); the origin between them is a hole.
    centres = torch.tensor([[-3.0, 0.0], [3.0, 0.0]])
    train_codes = centres[torch.arange(4000) % 2] + 0.3 * torch.randn(4000, 2, generator=g)
    test_codes = centres[torch.arange(1000) % 2] + 0.3 * torch.randn(1000, 2, generator=g)
    inside = centres[torch.arange(200) % 2] + 0.1 * torch.randn(200, 2, generator=g)
    between = 0.2 * torch.randn(200, 2, generator=g)
    assert hole_fraction(inside, train_codes, test_codes) < 0.02
    assert hole_fraction(between, train_codes, test_codes) == 1.0
    # New codes from the data's own distribution land in holes about 1 - quantile of the time.
    fresh = centres[torch.arange(4000) % 2] + 0.3 * torch.randn(4000, 2, generator=g)
    assert hole_fraction(fresh, train_codes, test_codes, quantile=0.9) == pytest.approx(0.1, abs=0.03)


def test_hole_fraction_does_not_depend_on_the_scale_of_the_code():
    g = torch.Generator().manual_seed(1)
    train_codes, test_codes, z = (torch.randn(n, 2, generator=g) for n in (2000, 500, 300))
    z = 2 * z  # partly outside the codes
    assert hole_fraction(z, train_codes, test_codes) == hole_fraction(10 * z, 10 * train_codes, 10 * test_codes)


def test_hole_fraction_rejects_bad_input():
    codes = torch.randn(20, 2)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        hole_fraction(codes, torch.randn(20, 3), codes)
    with pytest.raises(ValueError, match="quantile"):
        hole_fraction(codes, codes, codes, quantile=1.0)
    with pytest.raises(ValueError, match="quantile"):
        hole_fraction(codes, codes, codes, quantile=99)
    with pytest.raises(ValueError, match="NaN"):
        hole_fraction(torch.full((2, 2), math.nan), codes, codes)


def test_total_variation_of_class_shares():
    a = torch.tensor([0, 0, 1, 1])
    assert total_variation(a, a.flip(0), 2) == 0.0
    assert total_variation(torch.tensor([0, 0]), torch.tensor([1, 1]), 2) == 1.0
    # shares (1, 0, 0) against (1/3, 1/3, 1/3): 1/2 (2/3 + 1/3 + 1/3) = 2/3
    assert total_variation(torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2]), 3) == pytest.approx(2 / 3)


def test_total_variation_rejects_bad_input():
    with pytest.raises(ValueError, match="integer tensor"):
        total_variation(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="non-empty"):
        total_variation(torch.tensor([], dtype=torch.long), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        total_variation(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="n_classes"):
        total_variation(torch.tensor([0]), torch.tensor([0]), 0)


def test_markdown_table_has_a_row_per_measure_and_a_column_per_model():
    table = markdown_table({"VAE": {"a": 1.23456, "b": 2}, "AE": {"a": 0.5, "b": 3}}, formats={"a": ".2f"})
    lines = table.splitlines()
    assert lines[0] == "| measure | VAE | AE |"
    assert lines[2] == "| a | 1.23 | 0.50 |" and lines[3] == "| b | 2 | 3 |"
    # A | in a measure's name must not split the cell.
    assert markdown_table({"VAE": {"-log p(x|z)": 1.0}}).splitlines()[2] == "| -log p(x\\|z) | 1 |"


def test_markdown_table_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        markdown_table({})
    with pytest.raises(ValueError, match="same measures"):
        markdown_table({"VAE": {"a": 1}, "AE": {"b": 1}})
    with pytest.raises(ValueError, match="not in the table"):
        markdown_table({"VAE": {"a": 1}}, formats={"z": ".1f"})
