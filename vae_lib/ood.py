"""Out-of-distribution scores of a VAE: does it know what it doesn't know? Notebook 16.

Every score here reads the same way: **higher means more out-of-distribution**. :func:`auroc` then
measures any of them alike: the probability that an out-of-distribution image scores above an
in-distribution one, with its standard error (:func:`auroc_text` and :func:`auroc_uncertainty` replace a
standard error of zero, at an AUROC of exactly 0 or 1, by the rule of three's bound).

* :func:`bits_per_dim`: the model's own -log2 P(x) per pixel (the IWAE_k bound), the naive score;
* :func:`likelihood_ratio`: the model's against a background model's, trained on mutated images
  (Ren et al., 2019);
* :func:`complexity_score`: the model's bits against a lossless compressor's, PNG (Serrà et al., 2020);
* :func:`typicality_scores`: how far a batch's mean -log P(x) lies from the training entropy
  (Nalisnick et al., 2019b);
* :func:`likelihood_regret`: how much the ELBO of one image improves when the encoder is fitted to
  it alone (Xiao, Yan and Amit, 2020).
"""
from __future__ import annotations

import io
import math

import torch
from PIL import Image
from torch.func import functional_call

from .data import DatasetUnavailableError, Split, load_split
from .evaluation import eight_bit_bounds
from .likelihoods import nats_to_bits_per_dim

_LOG_2PI = math.log(2 * math.pi)
#: Below this median of nats per pixel, complexity_score's ``nll_nats`` must be bits/dim in disguise.
_MIN_NATS_PER_PIXEL = 0.05


def load_digits(device: torch.device | str = "cpu", root=None, download: bool = True) -> Split:
    """MNIST's test split where it can be loaded (on disk, or downloaded), else the 1,000 real test
    digits of the offline rehearsal set ``mnist-5k``. ``Split.dataset`` says which. Notebook 16."""
    try:
        return load_split("mnist", train=False, device=device, root=root, download=download)
    except DatasetUnavailableError:
        return load_split("mnist-5k", train=False, device=device, root=root)


