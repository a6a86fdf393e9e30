"""Measures for comparing a VAE with a plain autoencoder: reconstruction, prior fit, sample plausibility.

Notebook 06 puts the textbook VAE next to an autoencoder of the same widths and asks three questions
of each, with one number per question: how well does it reconstruct test images, how well does
the distribution of its codes match the prior N(0, I), and how plausible are the images it decodes
from prior samples. Introduced in notebook 06.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from .latent import _check_codes, _check_images, _check_model, _device, _positive_int


@torch.no_grad()
def reconstruction_error(model: nn.Module, images: torch.Tensor, batch_size: int = 2000) -> dict[str, float]:
    """Mean reconstruction error per image when ``images`` are decoded from their codes' means.

    A VAE decodes the posterior mean mu (no sampling), an autoencoder its code z, so both are
    deterministic and measured the same way. Returns ``{"bce": ..., "sq_error": ...}``: the
    Bernoulli negative log-likelihood -log p_theta(x|z) in nats per image, and the squared error
    ||x - x_hat||^2 summed over pixels, averaged over images. Introduced in notebook 06.
    """
    _check_model(model)
    _check_images(images)
    _positive_int(batch_size, "batch_size")
    if images.min() < 0 or images.max() > 1:
        raise ValueError("images must hold pixel intensities in [0, 1]")
    was_training = model.training
    model.eval()
    device = _device(model)
    bce = sq = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        code = model.encode(x)
        logits = model.decode_logits(code[0] if isinstance(code, tuple) else code)
        bce += F.binary_cross_entropy_with_logits(logits, x, reduction="sum").item()
        sq += (torch.sigmoid(logits) - x).pow(2).sum().item()
    model.train(was_training)
    return {"bce": bce / len(images), "sq_error": sq / len(images)}


def fit_gaussian(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean (d,) and covariance (d, d) of ``codes`` (N, d), in float64: a Gaussian fitted by moments.

    Introduced in notebook 06.
    """
    _check_codes(codes, dim=None)
    if len(codes) <= codes.shape[1]:
        raise ValueError(f"need more codes than dimensions to fit a covariance, got {tuple(codes.shape)}")
    c = codes.detach().double().cpu()
    mean = c.mean(dim=0)
    centred = c - mean
    cov = centred.T @ centred / (len(c) - 1)
    return mean, cov


def gaussian_kl_to_prior(mean: torch.Tensor, cov: torch.Tensor) -> float:
    """KL(N(mean, cov) || N(0, I)) = 1/2 (tr cov + |mean|^2 - d - log det cov), in nats.

    0 exactly when ``mean`` is 0 and ``cov`` is I. Raises ``ValueError`` unless ``cov`` is a
    symmetric positive definite (d, d) matrix matching ``mean`` (d,). Introduced in notebook 06.
    """
    if not isinstance(mean, torch.Tensor) or not isinstance(cov, torch.Tensor) or mean.ndim != 1:
        raise ValueError("mean must be a 1-D tensor and cov a 2-D tensor")
    d = mean.shape[0]
    if cov.shape != (d, d):
        raise ValueError(f"cov must have shape ({d}, {d}) to match mean, got {tuple(cov.shape)}")
    mean, cov = mean.double(), cov.double()
    if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
        raise ValueError("mean and cov must be finite")
    if not torch.allclose(cov, cov.T, rtol=1e-6, atol=1e-9):
        raise ValueError("cov must be symmetric")
    chol, info = torch.linalg.cholesky_ex(cov)
    if info.item() != 0:
        raise ValueError("cov must be positive definite")
    log_det = 2 * torch.log(torch.diagonal(chol)).sum()
    return 0.5 * (torch.trace(cov) + mean @ mean - d - log_det).item()


def prior_fit_kl(codes: torch.Tensor) -> float:
    """How far the codes' distribution is from N(0, I): the KL of a Gaussian fitted to them.

    :func:`fit_gaussian` then :func:`gaussian_kl_to_prior`. A Gaussian fit sees only scale,
    shift and correlation, not holes, so 0 is necessary but not sufficient for a good fit.
    Introduced in notebook 06.
    """
    return gaussian_kl_to_prior(*fit_gaussian(codes))


