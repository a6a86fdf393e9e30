"""Discrete codes: the VQ-VAE (van den Oord et al., 2017) and FSQ (Mentzer et al., 2023). Notebook 14.

The encoder of :mod:`.spatial` gives a 7 x 7 grid of vectors z_e(x). A quantizer replaces each vector
by one of K codes, so an image becomes 49 integers, and the decoder reads the chosen code vectors:

* :class:`VectorQuantizer`: a codebook of K vectors, the nearest one wins. The encoder gets the
  decoder's gradient through the straight-through estimator; the codebook learns either from the
  codebook loss ||sg[z_e] - e||^2 or from exponential moving averages (EMA) of the vectors assigned
  to each code (then it needs no gradient). Remedies against a collapsed codebook: k-means
  initialisation on the first batch, and restarting codes that went unused.
* :class:`FiniteScalarQuantizer`: no codebook. Each of a few numbers per position is bounded and
  rounded to one of L_i levels; the grid of levels is the implicit codebook of prod L_i codes.

**How these models sit beside the course's VAEs.** They have no Gaussian posterior: q(c|x) is one-hot
on the chosen codes, so they answer neither ``encode -> (mu, logvar)`` nor the importance-sampling
estimators. What they share is what really is shared: ``fit``'s loop, ``evaluate`` and
``train_or_load`` through ``loss_terms`` (the reconstruction term, the KL column and the quantizer's
extra terms, as notebook 11's M2 does), the likelihood objects, the data path and the checkpoints.
With the uniform prior over codes the KL of a one-hot posterior is the constant log K per position,
so the history's loss is a true bound on -log P(x) in nats. A learned prior over the codes is a model
of its own (:mod:`.code_prior`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..likelihoods import Likelihood, get_likelihood
from .base import _check_n, _check_sizes
from .conv import _channels_last
from .spatial import GRID, POSITIONS, grid_decoder, grid_encoder, to_grid

#: The weight of the commitment term ||z_e - sg[e]||^2 (van den Oord et al.'s beta, 0.25 in their experiments).
COMMITMENT = 0.25
#: The EMA's decay and Laplace smoothing (the values of Sonnet's VectorQuantizerEMA and zalandoresearch/pytorch-vq-vae).
EMA_DECAY, EMA_EPS = 0.99, 1e-5
#: Dead codes are looked for once the quantizer has seen this many vectors per code since the last look
#: (RESTART_AFTER * K vectors: about 25 steps of 128 images for K = 512). A code a fair share of the data
#: would choose hundreds of times in that window; one chosen not once is dead.
RESTART_AFTER = 300
#: Iterations of k-means (Lloyd's algorithm) for the codebook's initialisation on the first batch.
KMEANS_ITERATIONS = 10
#: The remedies a :class:`VectorQuantizer` knows, joined with "+" in ``codebook`` ("" is the plain VQ-VAE).
REMEDIES = ("ema", "kmeans", "restart")
#: FSQ's levels per number for a codebook of K codes: Mentzer et al. (2023, Table 1) recommend [8, 6, 5] for
#: 2^8 (240 codes) and [8, 5, 5, 5] for 2^10 (1000); [8, 8, 8] for 2^9 is lucidrains/vector-quantize-pytorch's choice.
FSQ_LEVELS = {240: (8, 6, 5), 512: (8, 8, 8), 1000: (8, 5, 5, 5)}


def parse_remedies(codebook: str) -> tuple[str, ...]:
    """``"ema+kmeans"`` -> ``("ema", "kmeans")``; ``ValueError`` for a remedy not in :data:`REMEDIES`. Notebook 14."""
    if not isinstance(codebook, str):
        raise ValueError(f"codebook must be a string such as 'ema+kmeans+restart' (or '' for the plain VQ-VAE), "
                         f"got {codebook!r}")
    parts = tuple(p for p in codebook.split("+") if p)
    unknown = [p for p in parts if p not in REMEDIES]
    if unknown or len(set(parts)) != len(parts):
        raise ValueError(f"codebook {codebook!r}: each of {REMEDIES} at most once, joined with '+'")
    return tuple(r for r in REMEDIES if r in parts)


def squared_distances(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """||v - e||^2 for every vector (M, D) and code (K, D): (M, K), by ||v||^2 - 2 v.e + ||e||^2. Notebook 14."""
    return (vectors.pow(2).sum(1, keepdim=True) - 2 * vectors @ codebook.T + codebook.pow(2).sum(1)).clamp_min(0)


def kmeans(vectors: torch.Tensor, k: int, iterations: int = KMEANS_ITERATIONS,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means: ``(centres (k, D), counts (k,))`` of ``vectors`` (M, D), started at k distinct
    vectors drawn at random; a centre that loses all its vectors keeps its place. Notebook 14."""
    _check_sizes(k=k, iterations=iterations)
    if vectors.ndim != 2 or len(vectors) < k:
        raise ValueError(f"k-means with {k} centres needs at least {k} vectors (M, D), got {tuple(vectors.shape)}")
    start = torch.randperm(len(vectors), generator=generator, device="cpu")[:k].to(vectors.device)
    centres = vectors[start].clone()
    for _ in range(iterations):
        nearest = squared_distances(vectors, centres).argmin(1)
        counts = torch.bincount(nearest, minlength=k).to(vectors.dtype)
        sums = torch.zeros_like(centres).index_add_(0, nearest, vectors)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
    counts = torch.bincount(squared_distances(vectors, centres).argmin(1), minlength=k).to(vectors.dtype)
    return centres, counts


