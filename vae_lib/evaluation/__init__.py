"""Evaluation: how good is a VAE? Estimators of log p(x) and the beta trade-off, for notebook 07.

* :mod:`.joint`: a model's log p(x, z) = log p(z) + log p_theta(x|z) (its prior and its likelihood),
  and the input checks every estimator shares;
* :mod:`.importance`: importance sampling, the ELBO and IWAE_k, and bounds on 8-bit images;
* :mod:`.quadrature`: exact log p(x) and the true posterior on a grid, in a 2-D latent space;
* :mod:`.beta`: the beta-VAE's rate and distortion, and notebook 07's slider.
"""
from .beta import BetaResult, beta_result, draw_beta_vae
from .importance import eight_bit_bounds, importance_log_weights, iwae_bound, iwae_from_log_weights
from .joint import DTYPE, MAX_ROWS, log_mean_exp, log_prior, vae_log_joint
from .quadrature import (GaussianFit, GridMarginal, LatentGrid, Quadrature, adaptive_quadrature, fit_gaussian_grid,
                         gaussian_elbo_grid, grid_log_joint, grid_moments, grid_posterior, log_marginal_grid,
                         posterior_box)

__all__ = ["BetaResult", "beta_result", "draw_beta_vae", "eight_bit_bounds", "importance_log_weights", "iwae_bound",
           "iwae_from_log_weights", "DTYPE", "MAX_ROWS", "log_mean_exp", "log_prior", "vae_log_joint", "GaussianFit",
           "GridMarginal", "LatentGrid", "Quadrature", "adaptive_quadrature", "fit_gaussian_grid",
           "gaussian_elbo_grid", "grid_log_joint", "grid_moments", "grid_posterior", "log_marginal_grid",
           "posterior_box"]
