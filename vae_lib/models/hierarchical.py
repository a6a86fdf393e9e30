"""Hierarchical VAEs: stacked Gaussian latent layers, with bottom-up or top-down (ladder) inference.

For L layers, z_1 next to the image and z_L at the top, the generative model is

    p(z_L) = N(0, I),   p(z_l | z_{l+1}) = N(m_l(z_{l+1}), diag v_l(z_{l+1})),   p(x | z_1) = ``likelihood``,

and the model's two kinds of inference differ in which way q is factorised:

* ``"bottom-up"``: q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}), each layer a Gaussian of the draw below it
  (the two-layer models of Burda et al., 2016);
* ``"top-down"``: the ladder VAE of Sønderby et al. (2016). A deterministic pass d_1 = f_1(x),
  d_l = f_l(d_{l-1}) reads the image; q(z_L|x) comes from d_L, then each lower layer merges the
  evidence of d_l, N(mu_hat, v_hat), with the generative model's own p(z_l|z_{l+1}) = N(m, v) by
  precision weighting: 1/v_q = 1/v_hat + 1/v and mu_q = v_q (mu_hat/v_hat + m/v), the posterior of a
  Gaussian "likelihood" times a Gaussian prior. Inference walks down the same path as generation.

The ELBO is E_q[log p(x|z_1)] minus one KL per layer, KL_l = E_q[log q(z_l|.) - log p(z_l|z_{l+1})]
(p(z_L) for the top). With L = 1 both kinds are the textbook VAE with ``hidden_dim`` units.

The model serves the course's ``fit``, ``evaluate`` and ``train_or_load`` through
:meth:`HierarchicalVAE.loss_terms` (the KL's columns are the latent dimensions, layer 1 first, so
``fit``'s warm-up and free bits act in every layer) and the importance estimators of
:mod:`vae_lib.evaluation` through :meth:`HierarchicalVAE.log_weights`. It has no single Gaussian
q(z|x), so it has no ``encode``: its diagnostics are per layer (:meth:`~HierarchicalVAE.layer_means`,
:meth:`~HierarchicalVAE.top_posterior`). Notebook 13.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import INPUT_DIM
from ..likelihoods import Likelihood, get_likelihood
from .base import _check_n, _check_sizes, check_input

INFERENCE = ("bottom-up", "top-down")
#: log-variances are bounded to this range (hardtanh), which keeps exp(-logvar) finite early in training
LOGVAR_RANGE = (-8.0, 4.0)
_LOG_2PI = math.log(2 * math.pi)
#: (sample, image) rows passed through the model at once by ``log_weights``
MAX_ROWS = 8192


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)), per dimension (no sum)."""
    return -0.5 * (_LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, v_q) || N(mu_p, v_p)) per dimension, in closed form (notebook 03's formula, with a
    prior that is not N(0, 1))."""
    return 0.5 * (logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) * torch.exp(-logvar_p) - 1)


def precision_weighted(mu_hat: torch.Tensor, logvar_hat: torch.Tensor, mu_p: torch.Tensor,
                       logvar_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ladder VAE's merge of two Gaussians: precisions add, means are weighted by precision.

    Returns ``(mu, logvar)`` with 1/v = 1/v_hat + 1/v_p and mu = v (mu_hat/v_hat + mu_p/v_p), written
    with a sigmoid weight so that it stays finite for any log-variances.
    """
    w_hat = torch.sigmoid(logvar_p - logvar_hat)          # v_p / (v_hat + v_p): the share of the data's estimate
    return w_hat * mu_hat + (1 - w_hat) * mu_p, -torch.logaddexp(-logvar_hat, -logvar_p)


class _Gaussian(nn.Module):
    """A linear layer to a Gaussian's (mu, logvar), the log-variance bounded to :data:`LOGVAR_RANGE`."""

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.linear(h).chunk(2, dim=-1)
        return mu, F.hardtanh(logvar, *LOGVAR_RANGE)


