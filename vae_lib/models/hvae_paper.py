"""The two-level VAE of Tomczak and Welling (2018), the "HVAE" row of Norouzi et al. (2020, Table 1).

Their code (``models/HVAE_2level.py`` in ``jmtomczak/vae_vampprior``, commit bb6ff3e; the Exemplar VAE
code copies it with a few modules renamed) differs from notebook 13's :class:`~.hierarchical.HierarchicalVAE`:
the decoder reads both layers and q(z_1) reads both the image and z_2,

    p(x, z_1, z_2) = p(x | z_1, z_2) p(z_1 | z_2) p(z_2),    q(z_1, z_2 | x) = q(z_2 | x) q(z_1 | x, z_2),

with p(z_2) = N(0, I). Every hidden layer is a :class:`~.mlp.GatedDense` of 300 units, every
log-variance a linear layer through a hardtanh to [-6, 2], z_1 and z_2 have 40 dimensions each, and
the Bernoulli decoder gives one logit per pixel. ``benchmarks/reproduce.py --model hvae`` trains it by
the paper's protocol.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import INPUT_DIM
from ..likelihoods import Likelihood, get_likelihood
from .base import _check_n, _check_sizes, check_input
from .hierarchical import LayeredSizes, log_normal
from .mlp import GatedDense

#: Their hardtanh on every log-variance of z.
LOGVAR_RANGE = (-6.0, 2.0)


class _NonLinear(nn.Module):
    """Their ``NonLinear``: a linear layer, then an optional activation. It keeps their attribute name
    ``linear``, so the state dict's names are theirs."""

    def __init__(self, in_features: int, out_features: int, bounds: tuple[float, float] | None = None):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.bounds = bounds

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.linear(h)
        return out if self.bounds is None else F.hardtanh(out, *self.bounds)


