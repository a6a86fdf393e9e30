"""Models by name: the registry that ``TrainConfig`` and ``train_or_load`` build models from.

It must know every model, so it sits above the models (:mod:`vae_lib.models`), never inside their
interface. Introduced in notebook 04; each Part adds its kinds (notebook 12 the priors).
"""
from __future__ import annotations

import torch.nn as nn

from .likelihoods import Likelihood
from .models import (AutoEncoder, ConditionalVAE, ConvVAE, GatedVAE, MADEHiddenVAE, MADEVAE, SemiSupervisedVAE,
                     VAE)

#: Every model kind :func:`build_model` knows.
MODEL_KINDS: dict[str, type] = {"vae": VAE, "ae": AutoEncoder, "gated": GatedVAE, "conv": ConvVAE, "made": MADEVAE,
                                "made-hidden": MADEHiddenVAE, "cvae": ConditionalVAE, "m2": SemiSupervisedVAE}


def model_kinds() -> dict[str, type]:
    """Every model kind ``build_model`` knows, by name: ``vae``, ``ae``, ``gated``, ``conv``, ``made``,
    ``made-hidden``, ``cvae``, ``m2``."""
    return dict(MODEL_KINDS)


def build_model(kind: str = "vae", latent_dim: int = 2, hidden_dim: int = 400,
                likelihood: Likelihood | str = "bernoulli", channels: int = 32, prior: str = "standard",
                prior_components: int = 0) -> nn.Module:
    """Build a model by name (see :func:`model_kinds`) with the given sizes, likelihood and prior.

    ``hidden_dim`` is the width of the MLP kinds' hidden layers; ``channels`` the number of
    channels of the convolutional VAE's first layer (its second has twice as many). Each kind takes
    the sizes it has. ``prior`` and ``prior_components`` name p(z) (:func:`vae_lib.priors.get_prior`);
    an autoencoder has none. Introduced in notebook 04; notebook 08 adds the convolutional kind,
    notebook 12 the priors.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"Unknown model kind {kind!r}; valid kinds are {', '.join(map(repr, MODEL_KINDS))}")
    if kind == "conv":
        model = ConvVAE(latent_dim=latent_dim, channels=channels, likelihood=likelihood)
    else:
        model = MODEL_KINDS[kind](latent_dim=latent_dim, hidden_dim=hidden_dim, likelihood=likelihood)
    if prior != "standard" or prior_components:
        if not hasattr(model, "use_prior"):
            raise ValueError(f"the {kind!r} model has no prior; build it with prior='standard'")
        model.use_prior(prior, prior_components)
    return model