class LayeredSizes:
    """What every model with stacked latent layers (``latent_dims``, z_1 first) shares, :class:`HierarchicalVAE`
    and the paper's :class:`~vae_lib.models.TwoLevelGatedVAE`: its sizes, and the importance weights built
    from the model's ``_log_weight_terms(x, eps)`` (the terms of log p(x, z) - log q(z|x) at one draw)."""

    @property
    def levels(self) -> int:
        """The number of stochastic layers L."""
        return len(self.latent_dims)

    @property
    def latent_dim(self) -> int:
        """All latent dimensions together: the columns of the KL that ``loss_terms`` returns."""
        return sum(self.latent_dims)

    @property
    def output_dim(self) -> int:
        """Numbers the decoder outputs per image: pixels times the likelihood's numbers per pixel."""
        return self.input_dim * self.likelihood.params_per_pixel

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def layer_slices(self) -> list[slice]:
        """The columns of each layer in the KL of ``loss_terms``, z_1 first."""
        ends = torch.tensor(self.latent_dims).cumsum(0).tolist()
        return [slice(e - d, e) for d, e in zip(self.latent_dims, ends)]

    @torch.no_grad()
    def log_weights(self, x: torch.Tensor, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Log importance weights log p(x, z_1..z_L) - log q(z_1..z_L | x) for ``n_samples`` draws of q
        per image: float64, shape (n_samples, N), every term Monte Carlo (no closed form), summed over
        pixels and dimensions in float64, on the model's device (the CPU for MPS). The draws are made on
        ``generator``'s device (else the model's) and moved, so a CPU generator gives the same numbers
        on every device. Their mean over draws estimates the ELBO;
        :func:`vae_lib.evaluation.iwae_from_log_weights` makes IWAE_k.
        """
        check_input(x, self.input_dim, f"{type(self).__name__}.log_weights")
        n_samples = _check_n(n_samples)
        was_training = self.training
        self.eval()
        device, n = self.device, x.shape[0]
        work = torch.device("cpu") if device.type == "mps" else device      # MPS has no float64
        x = x.to(device)
        out = torch.empty(n_samples, n, dtype=torch.float64, device=work)
        rows = max(1, MAX_ROWS * 2 // max(2, self.likelihood.params_per_pixel))   # a 256-way output is 128x larger
        per_chunk = max(1, rows // n)
        where = generator.device if generator is not None else device
        for s in range(0, n_samples, per_chunk):
            m = min(per_chunk, n_samples - s)
            eps = [torch.randn(m * n, d, generator=generator, device=where).to(device) for d in self.latent_dims]
            terms = self._log_weight_terms(x.repeat(m, 1), eps)
            out[s:s + m] = sum(t.to(work).double().sum(-1) for t in terms).view(m, n)
        self.train(was_training)
        return out


class HierarchicalVAE(LayeredSizes, nn.Module):
    """A VAE with ``len(latent_dims)`` stacked Gaussian layers; ``latent_dims[0]`` is z_1, next to x.

    ``inference``: ``"bottom-up"`` or ``"top-down"`` (see the module). Every block is one linear layer
    of ``hidden_dim`` units and a ReLU, as in the textbook VAE: the decoder z_1 -> hidden -> pixels,
    each p(z_l|z_{l+1}) z_{l+1} -> hidden -> (m, log v), and the encoder's blocks x -> hidden (then
    hidden -> hidden up the ladder, or z_{l-1} -> hidden bottom-up), each followed by a linear layer
    to its Gaussian. ``latent_dim`` is the total number of latent dimensions. Notebook 13.
    """

    def __init__(self, latent_dims: tuple[int, ...] | list[int] = (16, 8), hidden_dim: int = 256,
                 inference: str = "top-down", input_dim: int = INPUT_DIM, likelihood: Likelihood | str = "bernoulli"):
        super().__init__()
        if isinstance(latent_dims, int) or not isinstance(latent_dims, (tuple, list)) or not latent_dims:
            raise ValueError(f"latent_dims must be a non-empty tuple of layer sizes, z_1 first, got {latent_dims!r}")
        for i, d in enumerate(latent_dims, 1):
            _check_sizes(**{f"latent_dims[{i - 1}] (z_{i})": d})
        _check_sizes(hidden_dim=hidden_dim, input_dim=input_dim)
        if inference not in INFERENCE:
            raise ValueError(f"inference must be one of {INFERENCE}, got {inference!r}")
        self.latent_dims, self.hidden_dim, self.input_dim = tuple(latent_dims), hidden_dim, input_dim
        self.inference = inference
        self.likelihood = get_likelihood(likelihood)
        dims, h = self.latent_dims, hidden_dim
        below = [input_dim] + ([h] * (len(dims) - 1) if inference == "top-down" else list(dims[:-1]))
        self.up = nn.ModuleList(nn.Sequential(nn.Linear(n, h), nn.ReLU()) for n in below)
        self.q = nn.ModuleList(_Gaussian(h, d) for d in dims)
        self.p = nn.ModuleList(nn.Sequential(nn.Linear(dims[i + 1], h), nn.ReLU(), _Gaussian(h, dims[i]))
                               for i in range(len(dims) - 1))
        self.decoder = nn.Sequential(nn.Linear(dims[0], h), nn.ReLU(), nn.Linear(h, self.output_dim))

    # -- one pass of inference
    def infer(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None) -> dict[str, list]:
        """Draw z ~ q(z_1, ..., z_L | x) once per row of ``x`` and return, per layer (z_1 first), the
        draw ``z``, q's ``(mu, logvar)`` and the generative model's ``(mu, logvar)`` of p(z_l | z_{l+1})
        at the drawn parent (zeros for the top's N(0, I)).

        ``eps``: one standard-normal tensor per layer, (N, d_l), to make the draw deterministic (all
        zeros: the posterior means, layer by layer).
        """
        check_input(x, self.input_dim, "HierarchicalVAE.infer")
        L = self.levels
        if eps is not None and (len(eps) != L or any(e.shape != (x.shape[0], d) for e, d in zip(eps, self.latent_dims))):
            raise ValueError(f"eps must be {L} tensors of shapes (N, d_l) for d_l in {self.latent_dims}")

        def noise(i, like):
            return torch.randn_like(like) if eps is None else eps[i].to(like)

        z, q, p = [None] * L, [None] * L, [None] * L
        if self.inference == "bottom-up":
            h = x
            for i in range(L):
                q[i] = self.q[i](self.up[i](h))
                z[i] = q[i][0] + torch.exp(0.5 * q[i][1]) * noise(i, q[i][0])
                h = z[i]
            for i in range(L - 1):
                p[i] = self.p[i](z[i + 1])
        else:
            d, h = [], x
            for block in self.up:
                h = block(h)
                d.append(h)
            for i in reversed(range(L)):
                mu_hat, logvar_hat = self.q[i](d[i])
                if i == L - 1:
                    q[i] = (mu_hat, logvar_hat)
                else:
                    p[i] = self.p[i](z[i + 1])
                    q[i] = precision_weighted(mu_hat, logvar_hat, *p[i])
                z[i] = q[i][0] + torch.exp(0.5 * q[i][1]) * noise(i, q[i][0])
        top = z[-1].new_zeros(z[-1].shape)
        p[-1] = (top, top)
        return {"z": z, "q": q, "p": p}

    def decode_logits(self, z1: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's raw outputs for codes z_1 of shape (N, latent_dims[0])."""
        check_input(z1, self.latent_dims[0], "HierarchicalVAE.decode")
        return self.decoder(z1)

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        """Pixel means of p(x | z_1)."""
        return self.likelihood.mean(self.decode_logits(z1))

    # -- the objective
    def layer_kl(self, inference: dict[str, list]) -> list[torch.Tensor]:
        """One-draw estimates of each layer's KL term per image and dimension, z_1 first, from
        :meth:`infer`'s output. Where q(z_l|.) and p(z_l|z_{l+1}) are Gaussians given the same draws
        (every layer top-down; the top layer bottom-up) it is their KL in closed form; a bottom-up
        lower layer's parent z_{l+1} is drawn from z_l itself, so there it is minus q's entropy (in
        closed form) minus log p(z_l | z_{l+1}) at the draws. Each is unbiased for E_q[log q - log p].
        A bottom-up lower layer's term is not a divergence and can be negative: only the sum over
        layers is a KL."""
        out = []
        for i, (z, (mq, lq), (mp, lp)) in enumerate(zip(inference["z"], inference["q"], inference["p"])):
            if self.inference == "top-down" or i == self.levels - 1:
                out.append(gaussian_kl(mq, lq, mp, lp))
            else:
                out.append(-0.5 * (1 + _LOG_2PI + lq) - log_normal(z, mp, lp))
        return out

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor | None = None, likelihood: Likelihood | None = None,
                   validate: bool = True):
        """``fit``'s hook: the reconstruction term per image (N,), the KL per image and latent dimension
        (N, latent_dim), layer 1's columns first (:meth:`layer_slices`), and no extra term."""
        lik = likelihood or self.likelihood
        inference = self.infer(x)
        rec = lik.nll(self.decode_logits(inference["z"][0]), x, validate=validate)
        return rec, torch.cat(self.layer_kl(inference), dim=-1), None

    def _log_weight_terms(self, x: torch.Tensor, eps: list[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`LayeredSizes.log_weights`' terms for one pass with noise ``eps``: log p(x|z_1) per pixel,
        then log p(z_l|.) - log q(z_l|.) per dimension of each layer, every term at the draws."""
        inference = self.infer(x, eps)
        terms = [self.likelihood.log_prob(self.decode_logits(inference["z"][0]), x)]
        return terms + [log_normal(z, *p) - log_normal(z, *q) for z, q, p in zip(inference["z"], inference["q"], inference["p"])]

    # -- per-layer diagnostics
    @torch.no_grad()
    def layer_means(self, x: torch.Tensor, n_draws: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """E_q[z_l | x] for every image and layer, z_1 first, each (N, d_l), float64 on the CPU.

        A layer whose q depends on a drawn parent (layers below the top, top-down; above the first,
        bottom-up) gets the mean of its q's means over ``n_draws`` draws of the parents. Burda et al.'s
        active units of a layer are then the dimensions with Var_x(E_q[z_l|x]) > 0.01.
        """
        check_input(x, self.input_dim, "HierarchicalVAE.layer_means")
        return self._average_over_draws(x, n_draws, generator, lambda out: [mu for mu, _ in out["q"]])

    @torch.no_grad()
    def layer_kls(self, x: torch.Tensor, n_draws: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Each layer's KL term per dimension, averaged over the images ``x`` and ``n_draws`` draws of
        q: a list of (d_l,) float64 tensors, z_1 first. Summed, the rate of the ELBO."""
        check_input(x, self.input_dim, "HierarchicalVAE.layer_kls")
        return self._average_over_draws(x, n_draws, generator, lambda out: [k.mean(0) for k in self.layer_kl(out)])

    def _average_over_draws(self, x: torch.Tensor, n_draws: int, generator, per_layer) -> list[torch.Tensor]:
        """The mean over ``n_draws`` passes of :meth:`infer` (in eval mode) of ``per_layer(out)``, one
        tensor per layer, each float64 on the CPU."""
        n_draws = _check_n(n_draws)
        was_training = self.training
        self.eval()
        x = x.to(self.device)
        where = generator.device if generator is not None else self.device
        sums = None
        for _ in range(n_draws):
            eps = [torch.randn(x.shape[0], d, generator=generator, device=where) for d in self.latent_dims]
            values = [v.cpu().double() for v in per_layer(self.infer(x, eps))]
            sums = values if sums is None else [a + b for a, b in zip(sums, values)]
        self.train(was_training)
        return [total / n_draws for total in sums]

    @torch.no_grad()
    def top_posterior(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of the top layer's q for every image, float64 on the CPU: q(z_L|x) top-down;
        bottom-up, q(z_L|z_{L-1}) at one draw of the layers below. Averaged over images, its KL to
        N(0, I) is the top layer's KL term, which ELBO surgery splits (notebook 13)."""
        check_input(x, self.input_dim, "HierarchicalVAE.top_posterior")
        was_training = self.training
        self.eval()
        x = x.to(self.device)
        where = generator.device if generator is not None else self.device
        eps = [torch.randn(x.shape[0], d, generator=generator, device=where) for d in self.latent_dims]
        mu, logvar = self.infer(x, eps)["q"][-1]
        self.train(was_training)
        return mu.cpu().double(), logvar.cpu().double()

    # -- generation
    @torch.no_grad()
    def sample_layers(self, n: int, generator: torch.Generator | None = None, top: torch.Tensor | None = None,
                      draw: bool = True) -> list[torch.Tensor]:
        """Ancestral sampling: z_L ~ N(0, I) (or ``top``, shape (n, d_L)), then z_l ~ p(z_l | z_{l+1})
        down to z_1; with ``draw=False`` each lower layer is the mean of p(z_l | z_{l+1}) instead.
        Returns the codes of every layer, z_1 first, on the model's device; the draws are made on
        ``generator``'s device (else the CPU) and moved."""
        n = _check_n(n)
        device = self.device
        where = generator.device if generator is not None else torch.device("cpu")
        if top is None:
            top = torch.randn(n, self.latent_dims[-1], generator=generator, device=where)
        elif not isinstance(top, torch.Tensor) or top.shape != (n, self.latent_dims[-1]):
            raise ValueError(f"top must be a tensor of shape ({n}, {self.latent_dims[-1]})")
        z = [None] * (self.levels - 1) + [top.to(device)]
        for i in reversed(range(self.levels - 1)):
            mu, logvar = self.p[i](z[i + 1])
            if draw:
                eps = torch.randn(n, self.latent_dims[i], generator=generator, device=where).to(device)
                mu = mu + torch.exp(0.5 * logvar) * eps
            z[i] = mu
        return z

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, top: torch.Tensor | None = None,
               draw: bool = True) -> torch.Tensor:
        """Pixel means of ``n`` samples, decoded from :meth:`sample_layers`: shape (n, input_dim)."""
        return self.decode(self.sample_layers(n, generator, top, draw)[0])

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel means decoded from the posterior means, layer by layer (every eps = 0)."""
        x = x.to(self.device)
        eps = [x.new_zeros(x.shape[0], d) for d in self.latent_dims]
        return self.decode(self.infer(x, eps)["z"][0])