class TwoLevelGatedVAE(LayeredSizes, nn.Module):
    """The paper's two-level gated VAE: q(z_2|x) q(z_1|x, z_2), p(x|z_1, z_2) p(z_1|z_2) N(z_2; 0, I).

    ``latent_dims``: (z_1, z_2) sizes, (40, 40) in the paper; ``hidden_dim``: every gated layer's width,
    300 in the paper. The modules carry their code's names (``q_z2_layers``, ``q_z1_layers_x``, ...,
    ``p_x_mean``), so a state dict of their binary model loads into this one; their ``p_x_mean`` ends in
    a sigmoid, ours gives logits to the ``likelihood``, which applies it (their log-Bernoulli also clips
    the probabilities to [1e-5, 1 - 1e-5], ours does not, as for :class:`~.mlp.GatedVAE`). Every
    linear layer's weights start from He's normal initialisation, N(0, 2 / fan_in), as theirs; biases
    keep PyTorch's default.

    It answers the interface of :class:`~.hierarchical.HierarchicalVAE`: :meth:`loss_terms` for ``fit``
    and ``evaluate``, :meth:`log_weights` for the importance estimators, :meth:`sample`, ``likelihood``
    and ``latent_dim`` (z_1's and z_2's dimensions together). Like it, it has no single Gaussian
    q(z|x) and so no ``encode``. Notebook 13 (the reproduction's model; the notebook teaches the other).
    """

    def __init__(self, latent_dims: tuple[int, int] | list[int] = (40, 40), hidden_dim: int = 300,
                 input_dim: int = INPUT_DIM, likelihood: Likelihood | str = "bernoulli"):
        super().__init__()
        if not isinstance(latent_dims, (tuple, list)) or len(latent_dims) != 2:
            raise ValueError(f"latent_dims must be the two layer sizes (z_1, z_2), got {latent_dims!r}")
        _check_sizes(**{"latent_dims[0] (z_1)": latent_dims[0], "latent_dims[1] (z_2)": latent_dims[1]})
        _check_sizes(hidden_dim=hidden_dim, input_dim=input_dim)
        self.latent_dims, self.hidden_dim, self.input_dim = tuple(latent_dims), hidden_dim, input_dim
        self.likelihood = get_likelihood(likelihood)
        (d1, d2), h = self.latent_dims, hidden_dim
        # Created in their order, so that the same seed draws the same initial weights.
        # encoder: q(z2 | x)
        self.q_z2_layers = nn.Sequential(GatedDense(input_dim, h), GatedDense(h, h))
        self.q_z2_mean = nn.Linear(h, d2)
        self.q_z2_logvar = _NonLinear(h, d2, LOGVAR_RANGE)
        # encoder: q(z1 | x, z2)
        self.q_z1_layers_x = nn.Sequential(GatedDense(input_dim, h))
        self.q_z1_layers_z2 = nn.Sequential(GatedDense(d2, h))
        self.q_z1_layers_joint = nn.Sequential(GatedDense(2 * h, h))
        self.q_z1_mean = nn.Linear(h, d1)
        self.q_z1_logvar = _NonLinear(h, d1, LOGVAR_RANGE)
        # decoder: p(z1 | z2)
        self.p_z1_layers = nn.Sequential(GatedDense(d2, h), GatedDense(h, h))
        self.p_z1_mean = nn.Linear(h, d1)
        self.p_z1_logvar = _NonLinear(h, d1, LOGVAR_RANGE)
        # decoder: p(x | z1, z2)
        self.p_x_layers_z1 = nn.Sequential(GatedDense(d1, h))
        self.p_x_layers_z2 = nn.Sequential(GatedDense(d2, h))
        self.p_x_layers_joint = nn.Sequential(GatedDense(2 * h, h))
        self.p_x_mean = _NonLinear(h, self.output_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.in_features))

    # -- the four conditionals
    def q_z2(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of q(z_2 | x)."""
        h = self.q_z2_layers(x)
        return self.q_z2_mean(h), self.q_z2_logvar(h)

    def q_z1(self, x: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of q(z_1 | x, z_2)."""
        h = self.q_z1_layers_joint(torch.cat((self.q_z1_layers_x(x), self.q_z1_layers_z2(z2)), 1))
        return self.q_z1_mean(h), self.q_z1_logvar(h)

    def p_z1(self, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of p(z_1 | z_2)."""
        h = self.p_z1_layers(z2)
        return self.p_z1_mean(h), self.p_z1_logvar(h)

    def decode_logits(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The decoder's raw outputs of p(x | z_1, z_2) (for the Bernoulli: one logit per pixel)."""
        check_input(z1, self.latent_dims[0], "TwoLevelGatedVAE.decode (z1)")
        check_input(z2, self.latent_dims[1], "TwoLevelGatedVAE.decode (z2)")
        h = self.p_x_layers_joint(torch.cat((self.p_x_layers_z1(z1), self.p_x_layers_z2(z2)), 1))
        return self.p_x_mean(h)

    # -- one pass of inference, as their forward
    def infer(self, x: torch.Tensor, eps: list[torch.Tensor] | None = None) -> dict[str, list]:
        """z_2 ~ q(z_2|x), z_1 ~ q(z_1|x, z_2), and p(z_1|z_2) at the drawn z_2, in
        :meth:`HierarchicalVAE.infer <.hierarchical.HierarchicalVAE.infer>`'s layout: per layer (z_1
        first) the draw ``z``, q's ``(mu, logvar)`` and p's ``(mu, logvar)`` (zeros for z_2's N(0, I)).
        ``eps``: two standard-normal tensors, (N, d_1) and (N, d_2), to fix the draw."""
        check_input(x, self.input_dim, "TwoLevelGatedVAE.infer")
        n = x.shape[0]
        if eps is not None and (len(eps) != 2 or any(e.shape != (n, d) for e, d in zip(eps, self.latent_dims))):
            raise ValueError(f"eps must be 2 tensors of shapes (N, d) for d in {self.latent_dims}, z_1 first")
        mu2, logvar2 = self.q_z2(x)
        z2 = mu2 + torch.exp(0.5 * logvar2) * (torch.randn_like(mu2) if eps is None else eps[1].to(mu2))
        mu1, logvar1 = self.q_z1(x, z2)
        z1 = mu1 + torch.exp(0.5 * logvar1) * (torch.randn_like(mu1) if eps is None else eps[0].to(mu1))
        zero = z2.new_zeros(z2.shape)
        return {"z": [z1, z2], "q": [(mu1, logvar1), (mu2, logvar2)], "p": [self.p_z1(z2), (zero, zero)]}

    def _log_ratios(self, inference: dict[str, list]) -> torch.Tensor:
        """log q(z|.) - log p(z|.) at the draws, per image and dimension (N, d_1 + d_2), z_1 first."""
        return torch.cat([log_normal(z, *q) - log_normal(z, *p)
                          for z, q, p in zip(inference["z"], inference["q"], inference["p"])], dim=-1)

    # -- the objective
    def loss_terms(self, x: torch.Tensor, y: torch.Tensor | None = None, likelihood: Likelihood | None = None,
                   validate: bool = True):
        """``fit``'s hook: the reconstruction term per image (N,), the KL per image and latent dimension
        (N, d_1 + d_2), z_1's columns first, and no extra term.

        The KL is their Monte Carlo estimate at the draws, log q(z_1|x, z_2) + log q(z_2|x) - log p(z_1|z_2)
        - log p(z_2), not a closed form, so training sees their estimator's noise. Every density is a
        diagonal Gaussian, so it splits exactly into one term per dimension; its row sums are their KL.
        """
        lik = likelihood or self.likelihood
        inference = self.infer(x)
        rec = lik.nll(self.decode_logits(*inference["z"]), x, validate=validate)
        return rec, self._log_ratios(inference), None

    def _log_weight_terms(self, x: torch.Tensor, eps: list[torch.Tensor]) -> list[torch.Tensor]:
        """The terms of one pass of ``log_weights`` with noise ``eps``: log p(x|z_1, z_2) per pixel and
        minus the log-ratios per latent dimension (:meth:`_log_ratios`)."""
        inference = self.infer(x, eps)
        return [self.likelihood.log_prob(self.decode_logits(*inference["z"]), x), -self._log_ratios(inference)]

    # -- generation
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixel means of ``n`` ancestral samples z_2 ~ N(0, I), z_1 ~ p(z_1|z_2), x ~ p(x|z_1, z_2):
        shape (n, input_dim). The draws are made on ``generator``'s device (else the CPU) and moved."""
        n = _check_n(n)
        device = self.device
        where = generator.device if generator is not None else torch.device("cpu")
        z2 = torch.randn(n, self.latent_dims[1], generator=generator, device=where).to(device)
        mu, logvar = self.p_z1(z2)
        z1 = mu + torch.exp(0.5 * logvar) * torch.randn(n, self.latent_dims[0], generator=generator,
                                                       device=where).to(device)
        return self.likelihood.mean(self.decode_logits(z1, z2))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel means decoded from the posterior means (z_2's mean, then z_1's mean given it)."""
        eps = [x.new_zeros(x.shape[0], d) for d in self.latent_dims]
        return self.likelihood.mean(self.decode_logits(*self.infer(x, eps)["z"]))
