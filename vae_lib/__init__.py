"""vae_lib: the one copy of everything the VAE course's notebooks share.

Each public function's docstring names the notebook that introduces it.
"""
from .checkpoints import CheckpointError, TrainConfig, checkpoint_path, load_checkpoint, save_checkpoint, train_or_load
from .data import DATASETS, DatasetUnavailableError, Split, as_images, dataset_name, load_data, load_split
from .likelihoods import LIKELIHOODS, Likelihood, get_likelihood
from .losses import LossTerms, bernoulli_nll, check_pixels, gaussian_kl, gaussian_nll, vae_loss
from .models import VAE, AutoEncoder, ConvVAE, VAEBase, reparameterize
from .priors import PRIORS, MixtureOfGaussians, Prior, StandardNormal, VampPrior, get_prior
from .registry import build_model
from .plots import image_grid, plot_history, save_figure, show_images
from .training import History, evaluate, fit, model_loss
from .utils import REPO_ROOT, checkpoint_dir, data_dir, describe_device, figures_dir, get_device, set_seed

__version__ = "0.1.0"
