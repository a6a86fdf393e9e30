"""Importance sampling: estimators of log p(x) from draws of q(z|x), for notebook 07 (and 09's 8-bit bounds).

:func:`importance_log_weights` draws z_i ~ q(z|x) and returns the log weights log p(x, z_i) - log q(z_i|x);
:func:`iwae_from_log_weights` turns groups of k of them into the importance-weighted bound IWAE_k;
:func:`iwae_bound` does both for large k without keeping the weights; :func:`eight_bit_bounds` turns
them into bounds on -log P(x) of 8-bit images. Everything is summed with log-sum-exp. Random draws are
made on the ``generator``'s device and then moved, so a CPU generator gives the same numbers on every
device.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..likelihoods import dequantize, eight_bit_offset
from .joint import (_check_generator, _check_model, _check_q, _check_x, _decoder_log_joint, DTYPE, _f64, _is_vae,
                    _likelihood, _LOG_2PI, log_mean_exp, _max_rows, _own_weights, _positive_int)


def importance_log_weights(model, x: torch.Tensor, n_samples: int, q=None, batch_size: int | None = None,
                           generator: torch.Generator | None = None, progress: bool = False,
                           labels: torch.Tensor | None = None) -> torch.Tensor:
    """Log importance weights log p(x, z_i) - log q(z_i|x) for z_i ~ q(z|x), i = 1..n_samples.

    Returns a float64 tensor of shape (n_samples, N), one column per image (on x's device, or on
    the CPU for MPS). Their mean over i is
    the Monte Carlo ELBO; groups of k of them give IWAE_k (:func:`iwae_from_log_weights`).
    ``model`` is a VAE or a ``log_joint`` function (see :mod:`vae_lib.evaluation.joint`); ``q`` overrides
    the encoder's (mu, logvar). Images go ``batch_size`` at a time (default: as many as keep
    about 8192 decoded rows in memory); the draws z = mu + sigma * eps use ``generator``.
    ``labels``: the images' labels, for a conditional VAE. A model without one Gaussian q(z|x) that
    has its own ``log_weights(x, n_samples, generator)`` (the hierarchical VAE, notebook 13) draws them
    itself, on its own device; ``q``, ``batch_size`` and ``progress`` do not apply to it. Introduced in
    notebook 07.
    """
    x = _check_x(x)
    n_samples = _positive_int(n_samples, "n_samples")
    _check_model(model, x, labels)
    if _own_weights(model):
        if q is not None:
            raise ValueError(f"{type(model).__name__} draws from its own q: call it without q=")
        return model.log_weights(x, n_samples, generator=_check_generator(generator))
    mu, logvar = _check_q(model, x, q, labels)
    generator = _check_generator(generator)
    if _is_vae(model):
        def log_joint(xb, z, rows):
            return _decoder_log_joint(model, xb, z, None if labels is None else labels[rows])
    else:
        def log_joint(xb, z, rows):
            return model(xb, z)
    n = x.shape[0]
    if batch_size is None:
        batch_size = max(1, min(n, _max_rows(model) // n_samples))
    batch_size = _positive_int(batch_size, "batch_size")
    chunk = max(1, _max_rows(model) // batch_size)  # samples per decoder call
    work = mu.device  # float64 work: x's device, or the CPU for MPS
    out = torch.empty(n_samples, n, dtype=DTYPE, device=work)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"importance sampling, {n_samples} draws per image", leave=False)
    for start in starts:
        xb, mub, lvb = x[start:start + batch_size], mu[start:start + batch_size], logvar[start:start + batch_size]
        std = (0.5 * lvb).exp()
        for s in range(0, n_samples, chunk):
            m = min(chunk, n_samples - s)
            where = generator.device if generator is not None else work
            eps = torch.randn((m, *mub.shape), dtype=DTYPE, device=where, generator=generator).to(work)
            z = mub + std * eps
            log_q = -0.5 * (_LOG_2PI + lvb + eps**2).sum(-1)
            values = log_joint(xb, z, slice(start, start + xb.shape[0]))
            if not isinstance(values, torch.Tensor) or values.shape != (m, xb.shape[0]):
                got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
                raise ValueError(f"log_joint(x, z) must return shape ({m}, {xb.shape[0]}) for z of shape "
                                 f"{tuple(z.shape)}; got {got}")
            out[s:s + m, start:start + xb.shape[0]] = _f64(values, work) - log_q
    return out


def iwae_from_log_weights(log_weights: torch.Tensor, k: int) -> torch.Tensor:
    """IWAE_k = log (1/k) sum_i w_i for each disjoint group of k log weights.

    ``log_weights`` has shape (n_samples, N) as :func:`importance_log_weights` returns it and
    n_samples must be a multiple of k. Returns shape (n_samples // k, N): independent IWAE_k
    estimates for each image, whose mean and spread give the estimate and its standard error.
    With k = 1 they are single-sample ELBO estimates. Introduced in notebook 07.
    """
    if not isinstance(log_weights, torch.Tensor) or log_weights.ndim != 2 or not log_weights.is_floating_point():
        raise ValueError("log_weights must be a float tensor of shape (n_samples, N)")
    k = _positive_int(k, "k")
    n_samples = log_weights.shape[0]
    if n_samples % k:
        raise ValueError(f"k={k} must divide the number of samples {n_samples}")
    return log_mean_exp(log_weights.reshape(n_samples // k, k, -1), dim=1)


def iwae_bound(model, x: torch.Tensor, k: int, q=None, batch_size: int | None = None,
               generator: torch.Generator | None = None, progress: bool = False,
               labels: torch.Tensor | None = None) -> torch.Tensor:
    """The importance-weighted bound IWAE_k = log (1/k) sum_{i<=k} p(x, z_i) / q(z_i|x), z_i ~ q(z|x).

    One estimate per image, shape (N,), float64. The k weights are summed with a running
    log-sum-exp, a chunk of samples at a time, so k = 5000 over a whole test set needs little
    memory. For the same generator state it equals
    ``iwae_from_log_weights(importance_log_weights(model, x, k, ...), k)[0]``. Arguments as for
    :func:`importance_log_weights`. Introduced in notebook 07.
    """
    x = _check_x(x)
    k = _positive_int(k, "k")
    _check_model(model, x, labels)
    if _own_weights(model):   # its own draws, a chunk of samples at a time
        chunk, running = max(1, _max_rows(model) // x.shape[0]), None
        for s in range(0, k, chunk):
            lw = importance_log_weights(model, x, min(chunk, k - s), q=q, generator=generator)
            part = torch.logsumexp(lw, dim=0)
            running = part if running is None else torch.logaddexp(running, part)
        return running - math.log(k)
    mu, logvar = _check_q(model, x, q, labels)
    n = x.shape[0]
    if batch_size is None:
        batch_size = max(1, min(n, _max_rows(model) // min(k, _max_rows(model))))
    batch_size = _positive_int(batch_size, "batch_size")
    chunk = max(1, _max_rows(model) // batch_size)
    result = torch.empty(n, dtype=DTYPE, device=mu.device)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"IWAE, k = {k}", leave=False)
    for start in starts:
        sl = slice(start, start + batch_size)
        running = None
        for s in range(0, k, chunk):
            m = min(chunk, k - s)
            lw = importance_log_weights(model, x[sl], m, q=(mu[sl], logvar[sl]), batch_size=batch_size,
                                        generator=generator, labels=None if labels is None else labels[sl])
            part = torch.logsumexp(lw, dim=0)
            running = part if running is None else torch.logaddexp(running, part)
        result[sl] = running - math.log(k)
    return result


def eight_bit_bounds(model: nn.Module, images: torch.Tensor, k: int, generator: torch.Generator | None = None,
                     labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Upper bounds on -log P(x) of 8-bit images, in nats per image: from the ELBO and from IWAE_k.

    ``images``: grey levels k / 255, as the course loads them. A likelihood of the 256 levels (the
    discretized logistic) scores them as they are. A density on [0, 1] scores them dequantized,
    y = (k + u) / 256 with u ~ U[0, 1) drawn from ``generator``, and its -ELBO and -IWAE_k gain the
    change of scale D log 256 (:func:`vae_lib.likelihoods.eight_bit_offset`): then, for one draw of u,
    E_u of the returned numbers bounds -log P(x) from above. Both come from the same k importance
    samples per image: ``"elbo"`` from their mean, ``"iwae"`` from their log-mean-exp. The textbook VAE's
    Bernoulli on grey levels, a sub-normalised density, is scored like a density (a valid, loose bound).
    Likelihoods that are no distribution of 8-bit images (the binarized Bernoulli) get the
    ``ValueError`` of ``eight_bit_offset``. Introduced in notebook 09.
    """
    if not _is_vae(model):
        raise ValueError(f"model must be a VAE with encode and decode_logits, got {type(model).__name__}")
    x = _check_x(images, "images")
    k = _positive_int(k, "k")
    offset = eight_bit_offset(_likelihood(model), x.shape[1])
    if _likelihood(model).measures in ("density", "subdensity"):
        x = dequantize(x, generator)
    log_w = importance_log_weights(model, x, k, generator=generator, labels=labels)
    return {"elbo": offset - log_w.mean(0), "iwae": offset - iwae_from_log_weights(log_w, k)[0]}
