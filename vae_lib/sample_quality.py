"""How good are a model's samples? Three numbers from notebook 11's judge, for notebook 12's priors.

* :func:`confident_share`: the share of samples the judge labels with probability at least 0.9. An
  image between two classes, or no garment at all, gets no confident label.
* :func:`effective_classes`: exp of the entropy of the judge's labels over the samples, from 1 (every
  sample one class) to the number of classes (all equally often): the spread over classes.
* :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to the judge's features of
  the samples and of real images, ||m1 - m2||^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2) (Heusel et al.,
  2017, with the judge's hidden layer in place of Inception's). 0 for identical statistics; it is
  biased upwards for few images, so compare numbers computed from equally many.

:func:`sample_quality` computes all three. Introduced in notebook 12.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def _check_images(images, what: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 2 or len(images) < 2 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{what} must be a float tensor of flat images (N, D) with N >= 2, got {got}")


@torch.no_grad()
def _probabilities(judge: nn.Module, images: torch.Tensor, batch_size: int = 4000) -> torch.Tensor:
    was_training = judge.training
    judge.eval()
    device = next(judge.parameters()).device
    out = torch.cat([torch.softmax(judge(images[s:s + batch_size].to(device)), 1).cpu().double()
                     for s in range(0, len(images), batch_size)])
    judge.train(was_training)
    return out


def confident_share(judge: nn.Module, images: torch.Tensor, threshold: float = 0.9) -> float:
    """The share of ``images`` whose most probable class the judge gives at least ``threshold``. Notebook 12."""
    _check_images(images, "images")
    if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold!r}")
    return (_probabilities(judge, images).max(1).values >= threshold).double().mean().item()


def effective_classes(judge: nn.Module, images: torch.Tensor) -> float:
    """exp(entropy) of the judge's labels of ``images``: how many classes the images spread over. Notebook 12."""
    _check_images(images, "images")
    probs = _probabilities(judge, images)
    shares = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double() / len(probs)
    return math.exp(-(torch.xlogy(shares, shares)).sum().item())


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b`` (features, (N, F) each).

    ||m_a - m_b||^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2), in float64; the middle term's square
    root through symmetric eigendecompositions, so it is exact for positive semi-definite covariances.
    Notebook 12.
    """
    for t, what in ((a, "a"), (b, "b")):
        _check_images(t, what)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b need the same number of features, got {a.shape[1]} and {b.shape[1]}")
    a, b = a.double().cpu(), b.double().cpu()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root = _sqrt_psd(cov_a)
    cross = _sqrt_psd(root @ cov_b @ root).trace()
    return ((mean_a - mean_b) ** 2).sum().item() + (cov_a.trace() + cov_b.trace() - 2 * cross).item()


def sample_quality(judge, samples: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """The three numbers for ``samples`` against ``real`` images, in a dict: ``"confident share"``,
    ``"effective classes"`` and ``"Fréchet distance"`` (in the judge's features). Notebook 12."""
    _check_images(samples, "samples")
    _check_images(real, "real")
    return {"confident share": confident_share(judge, samples),
            "effective classes": effective_classes(judge, samples),
            "Fréchet distance": frechet_distance(judge.features(samples), judge.features(real))}