@torch.no_grad()
def nearest_distance(queries: torch.Tensor, reference: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``queries`` (M, D), the Euclidean distance to its nearest row of ``reference`` (N, D).

    Returns ``(distance, index)``, both of shape (M,), on ``reference``'s device; computed in
    chunks of ``batch_size`` queries with |a - b|^2 = |a|^2 - 2 a.b + |b|^2. Introduced in
    notebook 06, in pixel space (how close does a decoded prior sample come to a training image?)
    and in latent space (inside :func:`hole_fraction`).
    """
    for name, t in (("queries", queries), ("reference", reference)):
        if not isinstance(t, torch.Tensor) or t.ndim != 2 or len(t) == 0 or not t.is_floating_point():
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a non-empty float tensor of shape (rows, features), got {shape}")
    if queries.shape[1] != reference.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} features but reference has {reference.shape[1]}")
    _positive_int(batch_size, "batch_size")
    ref = reference.float()
    ref_t, ref_sq = ref.T.contiguous(), ref.pow(2).sum(dim=1)
    dists, idxs = [], []
    for start in range(0, len(queries), batch_size):
        q = queries[start : start + batch_size].to(ref.device, torch.float32)
        # |b|^2 - 2 a.b in one fused call; |a|^2 is the same along a row, so it is added after the min.
        partial = torch.addmm(ref_sq, q, ref_t, alpha=-2)
        best, idx = partial.min(dim=1)
        dists.append((best + q.pow(2).sum(dim=1)).clamp_min(0).sqrt())
        idxs.append(idx)
    return torch.cat(dists), torch.cat(idxs)


def hole_fraction(z: torch.Tensor, train_codes: torch.Tensor, test_codes: torch.Tensor, quantile: float = 0.99) -> float:
    """The share of the points ``z`` that land in a hole of the code distribution.

    A point lies in a hole when it is farther from every training code than ``quantile`` of the
    test codes are: the codes there are sparser than at almost every real image the model has not
    seen. It is a nearest-neighbour density estimate, and it needs no units: stretching the whole
    latent space leaves it unchanged. ``z``, ``train_codes`` and ``test_codes`` are (N, d)
    tensors with the same d. Introduced in notebook 06.
    """
    _check_codes(z, "z", dim=None)
    _check_codes(train_codes, "train_codes", dim=z.shape[1])
    _check_codes(test_codes, "test_codes", dim=z.shape[1])
    if not (isinstance(quantile, float) and 0 < quantile < 1):
        raise ValueError(f"quantile must be a float strictly between 0 and 1, got {quantile!r}")
    reference = train_codes.detach().float().cpu()
    typical, _ = nearest_distance(test_codes.detach().float().cpu(), reference)
    threshold = torch.quantile(typical, quantile)
    distance, _ = nearest_distance(z.detach().float().cpu(), reference)
    return (distance > threshold).float().mean().item()


def total_variation(labels_a: torch.Tensor, labels_b: torch.Tensor, n_classes: int) -> float:
    """Total variation distance between the class shares of two sets of labels: 1/2 sum_k |p_k - q_k|.

    0 when the classes occur in the same proportions, 1 when the two sets share no class.
    Notebook 06 compares the classes of prior samples (by their nearest training image) with the
    classes of the data. Introduced in notebook 06.
    """
    _positive_int(n_classes, "n_classes")
    shares = []
    for name, labels in (("labels_a", labels_a), ("labels_b", labels_b)):
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or len(labels) == 0 or labels.is_floating_point():
            raise ValueError(f"{name} must be a non-empty 1-D integer tensor of class labels")
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(f"{name} must lie in [0, {n_classes - 1}]")
        shares.append(torch.bincount(labels.cpu(), minlength=n_classes).double() / len(labels))
    return 0.5 * (shares[0] - shares[1]).abs().sum().item()


def markdown_table(columns: Mapping[str, Mapping[str, object]], formats: Mapping[str, str] | None = None) -> str:
    """A Markdown table with one row per measure and one column per model.

    ``columns`` maps a model's name to its ``{measure: value}``; every model must report the same
    measures. ``formats`` maps a measure to a format spec such as ``".1f"`` (default ``".3g"`` for
    numbers). A ``|`` in a name is escaped, so ``-log p(x|z)`` is safe. Display the result with
    ``IPython.display.Markdown``. Introduced in notebook 06.
    """
    if not isinstance(columns, Mapping) or not columns:
        raise ValueError("columns must be a non-empty dict of model name -> {measure: value}")
    names = list(columns)
    measures = list(columns[names[0]])
    for name in names:
        if not isinstance(columns[name], Mapping) or list(columns[name]) != measures:
            raise ValueError(f"every model must report the same measures in the same order; {name!r} differs")
    formats = dict(formats or {})
    unknown = set(formats) - set(measures)
    if unknown:
        raise ValueError(f"formats names measures that are not in the table: {sorted(unknown)}")

    def text(value) -> str:
        return str(value).replace("|", "\\|")   # a bare | would end the table's cell

    def cell(measure: str, value) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return "nan" if isinstance(value, float) and math.isnan(value) else format(value, formats.get(measure, ".3g"))
        return text(value)

    lines = ["| measure | " + " | ".join(text(n) for n in names) + " |", "|---|" + "---:|" * len(names)]
    for m in measures:
        lines.append(f"| {text(m)} | " + " | ".join(cell(m, columns[n][m]) for n in names) + " |")
    return "\n".join(lines)
