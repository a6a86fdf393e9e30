"""The course's models, one module per family, all answering one interface (:mod:`.base`).

* :mod:`.base`: :class:`VAEBase` (``encode``, ``decode_logits``, the likelihood and the prior) and
  :func:`reparameterize`;
* :mod:`.mlp`: the textbook VAE, the plain autoencoder, the gated MLP of the reproduction;
* :mod:`.conv`: the convolutional VAE of notebook 08 and the arithmetic of its layers;
* :mod:`.made`: VAEs with an autoregressive (MADE) decoder, notebook 10;
* :mod:`.conditional`: the conditional VAE and M2, notebook 11;
* :mod:`.hierarchical`: VAEs with stacked latent layers, bottom-up or top-down (ladder), notebook 13;
* :mod:`.hvae_paper`: the two-level gated VAE of Tomczak and Welling's code, the reproduction's HVAE;
* :mod:`.spatial`: codes on a 7 x 7 grid, the encoder and decoder they share, and a Gaussian VAE on them;
* :mod:`.vq`: the VQ-VAE and FSQ, discrete codes on the grid (not Gaussian-posterior VAEs: see there), notebook 14;
* :mod:`.code_prior`: priors over a grid of discrete codes, uniform and a PixelCNN, notebook 14.

Building a model by name is :func:`vae_lib.registry.build_model`, which sits above this package.
"""
from .base import VAEBase, check_input, reparameterize
from .conditional import ConditionalVAE, SemiSupervisedVAE
from .conv import ConvVAE, conv_output_size, conv_transpose_output_size, conv_vae_flops
from .hierarchical import HierarchicalVAE
from .hvae_paper import TwoLevelGatedVAE
from .made import MADEHiddenVAE, MADEVAE, MaskedLinear, made_masks
from .mlp import VAE, AutoEncoder, GatedDense, GatedVAE
from .spatial import SpatialVAE
from .vq import VQVAE, FiniteScalarQuantizer, VectorQuantizer
from .code_prior import CodePriorFit, PixelCNNPrior, UniformCodes

__all__ = ["VAEBase", "check_input", "reparameterize", "VAE", "AutoEncoder", "GatedDense", "GatedVAE", "ConvVAE",
           "conv_output_size", "conv_transpose_output_size", "conv_vae_flops", "MADEVAE", "MADEHiddenVAE",
           "MaskedLinear", "made_masks", "ConditionalVAE", "SemiSupervisedVAE", "HierarchicalVAE",
           "TwoLevelGatedVAE", "SpatialVAE", "VQVAE", "VectorQuantizer", "FiniteScalarQuantizer", "PixelCNNPrior",
           "UniformCodes", "CodePriorFit"]