def _check_images(images, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 2 or images.shape[0] < 1:
        raise ValueError(f"{name} must be a tensor of shape (N, D) with N >= 1, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"{name} must hold grey levels in [0, 1]")
    return images


def synthetic_sets(images: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Out-of-distribution sets made from in-distribution ``images`` (N, 784), as many as there are images:
    uniform noise over the 256 levels, constant images (one random level each), the images inverted
    (1 - x), and the images flipped upside down. Draws on the CPU with ``generator``. Notebook 16."""
    x = _check_images(images)
    n, d = x.shape
    side = math.isqrt(d)
    noise = torch.randint(0, 256, (n, d), generator=generator).float().div(255).to(x.device)
    constant = torch.randint(0, 256, (n, 1), generator=generator).float().div(255).expand(n, d).contiguous().to(x.device)
    flipped = x.reshape(n, side, side).flip(1).reshape(n, d)
    return {"uniform noise": noise, "constant": constant, "inverted": 1 - x, "flipped": flipped}


def bits_per_dim(model, images: torch.Tensor, k: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image's -IWAE_k bound on -log2 P(x), in bits per pixel (:func:`vae_lib.evaluation.eight_bit_bounds`).

    The naive out-of-distribution score: an image the model finds unlikely has many bits per pixel.
    Notebook 16.
    """
    x = _check_images(images)
    return nats_to_bits_per_dim(eight_bit_bounds(model, x, k, generator)["iwae"], x.shape[1]).float().cpu()


def likelihood_ratio(bits_model: torch.Tensor, bits_background: torch.Tensor) -> torch.Tensor:
    """Ren et al. (2019)'s score, -LLR(x) = log2 p_background(x) - log2 p_model(x), per pixel: the model's
    bits minus the background model's bits for the same images (both in bits/dim).

    The background model, trained on mutated images (:func:`vae_lib.data.mutate_pixels`), explains what
    any image of this kind costs (dark background, smooth strokes); what is left is what the semantic
    content costs. Notebook 16.
    """
    if bits_model.shape != bits_background.shape:
        raise ValueError(f"the two models must score the same images: shapes {tuple(bits_model.shape)} and "
                         f"{tuple(bits_background.shape)}")
    return bits_model - bits_background


def png_bits_per_dim(images: torch.Tensor) -> torch.Tensor:
    """The length of each image as a PNG file (Pillow, compression level 9), in **bits** per pixel.

    The whole file counts, headers included (about 57 bytes, the same for every image of one size:
    an offset that changes no ranking). A lossless compressor is a universal model of images: its
    length L(x) is minus the log2-probability of a distribution that knows nothing of the training
    data. Notebook 16.
    """
    x = _check_images(images)
    n, d = x.shape
    side = math.isqrt(d)
    if side * side != d:
        raise ValueError(f"images must be square, got {d} pixels")
    levels = x.mul(255).round().to(torch.uint8).reshape(n, side, side).cpu().numpy()
    lengths = []
    for image in levels:
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="PNG", compress_level=9)
        lengths.append(8 * buffer.tell())   # bytes -> bits
    return torch.tensor(lengths, dtype=torch.float32) / d


def complexity_score(nll_nats: torch.Tensor, png_bits: torch.Tensor, pixels: int = 784) -> torch.Tensor:
    """Serrà et al. (2020)'s S(x) = -log2 p_model(x) - L(x), in bits per pixel.

    ``nll_nats``: -log p_model(x) per image in **nats** (what :func:`vae_lib.evaluation.eight_bit_bounds`
    returns); ``png_bits``: the compressed length L(x) in **bits** per pixel (:func:`png_bits_per_dim`).
    The model's nats are converted to bits per pixel before the subtraction: a difference of nats and
    bits mixes units that differ by ln 2 = 0.69, and the score then drifts with the images' complexity.
    S(x) is a log-likelihood ratio against the compressor: high when the model finds x no more likely
    than a generic compressor does. Raises ``ValueError`` when the median of ``nll_nats`` is below
    0.05 nats per pixel: a model's bound on 8-bit images is never that small (notebook 16's constant
    images, the cheapest, cost about 2 bits per pixel), so it signals bits/dim passed as nats. Notebook 16.
    """
    if nll_nats.shape != png_bits.shape:
        raise ValueError(f"nll_nats and png_bits must score the same images: shapes {tuple(nll_nats.shape)} and "
                         f"{tuple(png_bits.shape)}")
    per_pixel = nll_nats.double().median().item() / pixels
    if per_pixel < _MIN_NATS_PER_PIXEL:
        raise ValueError(f"nll_nats has a median of {per_pixel:.3f} nats per pixel: nll_nats must be -log p(x) of "
                         f"whole images in nats (about {pixels} times bits/dim times ln 2), not bits/dim; "
                         f"convert with vae_lib.likelihoods.nats_to_bits_per_dim only inside this function")
    return nats_to_bits_per_dim(nll_nats.double(), pixels).float() - png_bits.float()


def typicality_scores(bits: torch.Tensor, entropy: float, batch_size: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Nalisnick et al. (2019b)'s typicality test statistic, |mean of a batch's -log P(x) - H|, for
    disjoint random batches of ``batch_size`` images (a remainder is dropped).

    ``bits``: per-image bits/dim; ``entropy``: the mean of the same on training images, an estimate of
    the entropy rate H of the model. A batch of in-distribution images has a mean near H (the typical
    set); a batch whose mean is far from H, *above or below*, is out of distribution: the test flags
    too-likely batches too, which the raw likelihood cannot. The score is per batch, not per image.
    Notebook 16.
    """
    if not isinstance(bits, torch.Tensor) or bits.ndim != 1 or bits.numel() < 1:
        raise ValueError("bits must be a 1-D tensor of per-image bits/dim, got "
                         f"{tuple(bits.shape) if isinstance(bits, torch.Tensor) else type(bits).__name__}")
    if not torch.isfinite(bits).all():
        raise ValueError("bits must be finite")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1 or batch_size > bits.numel():
        raise ValueError(f"batch_size must be an integer in [1, {bits.numel()}], got {batch_size!r}")
    order = torch.randperm(bits.numel(), generator=generator)
    batches = bits.flatten()[order][: bits.numel() // batch_size * batch_size].reshape(-1, batch_size)
    return (batches.mean(1) - float(entropy)).abs()


class _Encoding(torch.nn.Module):
    """``model.encode`` as a module's forward, so that ``torch.func.functional_call`` can swap its weights."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.encode(x)


def _neg_elbo(model, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """-ELBO in nats of images x (N, D) with codes mu + sigma * eps, eps (k, N, d); differentiable.

    The same log weight log p(x, z) - log q(z|x) as :func:`vae_lib.evaluation.importance_log_weights`,
    restated here on purpose: that function draws its own noise inside, in float64, into a preallocated
    buffer, while Likelihood Regret needs (a) the very same ``eps`` before and after the refit, so that
    the regret is not the noise's, and (b) a float32 loss to differentiate through an encoder whose
    weights ``functional_call`` swaps. tests/test_ood.py checks that the two agree for the same noise.
    """
    k, n, d = eps.shape
    z = mu + (0.5 * logvar).exp() * eps
    params = model.decode_logits(z.reshape(k * n, d)).reshape(k, n, -1)
    log_lik = model.likelihood.log_prob(params, x.expand(k, -1, -1)).sum(-1)
    prior = getattr(model, "prior", None)
    log_p = -0.5 * (_LOG_2PI + z**2).sum(-1) if prior is None else prior.log_prob(z)
    log_q = -0.5 * (_LOG_2PI + logvar + eps**2).sum(-1)
    return -(log_lik + log_p - log_q).mean(0)


def _refitted_neg_elbo(encoding: _Encoding, params: dict, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """-ELBO of one image x (1, D) with the encoder's weights replaced by ``params``."""
    mu, logvar = functional_call(encoding, params, (x,))
    return _neg_elbo(encoding.model, x, mu, logvar, eps)[0]


def likelihood_regret(model, images: torch.Tensor, steps: int = 10, lr: float = 1e-3, k: int = 8,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Xiao, Yan and Amit (2020)'s Likelihood Regret of each image, in nats: the -ELBO with the trained
    encoder minus the -ELBO with an encoder fitted to that image alone.

    For every image a fresh copy of the encoder's weights (φ) is trained for ``steps`` steps of Adam
    (``lr``) on that one image's -ELBO, the decoder θ fixed (``torch.func.functional_call`` runs the
    model with the copy). Both -ELBOs use the same ``k`` draws of the noise (the optimisation draws a
    fresh one each step), so the regret is not the noise's. An in-distribution image gains little: the
    amortised encoder already serves it well; an image unlike the training data gains more. The cost
    is ``steps`` forward and backward passes per image, one image at a time. Every parameter's
    ``requires_grad`` is restored to what it was on return.

    How this differs from the authors' code (XavierXiao/Likelihood-Regret, ``compute_LR.py``): they
    refit a copy of the encoder for 100 steps of Adam at lr 2e-4 (betas 0.9, 0.999, weight decay 5e-5)
    on 32 x 32 images with a latent of 100 dimensions and a categorical decoder over 256 levels, and
    measure the regret as the importance-sampled NLL (1,000 draws) before minus after, on 500 images per
    set. We default to 10 steps at lr 1e-3, no weight decay, and the -ELBO with ``k`` draws (default 8)
    before and after, on 28 x 28 images: cheaper, and a regret in ELBO rather than in the IWAE bound.
    Notebook 16.
    """
    x = _check_images(images)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    encoding = _Encoding(model)
    named = dict(encoding.named_parameters())
    flags = [(p, p.requires_grad) for p in model.parameters()]   # restored as they were, frozen ones included
    try:
        for p, _ in flags:                  # every weight must take a gradient to tell the encoder's apart
            p.requires_grad_(True)
        mu, logvar = model.encode(x[:1])
        grads = torch.autograd.grad(mu.sum() + logvar.sum(), list(named.values()), allow_unused=True)
        names = [name for name, g in zip(named, grads) if g is not None]   # the encoder's weights
        d = mu.shape[1]
        regret = torch.empty(x.shape[0])
        for p, _ in flags:
            p.requires_grad_(False)
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            params = {name: named[name].detach().clone().requires_grad_() for name in names}
            eval_eps = torch.randn(k, 1, d, generator=generator).to(x.device)

            with torch.no_grad():
                before = _refitted_neg_elbo(encoding, params, xi, eval_eps)
            optimizer = torch.optim.Adam(list(params.values()), lr=lr)
            for _ in range(steps):
                loss = _refitted_neg_elbo(encoding, params, xi, torch.randn(1, 1, d, generator=generator).to(x.device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                regret[i] = before - _refitted_neg_elbo(encoding, params, xi, eval_eps)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return regret


def auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> tuple[float, float]:
    """The area under the ROC curve of flagging ``scores_out`` against ``scores_in`` by a threshold, and
    its standard error (Hanley and McNeil, 1982).

    The AUROC is the probability that a random out-of-distribution score exceeds a random
    in-distribution one, ties counting one half (the Mann-Whitney statistic): 1 separates perfectly,
    0.5 is chance, below 0.5 the score ranks the wrong way. Counted in O(n log n) by sorting.

    At an AUROC of exactly 0 or 1 the Hanley-McNeil standard error is 0, which claims a certainty that
    a finite sample cannot give: report :func:`auroc_text` (a one-sided 95% bound there) rather than
    "± 0", and use :func:`auroc_uncertainty` wherever a margin is needed. Notebook 16.
    """
    a = torch.as_tensor(scores_in, dtype=torch.float64).flatten()
    b = torch.as_tensor(scores_out, dtype=torch.float64).flatten()
    if a.numel() < 1 or b.numel() < 1 or not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("auroc needs at least one finite score on each side")
    sorted_in = a.sort().values
    below = torch.searchsorted(sorted_in, b, right=False).double()        # in-scores strictly below each out-score
    ties = torch.searchsorted(sorted_in, b, right=True).double() - below
    n_in, n_out = a.numel(), b.numel()
    area = ((below + 0.5 * ties).sum() / (n_in * n_out)).item()
    q1, q2 = area / (2 - area), 2 * area**2 / (1 + area)
    variance = (area * (1 - area) + (n_out - 1) * (q1 - area**2) + (n_in - 1) * (q2 - area**2)) / (n_in * n_out)
    return area, math.sqrt(max(variance, 0.0))


def auroc_bound(area: float, n_in: int, n_out: int) -> float:
    """A one-sided 95% bound on an AUROC measured as exactly 1 (a lower bound) or 0 (an upper bound), by
    the rule of three: with no pair ranked the wrong way among min(n_in, n_out) independent comparisons,
    the wrong-way probability is below 3 / min(n_in, n_out) with 95% confidence. Notebook 16."""
    if area not in (0.0, 1.0):
        raise ValueError(f"auroc_bound is for an AUROC of exactly 0 or 1, got {area!r}; use the standard error")
    if isinstance(n_in, bool) or isinstance(n_out, bool) or not (isinstance(n_in, int) and isinstance(n_out, int)) \
            or min(n_in, n_out) < 1:
        raise ValueError(f"n_in and n_out must be positive integers, got {n_in!r} and {n_out!r}")
    width = min(1.0, 3 / min(n_in, n_out))
    return 1 - width if area == 1.0 else width


def auroc_uncertainty(area: float, se: float, n_in: int, n_out: int) -> float:
    """The standard error of an AUROC, or, where it is 0 (an AUROC of exactly 0 or 1), the rule of three's
    distance 3 / min(n_in, n_out) from :func:`auroc_bound`: a margin that never claims certainty. Notebook 16."""
    if area in (0.0, 1.0):
        return abs(area - auroc_bound(area, n_in, n_out))
    return float(se)


def auroc_text(area: float, se: float, n_in: int, n_out: int) -> str:
    """An AUROC for a table: "0.871 ± 0.015", or, at exactly 1 or 0, "1.000 (≥ 0.940, 95%)" with the rule
    of three's bound (:func:`auroc_bound`) in place of a standard error of zero; a standard error below
    0.0005 gets more decimals ("0.99996 ± 0.00003") so that no cell reads "± 0.000". Notebook 16."""
    if area == 1.0:
        return f"1.000 (≥ {auroc_bound(area, n_in, n_out):.3f}, 95%)"
    if area == 0.0:
        return f"0.000 (≤ {auroc_bound(area, n_in, n_out):.3f}, 95%)"
    if 0 < se < 0.0005:   # near 0 or 1: more decimals, rather than a "± 0.000" that reads as certainty
        digits = min(6, 1 - math.floor(math.log10(se)))
        return f"{area:.{digits}f} ± {se:.{digits}f}"
    return f"{area:.3f} ± {se:.3f}"


def background_share(images: torch.Tensor) -> torch.Tensor:
    """The share of each image's pixels at level 0, the background of MNIST and Fashion-MNIST. Notebook 16."""
    return (_check_images(images) == 0).float().mean(1).cpu()


def draw_ood_histograms(scores: dict, score: str, ood_set: str, in_set: str = "Fashion-MNIST test", bins: int = 40):
    """Two histograms of one score: ``in_set`` against ``ood_set``, with the AUROC and its standard error.

    ``scores[score][set]`` holds the per-image (or per-batch) scores of that set. Notebook 16's explorer.
    """
    import matplotlib.pyplot as plt

    if score not in scores:
        raise ValueError(f"unknown score {score!r}; choose from {list(scores)}")
    for name in (in_set, ood_set):
        if name not in scores[score]:
            raise ValueError(f"no {score!r} scores for {name!r}; sets: {list(scores[score])}")
    a, b = scores[score][in_set].float().cpu(), scores[score][ood_set].float().cpu()
    area, se = auroc(a, b)
    both = torch.cat([a, b])
    low, high = torch.quantile(both, 0.005).item(), torch.quantile(both, 0.995).item()
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = torch.linspace(low, high, bins + 1).numpy()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.hist(a.clamp(low, high).numpy(), bins=edges, alpha=0.6, density=True, label=f"{in_set} ({len(a)})")
    ax.hist(b.clamp(low, high).numpy(), bins=edges, alpha=0.6, density=True, label=f"{ood_set} ({len(b)})")
    ax.set_xlabel(f"{score} (higher: more out-of-distribution)")
    ax.set_ylabel("density")
    ax.set_title(f"AUROC {auroc_text(area, se, len(a), len(b))}" + ("  (ranks the wrong way)" if area < 0.5 else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
