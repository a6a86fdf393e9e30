"""Models by name: the registry that ``TrainConfig`` and ``train_or_load`` build models from.

It must know every model, so it sits above the models (:mod:`vae_lib.models`), never inside their
interface. Introduced in notebook 04; each Part adds its kinds (notebook 12 the priors).
"""
from __future__ import annotations

import torch.nn as nn

from .likelihoods import Likelihood
from .models import (VAE, VQVAE, AutoEncoder, ConditionalVAE, ConvVAE, GatedVAE, HierarchicalVAE, MADEHiddenVAE,
                     MADEVAE, SemiSupervisedVAE, SpatialVAE, TwoLevelGatedVAE)

#: Every model kind :func:`build_model` knows.
MODEL_KINDS: dict[str, type] = {"vae": VAE, "ae": AutoEncoder, "gated": GatedVAE, "conv": ConvVAE, "made": MADEVAE,
                                "made-hidden": MADEHiddenVAE, "cvae": ConditionalVAE, "m2": SemiSupervisedVAE,
                                "hvae-bottom-up": HierarchicalVAE, "hvae-top-down": HierarchicalVAE,
                                "hvae-paper": TwoLevelGatedVAE, "spatial": SpatialVAE, "vq": VQVAE, "fsq": VQVAE}


def model_kinds() -> dict[str, type]:
    """Every model kind ``build_model`` knows, by name: ``vae``, ``ae``, ``gated``, ``conv``, ``made``,
    ``made-hidden``, ``cvae``, ``m2``, ``hvae-bottom-up``, ``hvae-top-down``, ``hvae-paper``, ``spatial``, ``vq``,
    ``fsq``."""
    return dict(MODEL_KINDS)


def build_model(kind: str = "vae", latent_dim: int = 2, hidden_dim: int = 400,
                likelihood: Likelihood | str = "bernoulli", channels: int = 32, prior: str = "standard",
                prior_components: int = 0, top_latent_dim: int = 0, codebook_size: int = 0,
                codebook: str = "") -> nn.Module:
    """Build a model by name (see :func:`model_kinds`) with the given sizes, likelihood and prior.

    ``hidden_dim`` is the width of the MLP kinds' hidden layers; ``channels`` the number of
    channels of the convolutional VAE's first layer (its second has twice as many). Each kind takes
    the sizes it has. ``prior`` and ``prior_components`` name p(z) (:func:`vae_lib.priors.get_prior`);
    an autoencoder has none. The hierarchical kinds (bottom-up or top-down inference) have z_1 of
    ``latent_dim`` dimensions and, when ``top_latent_dim`` > 0, a second layer z_2 of that many above it.
    The grid kinds of notebook 14 have a 7 x 7 code of ``latent_dim`` numbers per position and ``channels``
    feature maps: ``spatial`` a Gaussian one, ``vq`` a VQ-VAE's codebook of ``codebook_size`` codes with the
    remedies ``codebook`` (``"ema+kmeans+restart"``, ``""`` for none), ``fsq`` FSQ with ``codebook_size`` codes.
    Introduced in notebook 04; notebook 08 adds the convolutional kind, notebook 12 the priors, notebook
    13 the hierarchical kinds, notebook 14 the grid kinds.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"Unknown model kind {kind!r}; valid kinds are {', '.join(map(repr, MODEL_KINDS))}")
    if kind == "hvae-paper":   # the reproduction's two-level gated VAE; z_2 as large as z_1 unless told
        if prior != "standard" or prior_components:
            raise ValueError("the 'hvae-paper' model keeps p(z_2) = N(0, I), the paper's standard-prior HVAE")
        return TwoLevelGatedVAE((latent_dim, top_latent_dim or latent_dim), hidden_dim, likelihood=likelihood)
    if (codebook_size or codebook) and kind not in ("vq", "fsq"):
        raise ValueError(f"codebook_size and codebook describe the codes of the 'vq' and 'fsq' models, not {kind!r}")
    if kind in ("vq", "fsq", "spatial") and (prior != "standard" or prior_components):
        raise ValueError(f"the {kind!r} model keeps its own prior (uniform codes, or N(0, I) for 'spatial')")
    if kind in ("vq", "fsq"):
        if not codebook_size:
            raise ValueError(f"the {kind!r} model needs codebook_size, its number of codes K")
        return VQVAE(codebook_size, latent_dim, channels, likelihood=likelihood, quantizer=kind, codebook=codebook)
    if kind == "spatial":
        return SpatialVAE(latent_dim, channels, likelihood=likelihood)
    hierarchical = kind.startswith("hvae-")
    if top_latent_dim and not hierarchical:
        raise ValueError(f"top_latent_dim is the size of a hierarchical VAE's second layer; the {kind!r} model has one "
                         "layer (use kind='hvae-bottom-up' or 'hvae-top-down', or top_latent_dim=0)")
    if hierarchical:
        if prior != "standard" or prior_components:
            raise ValueError("the hierarchical VAEs keep N(0, I) at the top: their learned prior is the layer below")
        dims = (latent_dim, top_latent_dim) if top_latent_dim else (latent_dim,)
        return HierarchicalVAE(dims, hidden_dim, kind.removeprefix("hvae-"), likelihood=likelihood)
    if kind == "conv":
        model = ConvVAE(latent_dim=latent_dim, channels=channels, likelihood=likelihood)
    else:
        model = MODEL_KINDS[kind](latent_dim=latent_dim, hidden_dim=hidden_dim, likelihood=likelihood)
    if prior != "standard" or prior_components:
        if not hasattr(model, "use_prior"):
            raise ValueError(f"the {kind!r} model has no prior; build it with prior='standard'")
        model.use_prior(prior, prior_components)
    return model