class VectorQuantizer(nn.Module):
    """The VQ-VAE's codebook of ``codes`` vectors of ``dim`` numbers, with the remedies in ``codebook``.

    ``forward(z_e)`` takes vectors (M, D) and returns ``(z_st, indices, codebook_term, commitment_term)``:
    the straight-through output z_e + sg[e - z_e] (the value of the chosen codes e, the gradient of
    z_e), the chosen codes (M,), and per vector ||sg[z_e] - e||^2 and ||z_e - sg[e]||^2, summed over D.
    With ``"ema"`` the codebook term is zero: the codebook follows the moving averages instead, updated
    in training mode. ``"kmeans"`` starts the codebook at k-means centres of the first training batch;
    ``"restart"`` moves each code that no vector chose in the last :data:`RESTART_AFTER` K vectors onto a
    vector of the current batch. Without remedies (``""``) it is van den Oord et al.'s
    codebook, started uniformly in [-1/K, 1/K] as in zalandoresearch/pytorch-vq-vae. Notebook 14.
    """

    def __init__(self, codes: int = 512, dim: int = 16, codebook: str = ""):
        super().__init__()
        _check_sizes(codes=codes, dim=dim)
        self.codes, self.dim = codes, dim
        self.remedies = parse_remedies(codebook)
        self.ema, self.restart = "ema" in self.remedies, "restart" in self.remedies
        self.weight = nn.Parameter(torch.empty(codes, dim).uniform_(-1 / codes, 1 / codes), requires_grad=not self.ema)
        self.register_buffer("initialised", torch.tensor("kmeans" not in self.remedies))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("uses", torch.zeros(codes))           # choices since the last look for dead codes
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))   # vectors since then
        if self.ema:
            self.register_buffer("ema_count", torch.ones(codes))
            self.register_buffer("ema_sum", self.weight.detach().clone())

    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """The index of the nearest code of each vector (M, D): (M,). ||v||^2 is the same for every code,
        so the argmin of ||e||^2 - 2 v.e (one fused matrix product) is that of ||v - e||^2."""
        codebook = self.weight.detach()
        return torch.addmm(codebook.pow(2).sum(1), vectors, codebook.T, alpha=-2).min(1).indices  # min: faster than argmin

    def forward(self, z_e: torch.Tensor):
        if z_e.ndim != 2 or z_e.shape[1] != self.dim:
            raise ValueError(f"the quantizer takes vectors of shape (M, {self.dim}), got {tuple(z_e.shape)}")
        if self.training and not bool(self.initialised):
            self._start_kmeans(z_e.detach())
        indices = self.nearest(z_e.detach())
        e = F.embedding(indices, self.weight)          # self.weight[indices], with a faster backward
        # ||sg[z_e] - e||^2 trains the codebook; with EMA the codebook follows the averages and the term is 0.
        codebook_term = z_e.new_zeros(len(z_e)) if self.ema else (z_e.detach() - e).pow(2).sum(1)
        commitment_term = (z_e - e.detach()).pow(2).sum(1)
        if self.training:
            self._update(z_e.detach(), indices)
        z_st = z_e + (e - z_e).detach()
        return z_st, indices, codebook_term, commitment_term

    @torch.no_grad()
    def _start_kmeans(self, vectors: torch.Tensor) -> None:
        if len(vectors) < self.codes:
            raise ValueError(f"k-means initialisation of {self.codes} codes needs at least {self.codes} vectors in the "
                             f"first training batch, got {len(vectors)}: use a larger batch (for the 7 x 7 grid, at "
                             f"least {math.ceil(self.codes / 49)} images) or drop 'kmeans'")
        centres, counts = kmeans(vectors, self.codes)
        self.weight.copy_(centres)
        if self.ema:
            self.ema_count.copy_(counts.clamp_min(1))
            self.ema_sum.copy_(centres * self.ema_count[:, None])
        self.initialised.fill_(True)

    @torch.no_grad()
    def _update(self, vectors: torch.Tensor, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.codes).to(vectors.dtype)
        self.steps += 1
        self.uses += counts
        self.seen += len(vectors)
        if self.ema:
            sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, vectors)
            self.ema_count.mul_(EMA_DECAY).add_(counts, alpha=1 - EMA_DECAY)
            self.ema_sum.mul_(EMA_DECAY).add_(sums, alpha=1 - EMA_DECAY)
            n = self.ema_count.sum()
            smoothed = (self.ema_count + EMA_EPS) / (n + self.codes * EMA_EPS) * n   # no code divides by zero
            self.weight.copy_(self.ema_sum / smoothed[:, None])
        if self.restart and int(self.seen) >= RESTART_AFTER * self.codes:
            dead = (self.uses == 0).nonzero().squeeze(1)
            if len(dead):
                pick = torch.randint(len(vectors), (len(dead),), device=vectors.device)
                self.weight[dead] = vectors[pick]
                if self.ema:
                    self.ema_count[dead] = 1.0
                    self.ema_sum[dead] = vectors[pick]
            self.uses.zero_()
            self.seen.zero_()

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The code vectors (..., D) of ``indices`` (...)."""
        return F.embedding(indices, self.weight)


def round_ste(z: torch.Tensor) -> torch.Tensor:
    """round(z) forward, the identity backward: the straight-through estimator of rounding. Notebook 14."""
    return z + (torch.round(z) - z).detach()


class FiniteScalarQuantizer(nn.Module):
    """FSQ: each of ``len(levels)`` numbers per position bounded to L_i levels and rounded (Mentzer et
    al., 2023, their Appendix A's code). No codebook, no codebook or commitment loss: the codes are the
    prod L_i corners of the grid of levels, all reachable by construction. Notebook 14."""

    def __init__(self, levels: tuple[int, ...] = (8, 8, 8)):
        super().__init__()
        if not levels or any(not isinstance(level, int) or isinstance(level, bool) or level < 2 for level in levels):
            raise ValueError(f"levels must be integers of at least 2, got {levels!r}")
        self.levels = tuple(levels)
        self.codes, self.dim = math.prod(levels), len(levels)
        basis = [math.prod(levels[:i]) for i in range(len(levels))]
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.long), persistent=False)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash each number so that rounding gives exactly L values (an odd L: the integers -(L-1)/2 ..
        (L-1)/2; an even L: -L/2 .. L/2 - 1, by a shift of half a level). The range is widened by 0.1% so
        that the end levels are reached (and atanh stays finite for L = 2)."""
        half = (self._levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self._levels % 2 == 1, 0.0, 0.5)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def forward(self, z_e: torch.Tensor):
        if z_e.ndim != 2 or z_e.shape[1] != self.dim:
            raise ValueError(f"FSQ takes vectors of shape (M, {self.dim}), got {tuple(z_e.shape)}")
        rounded = round_ste(self.bound(z_e))
        half_width = torch.div(self._levels, 2, rounding_mode="floor")
        digits = (rounded.detach() + half_width).long()                 # 0 .. L_i - 1
        indices = (digits * self._basis).sum(1)
        zero = z_e.new_zeros(len(z_e))
        return rounded / half_width, indices, zero, zero

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The quantized vectors (..., len(levels)) of ``indices`` (...)."""
        half_width = torch.div(self._levels, 2, rounding_mode="floor")
        digits = torch.div(indices[..., None], self._basis, rounding_mode="floor") % self._levels.long()
        return (digits - half_width) / half_width


class VQVAE(nn.Module):
    """A VQ-VAE (``quantizer="vq"``) or an FSQ autoencoder (``"fsq"``) on flat (N, 784) images.

    The grid encoder of :mod:`.spatial` (``channels`` feature maps) gives 7 x 7 vectors of ``code_dim``
    numbers; the quantizer picks one of ``codes`` codes per position; the grid decoder gives the
    likelihood's numbers. ``codebook`` names the VQ's remedies (:data:`REMEDIES`); FSQ takes its levels
    from :data:`FSQ_LEVELS` and needs ``code_dim = len(levels)``. The interface (see this module's
    docstring): ``codes_of(x)`` (N, 49) integers, ``decode_codes(c)`` the decoder's raw outputs,
    ``loss_terms`` for ``fit``, and ``reconstruct``. Introduced in notebook 14.
    """

    conditional = False
    autoregressive = False

    def __init__(self, codes: int = 512, code_dim: int = 16, channels: int = 16,
                 likelihood: Likelihood | str = "discretized-logistic", quantizer: str = "vq", codebook: str = ""):
        super().__init__()
        _check_sizes(codes=codes, code_dim=code_dim, channels=channels)
        self.likelihood = get_likelihood(likelihood)
        if quantizer == "vq":
            self.quantizer = VectorQuantizer(codes, code_dim, codebook)
        elif quantizer == "fsq":
            if codebook:
                raise ValueError(f"FSQ has no codebook to remedy; use codebook='' (got {codebook!r})")
            if codes not in FSQ_LEVELS or len(FSQ_LEVELS[codes]) != code_dim:
                options = ", ".join(f"{k} codes: code_dim {len(v)}" for k, v in FSQ_LEVELS.items())
                raise ValueError(f"FSQ with {codes} codes and code_dim {code_dim} has no levels; choose one of {options}")
            self.quantizer = FiniteScalarQuantizer(FSQ_LEVELS[codes])
        else:
            raise ValueError(f"quantizer must be 'vq' or 'fsq', got {quantizer!r}")
        self.kind, self.codes, self.code_dim, self.channels = quantizer, codes, code_dim, channels
        self.encoder = grid_encoder(channels, code_dim)
        self.decoder = grid_decoder(channels, code_dim, self.likelihood.params_per_pixel)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def kl_per_image(self) -> float:
        """KL(q(c|x) || uniform) = 49 log K nats: a one-hot posterior against K equally likely codes per position."""
        return POSITIONS * math.log(self.codes)

    def encode_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """z_e(x): the encoder's vectors, (N * 49, code_dim), position by position within each image."""
        h = self.encoder(to_grid(x, "VQVAE.encode"))                     # (N, D, 7, 7)
        return h.permute(0, 2, 3, 1).reshape(-1, self.code_dim)

    def _decode_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        grid = vectors.reshape(-1, GRID, GRID, self.code_dim).permute(0, 3, 1, 2)
        return self.decoder(_channels_last(grid)).flatten(1)

    def quantize(self, x: torch.Tensor):
        """``(z_st, codes (N, 49), codebook_term (N,), commitment_term (N,))`` for images ``x`` (N, 784)."""
        n = x.shape[0] if isinstance(x, torch.Tensor) and x.ndim == 2 else 0
        z_st, indices, codebook_term, commitment_term = self.quantizer(self.encode_vectors(x))
        return (z_st, indices.view(n, POSITIONS), codebook_term.view(n, POSITIONS).sum(1),
                commitment_term.view(n, POSITIONS).sum(1))

    @torch.no_grad()
    def codes_of(self, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
        """The codes (N, 49) of images ``x`` (N, 784), in batches, in eval mode (the codebook is not updated)."""
        was_training = self.training
        self.eval()
        try:
            return torch.cat([self.quantize(x[i:i + batch_size])[1] for i in range(0, len(x), batch_size)])
        finally:
            self.train(was_training)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """The decoder's raw outputs (N, P * 784) for codes (N, 49) of integers in 0 .. K - 1."""
        self.check_codes(codes)
        return self._decode_vectors(self.quantizer.lookup(codes.to(self.device)))

    def check_codes(self, codes) -> None:
        """``ValueError`` unless ``codes`` is an integer tensor (N, 49) with values in 0 .. K - 1."""
        if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.ndim != 2 \
                or codes.shape[1] != POSITIONS:
            raise ValueError(f"codes must be an integer tensor of shape (N, {POSITIONS}); got "
                             f"{tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__}")
        if len(codes) and (codes.min() < 0 or codes.max() >= self.codes):
            raise ValueError(f"codes must lie in 0 .. {self.codes - 1}")

    def forward(self, x: torch.Tensor):
        """``(recon_params, codes, codebook_term, commitment_term)`` for images ``x`` (N, 784)."""
        z_st, codes, codebook_term, commitment_term = self.quantize(x)
        return self._decode_vectors(z_st), codes, codebook_term, commitment_term

    def loss_terms(self, x: torch.Tensor, y=None, likelihood: Likelihood | None = None, validate: bool = True):
        """What ``fit`` and ``evaluate`` need, per image: -log p(x|codes), the KL column (N, 1) of the
        constant 49 log K, and the quantizer's terms codebook + 0.25 commitment (zero for FSQ)."""
        lik = likelihood or self.likelihood
        params, _, codebook_term, commitment_term = self(x)
        rec = lik.nll(params, x, validate=validate)
        kl = rec.new_full((len(x), 1), self.kl_per_image)
        return rec, kl, codebook_term + COMMITMENT * commitment_term

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Pixel means of p(x|codes) for codes (N, 49)."""
        return self.likelihood.mean(self.decode_codes(codes))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel means decoded from the codes of ``x``."""
        return self.decode(self.codes_of(x))

    @torch.no_grad()
    def sample_uniform(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` grids of codes drawn uniformly (the prior the KL above assumes): pixel means (n, 784)."""
        n = _check_n(n)
        codes = torch.randint(self.codes, (n, POSITIONS), generator=generator, device="cpu")
        return self.decode(codes)
