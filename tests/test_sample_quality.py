"""Sample quality through a judge (notebook 12): the Fréchet distance against its closed form, and the
judge's confident share and spread over classes on images whose labels are known."""
import math

import pytest
import torch
import torch.nn as nn

from vae_lib.downstream import Judge
from vae_lib.sample_quality import confident_share, effective_classes, frechet_distance, sample_quality


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_frechet_distance_of_diagonal_gaussians_is_the_sum_of_squared_gaps():
    """For diagonal covariances the distance is sum_j (m_aj - m_bj)^2 + (s_aj - s_bj)^2."""
    n = 200_000
    a = torch.randn(n, 3, generator=gen(0), dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    b = torch.randn(n, 3, generator=gen(1), dtype=torch.float64) * torch.tensor([3.0, 2.0, 0.5], dtype=torch.float64) \
        + torch.tensor([1.0, 0.0, -2.0], dtype=torch.float64)
    expected = (1 + 0 + 4) + (2 ** 2 + 0 + 0)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-9)
    assert abs(frechet_distance(a, a)) < 1e-6
    with pytest.raises(ValueError, match="same number of features"):
        frechet_distance(a, b[:, :2])


class _FixedJudge(nn.Module):
    """A 'judge' that reads the class from the first pixels: logits are 10 x the first 3 pixels."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        return self.scale * x[:, :3]


def test_confident_share_and_effective_classes_read_the_judges_labels():
    judge = _FixedJudge()
    sure = torch.zeros(6, 784)
    sure[torch.arange(6), torch.tensor([0, 0, 1, 1, 2, 2])] = 1.0      # logits 10 vs 0: p = 0.99989
    unsure = torch.zeros(4, 784)                                        # logits all 0: p = 1/3 each
    assert confident_share(judge, torch.cat([sure, unsure])) == pytest.approx(0.6)
    assert effective_classes(judge, sure) == pytest.approx(3.0)
    assert effective_classes(judge, sure[:2]) == pytest.approx(1.0)
    mixed = sure[[0, 1, 2]]                                            # classes 0, 0, 1
    assert effective_classes(judge, mixed) == pytest.approx(math.exp(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))))


def test_sample_quality_uses_the_judges_features():
    torch.manual_seed(0)
    judge = Judge(n_classes=10, hidden_dim=8)
    real = torch.rand(300, 784, generator=gen(2))
    same = torch.rand(300, 784, generator=gen(3))
    dark = 0.2 * torch.rand(300, 784, generator=gen(4))
    near, far = sample_quality(judge, same, real), sample_quality(judge, dark, real)
    assert set(near) == {"confident share", "effective classes", "Fréchet distance"}
    assert near["Fréchet distance"] < far["Fréchet distance"]
    assert judge.features(real).shape == (300, 8) and judge.features(real).dtype == torch.float64
