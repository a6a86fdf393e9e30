"""Likelihoods: what the decoder's numbers mean, one object per distribution p_theta(x|z).

A decoder outputs ``params_per_pixel`` numbers for each of the D pixels, laid out as
``params_per_pixel`` blocks of D (shape (N, P * D)). A :class:`Likelihood` turns them into a
distribution and answers everything the course asks of it, so that training, evaluation and the
explorers never branch on a likelihood's name:

* :meth:`~Likelihood.log_prob`: log p_theta(x_i | z) per pixel, (N, D); :meth:`~Likelihood.nll`
  sums it over pixels and negates it: the reconstruction term per image;
* :meth:`~Likelihood.mean` and :meth:`~Likelihood.sample`: the distribution's mean, and a draw;
* :meth:`~Likelihood.prepare`: what the model trains on, made from 8-bit grey images
  (the grey levels themselves, a fresh binarization, or a fresh uniform dequantization);
* :attr:`~Likelihood.measures`: what its numbers are. ``"levels"``: a probability of the 8-bit
  pixel values, so -ELBO is an upper bound on -log P(x) directly. ``"density"``: a density of
  pixel values in [0, 1] (or on all reals), which bounds -log P(x) of the 8-bit image through
  uniform dequantization, after adding D log 256 nats (:func:`nats_to_bits_per_dim`,
  :func:`eight_bit_offset`). ``"subdensity"``: a function of pixel values in [0, 1] whose integral
  is below 1, the textbook VAE's Bernoulli on grey levels: exp(-BCE) integrates to 1 / C(lambda) <= 1/2 per
  pixel, so dequantized it bounds -log P(x) too, validly and loosely (notebook 09). ``None``:
  none of these; the Bernoulli of binarized images, a likelihood of another data set.

The textbook VAE's names still work: ``get_likelihood("bernoulli")`` and ``get_likelihood("gaussian")``.
Introduced in notebook 09 (the Bernoulli in notebook 04).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import INPUT_DIM

LOG_256 = math.log(256.0)
_LOG_2PI = math.log(2 * math.pi)
#: The smallest log standard deviation (or log scale) the learned-variance likelihoods allow: e^-7 is
#: about 0.0009, below the spread of a dequantized pixel within its bin (1/256/sqrt(12), about 0.0011).
LOG_SCALE_MIN = -7.0
#: |logit| below which the continuous Bernoulli uses its Taylor series instead of a / tanh(a / 2).
_CB_SERIES = 1e-3


def _soft_floor(raw: torch.Tensor, floor: float = LOG_SCALE_MIN) -> torch.Tensor:
    # floor + softplus(raw - floor): equal to raw well above the floor, never below it, smooth.
    return floor + F.softplus(raw - floor)


# --------------------------------------------------------------------------- data in the likelihood's space


def _generator_rand(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) draws of ``shape``, made on the generator's device and moved to ``like``'s."""
    if generator is None:
        return torch.rand(shape, device=like.device, dtype=like.dtype)
    return torch.rand(shape, generator=generator, device=generator.device).to(like.device, like.dtype)


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A binary image x_bin ~ Bernoulli(x): each pixel is 1 with probability its grey level.

    Called on every training batch this is *dynamic binarization* (notebook 07): every epoch sees a
    fresh binary version of each image. With a seeded ``generator`` it binarizes a test set once.
    Introduced in notebook 07.
    """
    _check_unit(x, "x")
    return (_generator_rand(x.shape, x, generator) < x).to(x.dtype)


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization: y = (k + u) / 256 for 8-bit level k = round(255 x), u ~ U[0, 1).

    Each of the 256 levels becomes a bin of width 1/256 in [0, 1), and y is a uniform draw inside
    its bin. A density p(y) then gives the discrete model P(k) = integral of p over the bin, and
    -log P(k) <= E_u[-log p(y)] + D log 256 (Theis, van den Oord and Bethge, 2016; notebook 09).
    """
    _check_unit(x, "x")
    levels = torch.round(x * 255)
    return (levels + _generator_rand(x.shape, x, generator)) / 256


