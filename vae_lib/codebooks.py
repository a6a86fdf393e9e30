"""Notebook 14's measurements of discrete codes: codebook health over an epoch, the bound in bits per
dimension under a prior over the codes, the learned prior's checkpoint, and the explorer's picture.

* :func:`codebook_health`: code usage, perplexity and dead codes counted over every image of a split
  (an epoch's worth of assignments), beside the same numbers computed batch by batch, as training
  logs usually report them;
* :func:`code_bound`: -log P(x) <= -log p(c*) - log p(x | c*) for the codes c* the encoder picks,
  in nats per image and bits per dimension, for any prior with ``log_prob`` over the codes;
* :func:`train_or_load_code_prior`: a PixelCNN over a trained autoencoder's codes, trained by ``fit``
  (:class:`~vae_lib.models.CodePriorFit`) and cached like every model of the course;
* :func:`table_configs`: the notebook's models in one place; :func:`draw_code_edit`: the explorer.

Introduced in notebook 14.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from .checkpoints import TrainConfig, checkpoint_path, code_fingerprint, train_or_load_stage
from .data import IMAGE_SHAPE, Split
from .likelihoods import nats_to_bits_per_dim
from .models import VQVAE, CodePriorFit, PixelCNNPrior
from .models.spatial import GRID, POSITIONS
from .training import History, fit
from .utils import set_seed

#: The notebook's codes: K codes of CODE_DIM numbers per position of the 7 x 7 grid, CHANNELS feature maps.
CODES, CODE_DIM, CHANNELS = 512, 16, 16
#: The continuous model beside them: SPATIAL_DIM Gaussian numbers per position (196 in all).
SPATIAL_DIM = 4
LIKELIHOOD = "discretized-logistic"
#: Notebook 14's models: the plain VQ-VAE, each remedy on its own, all three together, FSQ, and the
#: continuous VAE with the same encoder, decoder and likelihood.
MODELS = {"plain": ("vq", ""), "EMA": ("vq", "ema"), "k-means init": ("vq", "kmeans"),
          "dead-code restart": ("vq", "restart"), "all three": ("vq", "ema+kmeans+restart"), "FSQ": ("fsq", ""),
          "continuous": ("spatial", "")}


def table_configs(dataset: str, epochs: int, seed: int = 0, names=tuple(MODELS)) -> dict[str, TrainConfig]:
    """The configurations of notebook 14's models (:data:`MODELS`), for ``epochs`` epochs and ``seed``. Notebook 14."""
    out = {}
    for name in names:
        if name not in MODELS:
            raise ValueError(f"no model named {name!r}; the models are {tuple(MODELS)}")
        kind, codebook = MODELS[name]
        base = {"dataset": dataset, "model": kind, "epochs": epochs, "seed": seed, "channels": CHANNELS,
                "likelihood": LIKELIHOOD}
        if kind == "spatial":
            out[name] = TrainConfig(**base, latent_dim=SPATIAL_DIM)
        else:
            dim = CODE_DIM if kind == "vq" else 3          # FSQ's 512 codes are 8 x 8 x 8 levels
            out[name] = TrainConfig(**base, latent_dim=dim, codebook_size=CODES, codebook=codebook)
    return out


