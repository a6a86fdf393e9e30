"""The course's models, one module per family, all answering one interface (:mod:`.base`).

* :mod:`.base`: :class:`VAEBase` (``encode``, ``decode_logits``, the likelihood and the prior) and
  :func:`reparameterize`;
* :mod:`.mlp`: the textbook VAE, the plain autoencoder, the gated MLP of the reproduction;
* :mod:`.conv`: the convolutional VAE of notebook 08 and the arithmetic of its layers;
* :mod:`.made`: VAEs with an autoregressive (MADE) decoder, notebook 10;
* :mod:`.conditional`: the conditional VAE and M2, notebook 11;
* :mod:`.hierarchical`: VAEs with stacked latent layers, bottom-up or top-down (ladder), notebook 13;
* :mod:`.hvae_paper`: the two-level gated VAE of Tomczak and Welling's code, the reproduction's HVAE.

Building a model by name is :func:`vae_lib.registry.build_model`, which sits above this package.
"""
from .base import VAEBase, check_input, reparameterize
from .conditional import ConditionalVAE, SemiSupervisedVAE
from .conv import ConvVAE, conv_output_size, conv_transpose_output_size, conv_vae_flops
from .hierarchical import HierarchicalVAE
from .hvae_paper import TwoLevelGatedVAE
from .made import MADEHiddenVAE, MADEVAE, MaskedLinear, made_masks
from .mlp import VAE, AutoEncoder, GatedDense, GatedVAE

__all__ = ["VAEBase", "check_input", "reparameterize", "VAE", "AutoEncoder", "GatedDense", "GatedVAE", "ConvVAE",
           "conv_output_size", "conv_transpose_output_size", "conv_vae_flops", "MADEVAE", "MADEHiddenVAE",
           "MaskedLinear", "made_masks", "ConditionalVAE", "SemiSupervisedVAE", "HierarchicalVAE",
           "TwoLevelGatedVAE"]