def eight_bit_offset(likelihood: "Likelihood | str", pixels: int = INPUT_DIM) -> float:
    """Nats to add to a model's -ELBO (or -IWAE_k) to make it an upper bound on -log P(x) of 8-bit x.

    0 for a likelihood of the 256 levels; D log 256 for a density evaluated on dequantized pixels
    y = (k + u) / 256, whose bins have width 1/256: P(k) = integral over the bin of p(y) dy, and by
    Jensen -log P(k) <= E_u[-log p(y)] - log(volume of the bin) = E_u[-log p(y)] + D log 256. The
    same for a sub-normalised density (``"subdensity"``): its P sums to less than 1 over the 8-bit
    images, so -log P(x) of the normalised model, P / sum P, is smaller still and the bound holds.
    ``ValueError`` for a likelihood whose numbers bound no probability of 8-bit images. Notebook 09.
    """
    lik = get_likelihood(likelihood)
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"pixels must be a positive integer, got {pixels!r}")
    if lik.measures == "levels":
        return 0.0
    if lik.measures in ("density", "subdensity"):
        return pixels * LOG_256
    raise ValueError(f"the {lik.name!r} likelihood is not a distribution of 8-bit images ({lik.caveat}); "
                     "its -ELBO bounds no -log P(x) of them")


def nats_to_bits_per_dim(nats, pixels: int = INPUT_DIM):
    """Nats per image to bits per dimension: nats / (D ln 2). Notebook 09."""
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"pixels must be a positive integer, got {pixels!r}")
    return nats / (pixels * math.log(2.0))


