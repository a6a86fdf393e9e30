"""What every estimator of :mod:`vae_lib.evaluation` shares: a model's log p(x, z), and the checks of
its inputs.

A *model* argument is either a VAE (anything with ``encode`` and ``decode_logits``, the interface of
:class:`vae_lib.models.VAEBase`: its decoder's distribution is ``model.likelihood``, its prior
``model.prior``, its q(z|x) the encoder's Gaussian; a conditional VAE also needs the images' ``labels``)
or a function ``log_joint(x, z)`` with x of shape (N, D) and z of shape (S, N, d) returning log p(x, z)
of shape (S, N); a function needs q's parameters ``q=(mu, logvar)`` for importance sampling. The
estimators work in float64: the decoder runs in its own precision and on its own device, its logits
are then promoted. Apple's MPS has no float64, so for images on MPS the float64 work (and the
results) live on the CPU. Introduced in notebook 07.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn

from ..likelihoods import get_likelihood

DTYPE = torch.float64
_LOG_2PI = math.log(2 * math.pi)
#: Rows of (sample, image) pairs decoded at once: bounds the memory of the logits (x 784 x 8 bytes).
MAX_ROWS = 8192


def _max_rows(model) -> int:
    """:data:`MAX_ROWS` for a decoder of one or two numbers per pixel, fewer for one of more (a 256-way
    categorical outputs 256 per pixel), so that a decoded chunk stays about the same size in memory."""
    per_pixel = getattr(_likelihood(model), "params_per_pixel", 1) if _is_vae(model) or _own_weights(model) else 1
    return max(1, MAX_ROWS * 2 // max(2, per_pixel))


# --------------------------------------------------------------------------- input checks


def _is_vae(model) -> bool:
    return isinstance(model, nn.Module) and hasattr(model, "encode") and hasattr(model, "decode_logits")


def _own_weights(model) -> bool:
    """A model with no single Gaussian q(z|x) that computes its importance weights itself, with a
    method ``log_weights(x, n_samples, generator)`` (the hierarchical VAE of notebook 13)."""
    return isinstance(model, nn.Module) and not _is_vae(model) and callable(getattr(model, "log_weights", None))


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_x(x, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor of shape (N, D), one row per image; got {got}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: pass at least one image")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _likelihood(model):
    """A model's decoder distribution: its ``likelihood``, or the textbook VAE's Bernoulli for a model without one."""
    return getattr(model, "likelihood", None) or get_likelihood("bernoulli")


def _check_model(model, x: torch.Tensor, labels=None) -> None:
    if _is_vae(model) or _own_weights(model):
        _likelihood(model).check(x, name="x")
        if x.shape[1] != model.input_dim:
            raise ValueError(f"x has {x.shape[1]} pixels but the model expects {model.input_dim}")
        if _own_weights(model) and labels is not None:
            raise ValueError(f"{type(model).__name__} is not conditional: call it without labels")
        if getattr(model, "conditional", False) and labels is None:
            raise ValueError(f"{type(model).__name__} is conditional: pass the images' labels=...")
        if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != (x.shape[0],)):
            raise ValueError(f"labels must be a tensor of shape ({x.shape[0]},), one per image")
    elif not callable(model):
        raise ValueError(f"model must be a VAE (with encode and decode_logits) or a function log_joint(x, z), "
                         f"got {type(model).__name__}")


def _check_q(model, x: torch.Tensor, q, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z|x)'s parameters (mu, logvar) as float64 tensors of shape (N, d)."""
    if q is None:
        if not _is_vae(model):
            raise ValueError("a log_joint function has no encoder: pass q=(mu, logvar), each of shape (N, latent_dim)")
        with torch.no_grad():
            mu, logvar = model.encode(x) if labels is None else model.encode(x, labels)
    else:
        if not (isinstance(q, (tuple, list)) and len(q) == 2 and all(isinstance(t, torch.Tensor) for t in q)):
            raise ValueError("q must be a pair of tensors (mu, logvar)")
        mu, logvar = q
    if mu.ndim != 2 or mu.shape != logvar.shape or mu.shape[0] != x.shape[0]:
        raise ValueError(f"q's mu and logvar must both have shape ({x.shape[0]}, latent_dim), "
                         f"got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
        raise ValueError("q's mu or logvar contains NaN or inf")
    work = _work_device(x.device)
    return _f64(mu, work), _f64(logvar, work)


def _check_generator(generator) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def _work_device(device: torch.device | str) -> torch.device:
    """Where the float64 work happens: ``device`` itself, or the CPU for MPS (which has no float64)."""
    device = torch.device(device)
    return torch.device("cpu") if device.type == "mps" else device


def _f64(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` as float64 on ``device``, moved first (so that an MPS tensor is never cast to float64 on MPS)."""
    return t.detach().to(device).to(DTYPE)


# --------------------------------------------------------------------------- small pieces


def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log((1/k) sum_i exp(values_i)) along ``dim``, computed stably with log-sum-exp.

    The largest value is factored out before exponentiating, so log weights of -300 nats do not
    underflow to log 0. Introduced in notebook 07.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point() or values.ndim == 0:
        raise ValueError("values must be a float tensor with at least one dimension")
    if not -values.ndim <= dim < values.ndim:
        raise ValueError(f"dim={dim} is out of range for a tensor of shape {tuple(values.shape)}")
    if values.shape[dim] == 0:
        raise ValueError("log_mean_exp of an empty dimension is undefined")
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])


def log_prior(model, z: torch.Tensor) -> torch.Tensor:
    """log p(z) of ``model``'s prior (:mod:`vae_lib.priors`) at codes ``z`` (..., d), in z's dtype and on
    its device; N(0, I) for a model without a prior. Notebook 12."""
    prior = getattr(model, "prior", None)
    if prior is None:
        return -0.5 * (_LOG_2PI + z**2).sum(-1)
    with torch.no_grad():
        return prior.log_prob(z)


def _decoder_log_joint(model: nn.Module, x: torch.Tensor, z: torch.Tensor, labels=None) -> torch.Tensor:
    """log p(z) + log p_theta(x|z), p(z) the model's prior, for images x (N, D) and codes z (S, N, d): (S, N), float64."""
    if z.ndim != 3 or z.shape[1] != x.shape[0]:
        raise ValueError(f"z must have shape (S, {x.shape[0]}, latent_dim), got {tuple(z.shape)}")
    work = _work_device(z.device)
    parameter = next(model.parameters())
    s = z.shape[0]
    with torch.no_grad():
        z_model = z.reshape(-1, z.shape[-1]).to(parameter.dtype).to(parameter.device)
        # Row s * N + n of z_model is sample s of image n, so labels and images are tiled s times.
        y = None if labels is None else labels.to(parameter.device).repeat(s)
        # An autoregressive decoder reads the image it scores (teacher forcing); the others ignore x.
        x_model = x.to(parameter.device, parameter.dtype).repeat(s, 1) if getattr(model, "autoregressive", False) else None
        params = (model.decode_logits(z_model) if y is None and x_model is None
                  else model.decode_logits(z_model, y, x_model)).reshape(*z.shape[:2], -1)
        # Per pixel in the decoder's precision (each term is accurate to ~1e-7 of itself); the sum
        # over 784 pixels, where float32 rounding would add up, in float64.
        terms = _likelihood(model).log_prob(params, x.to(params.device, params.dtype))
        log_lik = _f64(terms, work).sum(-1)
    return log_prior(model, _f64(z, work)) + log_lik


def vae_log_joint(model: nn.Module, labels: torch.Tensor | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The function log p_theta(x, z) = log p(z) + log p_theta(x|z) of a VAE, its decoder's
    distribution being ``model.likelihood`` and its prior ``model.prior``.

    The returned ``log_joint(x, z)`` takes images x of shape (N, 784) and codes z of shape
    (S, N, latent_dim) and returns (S, N) float64 values. log p_theta(x|z) is the likelihood's
    :meth:`~vae_lib.likelihoods.Likelihood.log_prob` summed over pixels (for the textbook VAE's Bernoulli,
    minus the BCE). A conditional VAE needs the ``labels`` of those N images. Introduced in notebook 07.
    """
    if not _is_vae(model):
        raise ValueError(f"model must be a VAE with encode and decode_logits, got {type(model).__name__}")

    def log_joint(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return _decoder_log_joint(model, x, z, labels)

    return log_joint
