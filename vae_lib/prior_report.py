"""Notebook 12's table: one VAE under its prior, measured on the same test images as every other.

:func:`bounds` gives the ELBO and IWAE_k from *independent* draws, each with its standard error, and
their paired difference (from the same draws, IWAE_k >= ELBO is Jensen's inequality and cannot fail;
from independent draws it is a check). :func:`measure_prior` adds the KL split of ELBO surgery, the
active units, the share of prior samples that land in holes of the code distribution (notebook 06) and
the judge's view of the samples (:mod:`vae_lib.sample_quality`). ``python -m benchmarks.priors`` runs
it for several seeds; the notebook runs it for one. Introduced in notebook 12.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .compare import hole_fraction
from .diagnostics import active_units, elbo_surgery
from .evaluation import importance_log_weights, iwae_from_log_weights
from .latent import aggregate_posterior_sample
from .sample_quality import confident_share, effective_classes, frechet_distance


def _se(values: torch.Tensor) -> float:
    return (values.std() / math.sqrt(len(values))).item()


@dataclass
class Bounds:
    """-ELBO and -IWAE_k per image, averaged over the images, with standard errors over the images, from
    independent draws; ``gap`` = IWAE_k - ELBO (>= 0 in expectation) with its paired standard error."""

    negative_elbo: float
    negative_elbo_se: float
    negative_iwae: float
    negative_iwae_se: float
    gap: float
    gap_se: float


def bounds(model: nn.Module, images: torch.Tensor, k: int = 100, elbo_samples: int = 100,
           generator: torch.Generator | None = None) -> Bounds:
    """The ELBO (mean of ``elbo_samples`` log weights per image) and IWAE_k (log-mean-exp of k others).

    The two use independent draws from q(z|x), so that IWAE_k >= ELBO is a check that can fail: a wrong
    log p(z) or log q(z|x) in the weights shifts the two apart. Notebook 12.
    """
    elbo = importance_log_weights(model, images, elbo_samples, generator=generator).mean(0)
    iwae = iwae_from_log_weights(importance_log_weights(model, images, k, generator=generator), k)[0]
    gap = iwae - elbo
    return Bounds(-elbo.mean().item(), _se(elbo), -iwae.mean().item(), _se(iwae), gap.mean().item(), _se(gap))


def measure_prior(model: nn.Module, test_images: torch.Tensor, train_images: torch.Tensor, judge: nn.Module,
                  n_eval: int = 1000, k: int = 100, n_samples: int = 5000, seed: int = 0) -> dict:
    """Every number of notebook 12's table for ``model`` under ``model.prior``, as a flat dict.

    On the first ``n_eval`` test images (all of them if there are fewer): -ELBO and -IWAE_k
    (:func:`bounds`), ELBO surgery (I_q and KL(q(z) || p(z)), by quadrature for a 2-D model), active units.
    ``n_samples`` prior samples: the share that land in holes of the training codes
    (:func:`vae_lib.compare.hole_fraction`, against the test codes' distances), the judge's confident share
    and spread over classes, and the Fréchet distance of as many samples as test images drawn at random
    (``n_samples``, or every test image if there are fewer). Draws come from CPU generators seeded from
    ``seed``. Notebook 12.
    """
    if len(test_images) < 2:
        raise ValueError(f"need at least 2 test images, got {len(test_images)}")
    model.eval()
    evaluation = test_images[:n_eval]
    b = bounds(model, evaluation, k, generator=torch.Generator().manual_seed(seed))
    surgery = elbo_surgery(model, evaluation, n_samples=4000, grid="auto" if model.latent_dim == 2 else None,
                           generator=torch.Generator().manual_seed(seed + 1))
    units = active_units(model, evaluation)
    z = model.prior_draws(n_samples, torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        samples = model.decode(z).cpu()
    train_codes = aggregate_posterior_sample(model, train_images, torch.Generator().manual_seed(seed + 3))
    test_codes = aggregate_posterior_sample(model, test_images, torch.Generator().manual_seed(seed + 4))
    holes = hole_fraction(z.cpu(), train_codes, test_codes)
    n_real = min(n_samples, len(test_images))   # the Fréchet distance compares equally many of each
    real = test_images[torch.randperm(len(test_images), generator=torch.Generator().manual_seed(seed + 5))[:n_real]]
    quality = {"confident share": confident_share(judge, samples), "effective classes": effective_classes(judge, samples),
               "Fréchet distance": frechet_distance(judge.features(samples[:n_real]), judge.features(real.cpu()))}
    return {**asdict(b), "average KL": surgery.average_kl, "average KL se": surgery.average_kl_se,
            "I_q": surgery.mutual_information, "I_q se": surgery.mutual_information_se,
            "KL(q(z) || p(z))": surgery.marginal_kl, "KL(q(z) || p(z)) error": surgery.marginal_kl_error,
            "active units": units.count, "samples in holes": holes, **quality}