def _check_unit(x, name: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of pixel values in [0, 1]")
    if x.numel() and (torch.isnan(x).any() or x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must hold pixel values in [0, 1] (divide raw 0-255 pixels by 255)")


# --------------------------------------------------------------------------- the base class


class Likelihood:
    """A decoder distribution p_theta(x|z), factorised over pixels. Subclasses fill in the formulas.

    ``name``: its key in :data:`LIKELIHOODS`. ``params_per_pixel``: how many numbers the decoder
    outputs per pixel. ``measures``: ``"levels"``, ``"density"``, ``"subdensity"`` or ``None`` (see the module's
    docstring). ``caveat``: one line on what its numbers are not. Introduced in notebook 09.
    """

    name = "likelihood"
    params_per_pixel = 1
    measures: str | None = None
    caveat = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- what subclasses provide
    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_i | params_i) per pixel, broadcast over leading dimensions: shape of ``x``'s pixels."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The distribution's mean per pixel, shape (..., D)."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw x ~ p(x | params) per pixel, shape (..., D)."""
        raise NotImplementedError

    def check(self, x, name: str = "x") -> None:
        """``ValueError`` unless ``x`` is a finite (N, D) float tensor in this likelihood's support."""
        _check_rows(x, name)

    def prepare(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The data the model trains on, from grey images ``x`` (8-bit levels / 255). The identity here."""
        return x

    # -- shared
    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The decoder's output (..., P * D) as P tensors of shape (..., D)."""
        if not isinstance(params, torch.Tensor) or params.ndim < 1 or params.shape[-1] % self.params_per_pixel:
            got = tuple(params.shape) if isinstance(params, torch.Tensor) else type(params).__name__
            raise ValueError(f"the {self.name} likelihood needs {self.params_per_pixel} numbers per pixel "
                             f"(a last dimension divisible by {self.params_per_pixel}); got {got}")
        return params.chunk(self.params_per_pixel, dim=-1)

    def nll(self, params: torch.Tensor, x: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """-log p_theta(x|z) per image: minus :meth:`log_prob` summed over pixels, shape (...,)."""
        if validate:
            self.check(x)
            pixels = x.shape[-1]
            if params.shape[-1] != self.params_per_pixel * pixels or params.shape[:-1] != x.shape[:-1]:
                want = (*x.shape[:-1], self.params_per_pixel * pixels)
                raise ValueError(f"the decoder's output must have the shape of x {tuple(x.shape)} with "
                                 f"{self.params_per_pixel} number(s) per pixel for the {self.name} likelihood, "
                                 f"{want}; got {tuple(params.shape)}")
            if not torch.isfinite(params).all():
                raise ValueError("the decoder's output contains NaN or inf (has training diverged?)")
        return -self.log_prob(params, x).sum(-1)


def _check_rows(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, pixels), e.g. (128, 784); got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (pixels scaled to [0, 1]); got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf; pixel values must be finite")


def _check_in_unit_interval(x, name: str, likelihood: str) -> None:
    _check_rows(x, name)
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} has values in [{x.min().item():.3g}, {x.max().item():.3g}], but the {likelihood} likelihood "
            "needs pixel intensities in [0, 1]; divide raw 0-255 pixels by 255 (and do not normalise "
            "them to mean 0)"
        )


# --------------------------------------------------------------------------- Bernoulli


class Bernoulli(Likelihood):
    """The textbook VAE's Bernoulli decoder, p(x_i = 1 | z) = sigmoid(a_i), with logits a (one per pixel).

    log p(x_i|z) = x_i a_i - softplus(a_i), computed from the logits (never from sigmoid(a), which
    rounds to 0 or 1 in float32). On grey levels x_i in [0, 1] it is the textbook VAE's binary
    cross-entropy: a loss, not a likelihood of grey images (notebooks 04 and 09). Notebook 04.
    """

    name = "bernoulli"
    measures = "subdensity"
    caveat = ("on grey levels it is a cross-entropy: exp(-BCE) integrates to at most 1/2 per pixel over [0, 1], "
              "so it bounds 8-bit images only loosely, through dequantization")

    def log_prob(self, params, x):
        (logits,) = self.split(params)
        if logits.shape == x.shape:  # the fused kernel of the textbook VAE's loss (it needs equal shapes)
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return x * logits - F.softplus(logits)

    def mean(self, params):
        (logits,) = self.split(params)
        return torch.sigmoid(logits)

    def sample(self, params, generator=None):
        p = self.mean(params)
        return (_generator_rand(p.shape, p, generator) < p).to(p.dtype)

    def check(self, x, name="x"):
        _check_in_unit_interval(x, name, "Bernoulli")


class BinarizedBernoulli(Bernoulli):
    """The Bernoulli likelihood of binarized images: trains on x_bin ~ Bernoulli(grey levels).

    The same formulas as :class:`Bernoulli`, but its data are binary: :meth:`prepare` binarizes
    each training batch afresh (dynamic binarization), and evaluation needs a test set binarized
    once (:func:`binarize` with a seeded generator). Its -ELBO bounds -log P(x_bin), a likelihood of
    *another data set*: random binary images, not the 8-bit ones. Notebooks 07 and 09.
    """

    name = "binarized-bernoulli"
    measures = None
    caveat = "it is a likelihood of random binary images made from the data, another data set"

    def prepare(self, x, generator=None):
        return binarize(x, generator)

    def check(self, x, name="x"):
        _check_rows(x, name)
        if x.numel() and not ((x == 0) | (x == 1)).all():
            raise ValueError(f"{name} must be binary (0 or 1) for the binarized Bernoulli; binarize the "
                             "evaluation images once with vae_lib.likelihoods.binarize(x, generator)")


# --------------------------------------------------------------------------- continuous Bernoulli


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(lambda) of the continuous Bernoulli with lambda = sigmoid(a), from the logits a.

    p(x | lambda) = C(lambda) lambda^x (1 - lambda)^(1 - x) on [0, 1] needs
    C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) (Loaiza-Ganem and Cunningham, 2019), which
    is 0/0 at lambda = 1/2. In logits it is C = a / tanh(a / 2): since 1 - 2 sigmoid(a) = -tanh(a / 2)
    and 2 artanh(-tanh(a / 2)) = -a. Numerator and denominator are then both accurate to float
    rounding, however close a is to 0; only a = 0 itself needs care, where we use the series
    log C = log 2 + a^2 / 12 - 7 a^4 / 1440 (for |a| < 1e-3 its next term, 31 a^6 / 90720, is below 1e-18). Notebook 09.
    """
    small = logits.abs() < _CB_SERIES
    safe = torch.where(small, torch.ones_like(logits), logits)  # keeps the unused branch (and its gradient) finite
    direct = torch.log(safe / torch.tanh(safe / 2))
    a2 = logits * logits
    series = math.log(2.0) + a2 / 12 - 7 * a2 * a2 / 1440
    return torch.where(small, series, direct)


class ContinuousBernoulli(Likelihood):
    """The continuous Bernoulli (Loaiza-Ganem and Cunningham, 2019): a density on [0, 1] per pixel.

    p(x | lambda) = C(lambda) lambda^x (1 - lambda)^(1 - x), lambda = sigmoid(a): the textbook VAE's
    Bernoulli formula times the normalising constant C (:func:`continuous_bernoulli_log_norm`) that
    makes it integrate to 1 over [0, 1]. Its mean is not lambda: E[x] = sigmoid(a) / tanh(a / 2) - 1 / a.
    Trains on dequantized pixels (:func:`dequantize`). Notebook 09.
    """

    name = "continuous-bernoulli"
    measures = "density"
    caveat = "a density on [0, 1]: a bound on 8-bit images only through dequantization"

    def log_prob(self, params, x):
        (logits,) = self.split(params)
        return x * logits - F.softplus(logits) + continuous_bernoulli_log_norm(logits)

    def mean(self, params):
        (logits,) = self.split(params)
        a = logits.double()
        small = a.abs() < 1e-4
        safe = torch.where(small, torch.ones_like(a), a)
        direct = torch.sigmoid(safe) / torch.tanh(safe / 2) - 1 / safe
        return torch.where(small, 0.5 + a / 12, direct).to(logits.dtype)

    def cdf(self, params, y: torch.Tensor) -> torch.Tensor:
        """P(x <= y) = expm1(a y) / expm1(a), computed in float64 without overflow."""
        (logits,) = self.split(params)
        a, y = logits.double(), y.double()
        small = a.abs() < 1e-8
        safe = torch.where(small, torch.ones_like(a), a)
        positive = torch.exp(safe * (y - 1)) * torch.expm1(-safe * y) / torch.expm1(-safe)
        negative = torch.expm1(safe * y) / torch.expm1(safe)
        return torch.where(small, y, torch.where(a > 0, positive, negative))

    def sample(self, params, generator=None):
        """Inverse-CDF sampling: x = log1p(u expm1(a)) / a, u ~ U[0, 1), in float64."""
        (logits,) = self.split(params)
        a = logits.double()
        u = _generator_rand(a.shape, a, generator)
        small = a.abs() < 1e-8
        safe = torch.where(small, torch.ones_like(a), a)
        positive = 1 + torch.log(u + (1 - u) * torch.exp(-safe)) / safe
        negative = torch.log1p(u * torch.expm1(safe)) / safe
        x = torch.where(small, u, torch.where(a > 0, positive, negative))
        return x.clamp(0, 1).to(logits.dtype)

    def check(self, x, name="x"):
        _check_in_unit_interval(x, name, "continuous Bernoulli")

    def prepare(self, x, generator=None):
        return dequantize(x, generator)


# --------------------------------------------------------------------------- Gaussians


def _check_levels(x, name: str, likelihood: str) -> None:
    """``ValueError`` unless ``x`` holds 8-bit levels k / 255: what the likelihoods of the 256 levels score."""
    _check_in_unit_interval(x, name, likelihood)
    if x.numel() and ((x * 255 - torch.round(x * 255)).abs() > 1e-3).any():
        raise ValueError(f"{name} must hold 8-bit levels k / 255 for the {likelihood} likelihood; "
                         "do not dequantize or normalise the pixels")


class Gaussian(Likelihood):
    """p(x_i | z) = N(mu_i, sigma^2) with a fixed sigma (the textbook VAE's "MSE": sigma = 1), mu = sigmoid(a).

    -log p = ||x - mu||^2 / (2 sigma^2) + D log sigma + D/2 log(2 pi): with the constants, a true
    density on the reals. The mean comes through a sigmoid, as the textbook VAE's decoder ends in one.
    Trains on dequantized pixels (:func:`dequantize`), the data its bound on 8-bit images is computed
    on, like every density of the course: so ``fit`` needs 8-bit pixels k / 255 in [0, 1]. Notebooks 04 and 09.
    """

    name = "gaussian"
    measures = "density"
    caveat = "a density on the reals: a bound on 8-bit images only through dequantization"

    def __init__(self, sigma: float = 1.0):
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        self.sigma = float(sigma)

    def __repr__(self) -> str:
        return f"Gaussian(sigma={self.sigma:g})"

    def log_prob(self, params, x):
        (logits,) = self.split(params)
        z = (x - torch.sigmoid(logits)) / self.sigma
        return -0.5 * z * z - math.log(self.sigma) - 0.5 * _LOG_2PI

    def mean(self, params):
        (logits,) = self.split(params)
        return torch.sigmoid(logits)

    def cdf(self, params, y):
        """P(x <= y), in float64."""
        (logits,) = self.split(params)
        return torch.special.ndtr((y.double() - torch.sigmoid(logits.double())) / self.sigma)

    def sample(self, params, generator=None):
        mu = self.mean(params)
        if generator is None:
            eps = torch.randn_like(mu)
        else:
            eps = torch.randn(mu.shape, generator=generator, device=generator.device).to(mu.device, mu.dtype)
        return mu + self.sigma * eps

    def prepare(self, x, generator=None):
        return dequantize(x, generator)


class LearnedGaussian(Gaussian):
    """p(x_i | z) = N(mu_i, sigma_i^2) with a variance learned per pixel: two numbers per pixel.

    The decoder outputs logits a (mu = sigmoid(a)) and raw scales b, with
    log sigma = -7 + softplus(b + 7): equal to b above about -5, never below -7 (sigma >= 0.0009,
    about the spread of a dequantized pixel in its bin, so a constant background pixel cannot drive
    sigma, and the density, to infinity). Trains on dequantized pixels. The best *shared* sigma for a
    given decoder has a closed form, the root mean squared error (the sigma-VAE of Rybkin et al., 2021);
    learning one per pixel and per image generalises it. Notebook 09.
    """

    name = "gaussian-learned"
    params_per_pixel = 2

    def __init__(self):
        super().__init__(sigma=1.0)

    def __repr__(self) -> str:
        return "LearnedGaussian()"

    def _mu_log_sigma(self, params):
        logits, raw = self.split(params)
        return torch.sigmoid(logits), _soft_floor(raw)

    def scale(self, params) -> torch.Tensor:
        """The standard deviations sigma_i, shape (..., D)."""
        return self._mu_log_sigma(params)[1].exp()

    def log_prob(self, params, x):
        mu, log_sigma = self._mu_log_sigma(params)
        z = (x - mu) * torch.exp(-log_sigma)
        return -0.5 * z * z - log_sigma - 0.5 * _LOG_2PI

    def mean(self, params):
        return self._mu_log_sigma(params)[0]

    def cdf(self, params, y):
        mu, log_sigma = self._mu_log_sigma(params)
        return torch.special.ndtr((y.double() - mu.double()) / log_sigma.double().exp())

    def sample(self, params, generator=None):
        mu, log_sigma = self._mu_log_sigma(params)
        if generator is None:
            eps = torch.randn_like(mu)
        else:
            eps = torch.randn(mu.shape, generator=generator, device=generator.device).to(mu.device, mu.dtype)
        return mu + log_sigma.exp() * eps

    def check(self, x, name="x"):
        _check_in_unit_interval(x, name, "learned Gaussian")


# --------------------------------------------------------------------------- discretized logistic




class DiscretizedLogistic(Likelihood):
    """A distribution over the 256 pixel levels: a logistic density cut into bins (PixelCNN++).

    Two numbers per pixel: the location mu = sigmoid(a) and the log scale
    log s = -7 + softplus(b + 7). Level k (x = k / 255) gets the logistic's mass on
    [x - 1/510, x + 1/510], and the end levels 0 and 255 take the tails, so the 256 probabilities
    sum to 1 exactly (Salimans et al., 2017). -ELBO is directly an upper bound on -log P(x) of the
    8-bit image. Notebook 09.
    """

    name = "discretized-logistic"
    params_per_pixel = 2
    measures = "levels"
    caveat = "a distribution of the 256 levels: its numbers need no change of scale"
    HALF_BIN = 1 / 510

    def __repr__(self) -> str:
        return "DiscretizedLogistic()"

    def _mu_log_s(self, params):
        logits, raw = self.split(params)
        return torch.sigmoid(logits), _soft_floor(raw)

    def log_prob(self, params, x):
        mu, log_s = self._mu_log_s(params)
        inv_s = torch.exp(-log_s)
        upper = (x - mu + self.HALF_BIN) * inv_s
        lower = (x - mu - self.HALF_BIN) * inv_s
        # log(sigmoid(u) - sigmoid(l)) = log sigmoid(u) + log sigmoid(-l) + log(1 - exp(l - u)): every
        # term stays finite and accurate, far in either tail as well as at the centre.
        width = (2 * self.HALF_BIN) * inv_s
        middle = -F.softplus(-upper) - F.softplus(lower) + torch.log(-torch.expm1(-width))
        first = -F.softplus(-upper)   # level 0: all the mass below its upper edge
        last = -F.softplus(lower)     # level 255: all the mass above its lower edge
        return torch.where(x < self.HALF_BIN, first, torch.where(x > 1 - self.HALF_BIN, last, middle))

    def mean(self, params):
        """E[x] = 1 - (1/255) sum_{j=0}^{254} F(edge_j), F the logistic CDF at the 255 inner bin edges."""
        mu, log_s = self._mu_log_s(params)
        inv_s = torch.exp(-log_s)
        total = torch.zeros_like(mu)
        for j in range(255):
            total = total + torch.sigmoid(((j + 0.5) / 255 - mu) * inv_s)
        return 1 - total / 255

    def sample(self, params, generator=None):
        """A logistic draw mu + s log(u / (1 - u)), rounded to the nearest of the 256 levels."""
        mu, log_s = self._mu_log_s(params)
        u = _generator_rand(mu.shape, mu, generator).clamp(1e-7, 1 - 1e-7)
        y = mu + log_s.exp() * (torch.log(u) - torch.log1p(-u))
        return torch.round(y * 255).clamp(0, 255) / 255

    def check(self, x, name="x"):
        _check_levels(x, name, self.name.replace("-", " "))


# --------------------------------------------------------------------------- 256-way categorical


class Categorical(Likelihood):
    """A free distribution over the 256 levels of each pixel: 256 logits per pixel, a softmax over them.

    The most flexible factorised likelihood of 8-bit pixels (Tomczak's intro_dgm uses it, on 8 x 8 digits
    with 17 levels): it assumes nothing about how the levels are ordered, so it must learn from data that
    level 128 is close to 127. The price is its size: with the textbook MLP the last layer maps 400 hidden
    units to 784 x 256 logits, 80 million weights, which is why notebook 09 cites its row from a benchmark
    (``python -m benchmarks.categorical``). -ELBO is directly a bound on -log P(x) of the 8-bit image.
    Notebook 09.
    """

    name = "categorical"
    params_per_pixel = 256
    measures = "levels"
    caveat = "a free distribution of the 256 levels: 256 numbers per pixel, no change of scale"

    def __repr__(self) -> str:
        return "Categorical()"

    def _log_probs(self, params):
        return F.log_softmax(torch.stack(self.split(params), dim=-2), dim=-2)        # (..., 256, D)

    def log_prob(self, params, x):
        k = torch.round(x * 255).long().clamp(0, 255)
        log_p = self._log_probs(params)
        k = k.expand(*log_p.shape[:-2], k.shape[-1]) if k.ndim < log_p.ndim - 1 else k
        return log_p.gather(-2, k.unsqueeze(-2)).squeeze(-2)

    def mean(self, params):
        levels = torch.arange(256, dtype=params.dtype, device=params.device)[:, None] / 255
        return (self._log_probs(params).exp() * levels).sum(-2)

    def sample(self, params, generator=None):
        probs = self._log_probs(params).exp()                                         # (..., 256, D)
        cumulative = probs.cumsum(-2)
        u = _generator_rand((*probs.shape[:-2], 1, probs.shape[-1]), probs, generator)
        return (cumulative < u).sum(-2).clamp(max=255).to(params.dtype) / 255

    def check(self, x, name="x"):
        _check_levels(x, name, self.name.replace("-", " "))


# --------------------------------------------------------------------------- discretized Gaussian


def _log_normal_bin(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for standardised edges a < b (either may be infinite), accurate in both tails.

    Right of 0 the identity Phi(b) - Phi(a) = Phi(-a) - Phi(-b) is used, so that the larger term is
    never within rounding of 1; then log(Phi(hi) - Phi(lo)) = log Phi(hi) + log(1 - exp(log Phi(lo) - log Phi(hi))).
    """
    flip = a > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    d = (log_lo - log_hi).clamp(max=0)
    # log(1 - e^d): expm1 near 0, log1p far below it
    return log_hi + torch.where(d > -math.log(2), torch.log(-torch.expm1(d)), torch.log1p(-torch.exp(d)))


class DiscretizedGaussian(LearnedGaussian):
    """The learned Gaussian made a distribution of the 256 levels: level k gets the Gaussian's exact mass
    on the dequantization bin [k/256, (k+1)/256), level 0 everything below 1/256 and level 255 everything
    from 255/256 up, so the 256 probabilities sum to 1.

    The same two numbers per pixel as :class:`LearnedGaussian`, so a model trained with that likelihood
    can be scored with this one: its -ELBO is then an upper bound on -log P(x) of the 8-bit image with
    no dequantization, and without the Jensen gap that averaging inside a bin costs. Where sigma is
    narrower than a bin (the background), that gap is a large part of the dequantized bound
    (notebook 09). Notebook 09.
    """

    name = "gaussian-discretized"
    measures = "levels"
    caveat = "a distribution of the 256 levels, from the Gaussian's CDF: its numbers need no change of scale"

    def __init__(self, tails: bool = True):
        super().__init__()
        self.tails = bool(tails)

    def __repr__(self) -> str:
        return "DiscretizedGaussian()" if self.tails else "DiscretizedGaussian(tails=False)"

    def log_prob(self, params, x):
        """log P(level) per pixel. With ``tails=False`` the end levels keep only their bins, [0, 1/256) and
        [255/256, 1): the masses then sum to less than 1, exactly the probabilities of dequantization."""
        mu, log_sigma = self._mu_log_sigma(params)
        k = torch.round(x * 255)
        inv = torch.exp(-log_sigma)
        lo, hi = (k / 256 - mu) * inv, ((k + 1) / 256 - mu) * inv
        if self.tails:
            lo = torch.where(k <= 0, torch.full_like(lo, -math.inf), lo)
            hi = torch.where(k >= 255, torch.full_like(hi, math.inf), hi)
        return _log_normal_bin(lo, hi)

    def mean(self, params):
        """E[x] = (1/255) sum_{j=1}^{255} P(level >= j), with P(level >= j) = 1 - Phi((j/256 - mu) / sigma)."""
        mu, log_sigma = self._mu_log_sigma(params)
        inv = torch.exp(-log_sigma)
        total = torch.zeros_like(mu)
        for j in range(1, 256):
            total = total + torch.special.ndtr((mu - j / 256) * inv)
        return total / 255

    def sample(self, params, generator=None):
        """A Gaussian draw, put in its bin: level floor(256 y), clamped to 0 .. 255, as k / 255."""
        return (torch.floor(super().sample(params, generator) * 256).clamp(0, 255) / 255)

    def check(self, x, name="x"):
        _check_levels(x, name, self.name.replace("-", " "))

    def prepare(self, x, generator=None):
        return x


# --------------------------------------------------------------------------- by name

#: Every likelihood of the course by name. "bernoulli" and "gaussian" are the textbook VAE's.
LIKELIHOODS: dict[str, Likelihood] = {
    lik.name: lik
    for lik in (Bernoulli(), BinarizedBernoulli(), ContinuousBernoulli(), Gaussian(), LearnedGaussian(),
                DiscretizedLogistic(), DiscretizedGaussian(), Categorical())
}


def get_likelihood(likelihood: "Likelihood | str") -> Likelihood:
    """The :class:`Likelihood` named ``likelihood`` (or ``likelihood`` itself if it is one).

    ``ValueError`` listing the valid names otherwise. Introduced in notebook 09.
    """
    if isinstance(likelihood, Likelihood):
        return likelihood
    if isinstance(likelihood, str) and likelihood in LIKELIHOODS:
        return LIKELIHOODS[likelihood]
    raise ValueError(f"likelihood must be one of {tuple(LIKELIHOODS)} or a vae_lib.likelihoods.Likelihood, "
                     f"got {likelihood!r}")


# --------------------------------------------------------------------------- what a likelihood makes of the 256 levels


def level_masses(likelihood: "Likelihood | str", params: torch.Tensor) -> torch.Tensor:
    """The probability each likelihood gives each of the 256 levels of one pixel: shape (..., 256), float64.

    ``params``: the decoder's numbers for one pixel, shape (..., params_per_pixel). A likelihood of the
    levels gives its own P(k). A density gives the mass of the dequantization bin [k/256, (k+1)/256),
    from its CDF (so a Gaussian's masses sum to less than 1: it puts some outside [0, 1]). The textbook VAE's
    Bernoulli on grey levels gives the integral of exp(-BCE) over the bin (they sum to 1 / C(lambda) <= 1/2),
    and the binarized Bernoulli puts its two probabilities on levels 0 and 255. Notebook 09.
    """
    lik = get_likelihood(likelihood)
    params = torch.as_tensor(params, dtype=torch.float64)
    if params.ndim < 1 or params.shape[-1] != lik.params_per_pixel:
        raise ValueError(f"params must end in the {lik.params_per_pixel} number(s) of one pixel for the {lik.name} "
                         f"likelihood, got shape {tuple(params.shape)}")
    k = torch.arange(256, dtype=torch.float64, device=params.device)
    p = params.unsqueeze(-2).expand(*params.shape[:-1], 256, lik.params_per_pixel)
    flat = p.transpose(-1, -2).reshape(*params.shape[:-1], lik.params_per_pixel * 256)   # blocks of 256, as a decoder
    if lik.measures == "levels":
        return lik.log_prob(flat, (k / 255).expand(*params.shape[:-1], 256)).exp()
    if lik.name == BinarizedBernoulli.name:
        one = torch.sigmoid(params[..., 0])
        out = torch.zeros(*params.shape[:-1], 256, dtype=torch.float64, device=params.device)
        out[..., 0], out[..., 255] = 1 - one, one
        return out
    lo, hi = (k / 256).expand(*params.shape[:-1], 256), ((k + 1) / 256).expand(*params.shape[:-1], 256)
    if lik.name == Bernoulli.name:   # exp(-BCE) = continuous Bernoulli density / C(lambda)
        cb = ContinuousBernoulli()
        return (cb.cdf(flat, hi) - cb.cdf(flat, lo)) * torch.exp(-continuous_bernoulli_log_norm(flat))
    return lik.cdf(flat, hi) - lik.cdf(flat, lo)


def draw_level_masses(params_by_name: dict, ax=None):
    """Plot :func:`level_masses` of several likelihoods for one pixel, on a log scale; returns the figure.

    ``params_by_name`` maps a likelihood's name to the numbers of one pixel for it. Notebook 09.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 3.6))
    else:
        fig = ax.figure
    for name, params in params_by_name.items():
        mass = level_masses(name, torch.as_tensor(params, dtype=torch.float64)).clamp_min(1e-300)
        style = {"marker": "o", "ls": "none", "ms": 5} if name == BinarizedBernoulli.name else {"lw": 1.4}
        ax.plot(range(256), mass.log10().numpy(), label=f"{name} (sum {mass.sum():.3g})", **style)
    ax.set_xlabel("pixel level k (0 = black, 255 = white)")
    ax.set_ylabel("log10 P(level k)")
    ax.set_ylim(-12, 0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- notebook 09's explorer


def draw_likelihood_explorer(models, likelihood: str, images: torch.Tensor, seed: int = 0):
    """What the model trained with ``likelihood`` makes of ``images``: means and draws. Returns the figure.

    ``models`` maps likelihood names to trained VAEs (each with that likelihood). Rows: the images;
    the decoder's means at the posterior mean (the reconstructions papers show); one draw from
    p_theta(x|z) at the same z; and decoder means and draws for codes from the prior. Draws come
    from a CPU generator seeded with ``seed``. The drawing function of notebook 09's slider.
    """
    import matplotlib.pyplot as plt

    from .plots import show_images

    if not models or likelihood not in models:
        raise ValueError(f"no model for the likelihood {likelihood!r}; the trained ones are {list(models)}")
    model = models[likelihood]
    if not isinstance(images, torch.Tensor) or images.ndim != 2 or images.shape[1] != INPUT_DIM or len(images) == 0:
        raise ValueError(f"images must have shape (n, {INPUT_DIM}) with n >= 1")
    n = len(images)
    generator = torch.Generator().manual_seed(seed)
    lik = model.likelihood
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = images.to(model.device)
        mu, _ = model.encode(x)
        params = model.decode_logits(mu)
        z = model.prior_draws(n, generator)
        prior_params = model.decode_logits(z)
        rows = [("test images", x), ("decoder means at the posterior mean", lik.mean(params)),
                ("one draw from p(x|z) at the same z", lik.sample(params, generator)),
                ("decoder means, z from the prior", lik.mean(prior_params)),
                ("one draw each, z from the prior", lik.sample(prior_params, generator))]
    model.train(was_training)
    fig, axes = plt.subplots(len(rows), 1, figsize=(0.62 * n + 0.4, 0.72 * len(rows) + 0.9))
    for ax, (title, pixels) in zip(axes, rows):
        show_images(pixels.clamp(0, 1).cpu(), nrow=n, ax=ax, title=title)
    fig.suptitle(f"likelihood: {likelihood}", y=1.0)
    fig.tight_layout()
    return fig