def _entropy(counts: torch.Tensor) -> float:
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of the distribution ``counts / counts.sum()``: the number of equally used codes that
    would have the same entropy (K when all K are used equally, 1 when one code takes all). Notebook 14."""
    if not isinstance(counts, torch.Tensor) or counts.ndim != 1 or counts.sum() <= 0 or (counts < 0).any():
        raise ValueError("counts must be a 1-D tensor of non-negative counts with a positive sum")
    return math.exp(_entropy(counts))


@torch.no_grad()
def codebook_health(model: VQVAE, images: torch.Tensor, batch_size: int = 128) -> dict:
    """How a VQ-VAE or FSQ model uses its K codes on ``images``, counted over all of them (an epoch).

    Returns ``counts`` (K,), ``used`` (codes chosen at least once), ``dead`` (K - used), ``perplexity``
    and ``entropy`` (nats) of the epoch's usage, and the batch-by-batch view of batches of
    ``batch_size`` images in order: ``batch_entropy`` (the batches' entropies averaged, weighted by batch
    size), ``batch_perplexity`` (its exp) and ``batch_used`` (the mean over the batches of the codes each
    uses). The epoch's distribution is the weighted average of the batches', so by the concavity of
    entropy ``entropy >= batch_entropy``, and ``perplexity >= batch_perplexity``. Notebook 14.
    """
    if not isinstance(model, VQVAE):
        raise ValueError(f"model must be a VQVAE (vae_lib.models), got {type(model).__name__}")
    codes = model.codes_of(images, batch_size=256).cpu()   # small batches: the distances to K codes stay in cache
    counts = torch.bincount(codes.flatten(), minlength=model.codes)
    # every batch's counts at once: row b counts the codes of images b * batch_size .. (b + 1) * batch_size - 1
    batch = torch.arange(len(codes)).div(batch_size, rounding_mode="floor")[:, None].expand_as(codes)
    n_batches = int(batch.max()) + 1 if len(codes) else 0
    per_batch = torch.bincount((batch * model.codes + codes).flatten(),
                               minlength=n_batches * model.codes).view(n_batches, model.codes).double()
    sizes = per_batch.sum(1)
    p = per_batch / sizes[:, None]
    entropies = -(p * p.clamp_min(1e-300).log()).sum(1)
    batch_entropy = float((entropies * sizes).sum() / sizes.sum())
    return {"counts": counts, "used": int((counts > 0).sum()), "dead": int((counts == 0).sum()),
            "perplexity": perplexity(counts), "entropy": _entropy(counts), "batch_entropy": batch_entropy,
            "batch_perplexity": math.exp(batch_entropy), "batch_used": float((per_batch > 0).sum(1).double().mean()),
            "codes": codes}


@torch.no_grad()
def code_bound(model: VQVAE, prior, images: torch.Tensor, batch_size: int = 250) -> dict:
    """The bound -log P(x) <= -log p(c*) - log p(x | c*) of 8-bit ``images`` under ``prior`` over codes.

    P(x) = sum_c p(c) p(x | c) >= p(c*) p(x | c*) for the codes c* the encoder picks, a term of the sum:
    a true bound (no Jensen needed), exact to the extent that one grid of codes explains the image. With
    a likelihood of the 256 levels the numbers are probabilities of the 8-bit images. Returns per image
    means in nats, ``codes`` (-log p(c*)), ``recon`` (-log p(x | c*)) and ``total``, and ``bits_per_dim``
    (``total`` over 784 ln 2), and the per-image totals ``per_image``.
    """
    if model.likelihood.measures != "levels":
        raise ValueError(f"the bound needs a likelihood of the 256 levels, not {model.likelihood.name}")
    if getattr(prior, "codes", model.codes) != model.codes:
        raise ValueError(f"the prior is over {prior.codes} codes but the model has {model.codes}: fit the prior to "
                         "this model's codes")
    was_training = model.training
    model.eval()
    code_nll, rec = [], []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(model.device)
        codes = model.codes_of(x, batch_size=batch_size)
        code_nll.append(-prior.log_prob(codes).double().cpu())
        rec.append(model.likelihood.nll(model.decode_codes(codes), x).double().cpu())
    model.train(was_training)
    code_nll, rec = torch.cat(code_nll), torch.cat(rec)
    total = code_nll + rec
    return {"codes": float(code_nll.mean()), "recon": float(rec.mean()), "total": float(total.mean()),
            "bits_per_dim": float(nats_to_bits_per_dim(total.mean())), "per_image": total}


def bounds_table(models: dict, priors: dict, images: torch.Tensor, iwae_k: int = 100, seed: int = 0) -> dict[str, dict]:
    """Notebook 14's table of bounds on -log P(x) of the same 8-bit ``images``, one row per model and prior.

    ``models``: name -> model; ``priors``: row name -> (model name, prior over its codes). A
    :class:`~vae_lib.models.VQVAE` row is :func:`code_bound`; each continuous model (any other VAE) gives
    two rows, ``"<name>, -ELBO"`` and ``"<name>, -IWAE_k"`` (:func:`~vae_lib.evaluation.eight_bit_bounds`,
    draws from a generator seeded with ``seed``). Every row has ``total`` (nats per image) and
    ``bits_per_dim``. The discrete rows also have ``codes`` (-log p(c*)) and ``recon`` (-log P(x | c*));
    the -ELBO rows ``codes`` (the KL, closed form) and ``recon`` (E_q[-log P(x | z)] from 10 draws per
    image), whose sum is the -ELBO up to those draws' noise. Notebook 14.
    """
    from .evaluation import eight_bit_bounds
    from .training import model_terms

    rows = {}
    for row, (name, prior) in priors.items():
        rows[row] = {k: v for k, v in code_bound(models[name], prior, images).items() if k != "per_image"}
    for name, model in models.items():
        if isinstance(model, VQVAE):
            continue
        b = eight_bit_bounds(model, images, iwae_k, torch.Generator().manual_seed(seed))
        for label, key in (("-ELBO", "elbo"), (f"-IWAE_{iwae_k}", "iwae")):
            total = float(b[key].double().mean())
            rows[f"{name}, {label}"] = {"total": total, "bits_per_dim": float(nats_to_bits_per_dim(total))}
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            terms = [model_terms(model.eval(), images.to(model.device)) for _ in range(10)]
        rows[f"{name}, -ELBO"].update(codes=float(torch.stack([kl.sum(1) for _, kl in terms]).double().mean()),
                                      recon=float(torch.stack([rec for rec, _ in terms]).double().mean()))
    return rows


@dataclass(frozen=True)
class PriorConfig:
    """A PixelCNN prior over codes: its width and depth, and how it is trained. Notebook 14."""

    channels: int = 32
    layers: int = 3
    epochs: int = 2
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0

    def build(self, codes: int) -> PixelCNNPrior:
        return PixelCNNPrior(codes, self.channels, self.layers)


def code_prior_path(autoencoder: TrainConfig, config: PriorConfig, folder: str | Path | None = None) -> Path:
    """Where the prior of ``config`` over the codes of the autoencoder ``autoencoder`` is cached. Notebook 14."""
    key = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:12]
    ae = checkpoint_path(autoencoder, folder)
    return ae.with_name(f"pixelcnn-e{config.epochs}_{key}_over_{ae.name}")


def _prior_code(autoencoder: TrainConfig) -> str:
    """The fingerprint of the code that makes the prior: the autoencoder's, and the prior's module."""
    return code_fingerprint(autoencoder.model, ("models/code_prior",))


def train_or_load_code_prior(autoencoder: TrainConfig, model: VQVAE, config: PriorConfig, train: Split,
                             test: Split | None = None, folder: str | Path | None = None, progress: bool = True,
                             log=print) -> tuple[PixelCNNPrior, History]:
    """The PixelCNN prior ``config`` over the codes of ``model`` (trained as ``autoencoder``): loaded from
    its checkpoint, or trained with ``fit`` on ``train``'s codes and saved atomically.

    The checkpoint records both configurations and the code's fingerprint and is read with
    ``weights_only=True``; one that does not fit is reported through ``log`` and retrained. The
    history's losses are -log p(codes) in nats per image. Notebook 14.
    """
    if not isinstance(model, VQVAE):
        raise ValueError(f"model must be a VQVAE, got {type(model).__name__}")
    if autoencoder.dataset != train.dataset:
        raise ValueError(f"the autoencoder was trained on {autoencoder.dataset!r} but the split is {train.dataset!r}")
    path = code_prior_path(autoencoder, config, folder)
    meta = {"autoencoder": autoencoder.to_dict(), "prior": asdict(config), "code": _prior_code(autoencoder)}

    def new_prior() -> PixelCNNPrior:
        set_seed(config.seed)
        return config.build(model.codes)

    def train_prior(prior: PixelCNNPrior) -> History:
        return fit(CodePriorFit(model, prior), train, test, epochs=config.epochs, batch_size=config.batch_size,
                   lr=config.lr, progress=progress)

    return train_or_load_stage(path, meta, lambda: config.build(model.codes), new_prior, train_prior,
                               "PixelCNN prior", train.device, log)


@torch.no_grad()
def decode_gaussian_noise(model: VQVAE, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pixel means decoded from z ~ N(0, I) on the grid, fed to the decoder in place of code vectors:
    what sampling a VAE's way gives a VQ-VAE (the decoder never saw such inputs). Notebook 14."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    z = torch.randn(n * POSITIONS, model.code_dim, generator=generator).to(model.device)
    return model.likelihood.mean(model._decode_vectors(z))


def draw_code_edit(model: VQVAE, codes: torch.Tensor, position: int, code: int, image: torch.Tensor | None = None):
    """The explorer's picture: the image decoded from ``codes`` (49,) and from the same codes with the one
    at ``position`` (0 .. 48, raster order) replaced by ``code``, the difference, and, when ``image`` is
    given, the original. The edited position is outlined. Notebook 14."""
    if isinstance(position, bool) or not (isinstance(position, int) and 0 <= position < POSITIONS):
        raise ValueError(f"position must be an integer in 0 .. {POSITIONS - 1}, got {position!r}")
    if isinstance(code, bool) or not (isinstance(code, int) and 0 <= code < model.codes):
        raise ValueError(f"code must be an integer in 0 .. {model.codes - 1}, got {code!r}")
    if not isinstance(codes, torch.Tensor) or codes.numel() != POSITIONS:
        raise ValueError(f"codes must be the {POSITIONS} codes of one image (a tensor of {POSITIONS} integers), got "
                         f"{tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__}")
    codes = codes.reshape(1, POSITIONS).long().cpu()
    edited = codes.clone()
    edited[0, position] = code
    with torch.no_grad():
        pictures = model.decode(torch.cat([codes, edited])).cpu().view(2, *IMAGE_SHAPE[1:])
    panels = ([("original", image.cpu().view(*IMAGE_SHAPE[1:]))] if image is not None else []) + [
        (f"decoded codes (position {position}: code {int(codes[0, position])})", pictures[0]),
        (f"code {code} at position {position}", pictures[1]),
        ("edited minus decoded", pictures[1] - pictures[0])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    row, col = divmod(position, GRID)
    scale = IMAGE_SHAPE[1] / GRID
    for ax, (title, picture) in zip(axes, panels):
        diff = title.startswith("edited minus")
        ax.imshow(picture.numpy(), cmap="RdBu_r" if diff else "gray", vmin=-1 if diff else 0, vmax=1)
        ax.add_patch(plt.Rectangle((col * scale - 0.5, row * scale - 0.5), scale, scale, fill=False, color="tab:orange", lw=2))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig
