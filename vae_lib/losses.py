"""The negative ELBO, term by term.

For one image x with posterior q_phi(z|x) = N(mu, diag(sigma^2)) and prior p(z) = N(0, I):

    -ELBO(x) = E_q[-log p_theta(x|z)] + KL(q_phi(z|x) || p(z))
             =        reconstruction   +        kl

Both terms are summed over pixels and latent dimensions and reported per image. The
reconstruction term uses one sample z (the reparameterized draw of the forward pass).
Introduced in notebook 04 (the KL's derivation is notebook 03's).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .likelihoods import Likelihood, get_likelihood

REDUCTIONS = ("mean", "sum", "none")


def check_pixels(x: torch.Tensor, likelihood: "Likelihood | str" = "bernoulli", name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a finite (N, D) float tensor in the likelihood's support.

    For the Bernoulli: pixel intensities in [0, 1]. Each likelihood's own check
    (:meth:`vae_lib.likelihoods.Likelihood.check`). Introduced in notebook 04.
    """
    get_likelihood(likelihood).check(x, name)


def _reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_image.mean()
    if reduction == "sum":
        return per_image.sum()
    if reduction == "none":
        return per_image
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_pair(recon: torch.Tensor, x: torch.Tensor, what: str) -> None:
    if not isinstance(recon, torch.Tensor) or recon.shape != x.shape:
        shape = tuple(recon.shape) if isinstance(recon, torch.Tensor) else type(recon).__name__
        raise ValueError(f"{what} must have the shape of x {tuple(x.shape)}, got {shape}")
    if not torch.isfinite(recon).all():
        raise ValueError(f"{what} contains NaN or inf (has training diverged?)")


def bernoulli_nll(recon_logits: torch.Tensor, x: torch.Tensor, reduction: str = "none", validate: bool = True) -> torch.Tensor:
    """-log p_theta(x|z) for Bernoulli pixels with logits ``recon_logits``: BCE summed over pixels.

    Computed from logits (``binary_cross_entropy_with_logits``), which stays finite where the
    seed's sigmoid-then-BCE saturates. Per image unless ``reduction`` is ``mean`` or ``sum``.
    Introduced in notebook 04.
    """
    if validate:
        check_pixels(x, "bernoulli")
        _check_pair(recon_logits, x, "recon_logits")
    per_image = F.binary_cross_entropy_with_logits(recon_logits, x, reduction="none").sum(dim=-1)
    return _reduce(per_image, reduction)


def gaussian_nll(
    recon_mean: torch.Tensor, x: torch.Tensor, reduction: str = "none", constant: bool = False, validate: bool = True
) -> torch.Tensor:
    """-log p_theta(x|z) for p_theta(x|z) = N(recon_mean, I): ||x - recon_mean||^2 / 2 per image.

    This is the textbook VAE's "MSE for continuous data". With ``constant`` the normaliser
    D/2 log(2 pi) is added, making it a true negative log density. Introduced in notebook 04.
    """
    if validate:
        check_pixels(x, "gaussian")
        _check_pair(recon_mean, x, "recon_mean")
    per_image = 0.5 * (x - recon_mean).pow(2).sum(dim=-1)
    if constant:
        per_image = per_image + 0.5 * x.shape[-1] * math.log(2 * math.pi)
    return _reduce(per_image, reduction)


def bernoulli_entropy(x: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """The entropy of Bernoulli(x) summed over pixels: the floor of :func:`bernoulli_nll` at ``x``.

    -sum_i [x_i log x_i + (1 - x_i) log(1 - x_i)], with 0 log 0 = 0. For grey pixels the
    reconstruction term can never go below it, even for a perfect decoder. Introduced in notebook 04.
    """
    check_pixels(x, "bernoulli")
    per_image = -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x)).sum(dim=-1)
    return _reduce(per_image, reduction)


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """KL(N(mu_j, exp(logvar_j)) || N(0, 1)) of each latent dimension j: the shape of ``mu``.

    -1/2 (1 + log sigma_j^2 - mu_j^2 - sigma_j^2). Summed over j it is :func:`gaussian_kl`; kept
    apart it shows which dimensions carry information (notebook 10). Derived in notebook 03.
    """
    if validate:
        if not isinstance(mu, torch.Tensor) or not isinstance(logvar, torch.Tensor) or mu.shape != logvar.shape:
            raise ValueError("mu and logvar must be tensors of the same shape (batch, latent_dim)")
        if mu.ndim < 1:
            raise ValueError("mu and logvar need at least one (latent) dimension")
        if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
            raise ValueError("mu or logvar contains NaN or inf (has training diverged?)")
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "none", validate: bool = True) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) in closed form, summed over latent dimensions.

    -1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2), the textbook VAE's formula. Derived in
    notebook 03.
    """
    return _reduce(gaussian_kl_per_dim(mu, logvar, validate).sum(dim=-1), reduction)


@dataclass
class LossTerms:
    """The negative ELBO and its two terms, each reduced the same way. Notebook 04."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


def vae_loss(
    recon: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    likelihood: "Likelihood | str" = "bernoulli",
    beta: float = 1.0,
    reduction: str = "mean",
    validate: bool = True,
) -> LossTerms:
    """The (beta-weighted) negative ELBO ``recon + beta * kl`` and its terms.

    ``recon`` is the decoder's raw output from ``forward`` (for the Bernoulli: logits), which
    ``likelihood`` (a :class:`~vae_lib.likelihoods.Likelihood` or its name, e.g. the textbook VAE's
    ``"bernoulli"`` or ``"gaussian"``) turns into -log p_theta(x|z). ``reduction="mean"`` gives nats
    per image, ``"sum"`` the batch total (the textbook VAE's ``reduction='sum'``), ``"none"`` one value per
    image. Introduced in notebook 04.
    """
    lik = get_likelihood(likelihood)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if validate and mu.shape[0] != x.shape[0]:
        raise ValueError(f"mu has {mu.shape[0]} rows but x has {x.shape[0]}: one posterior per image")
    rec = lik.nll(recon, x, validate=validate)
    kl = gaussian_kl(mu, logvar, validate=validate)
    return LossTerms(_reduce(rec + beta * kl, reduction), _reduce(rec, reduction), _reduce(kl, reduction))
