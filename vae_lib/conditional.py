"""The conditional VAE of notebook 11: the label enters the encoder and the decoder.

q_phi(z|x, y) and p_theta(x|z, y), with y one-hot: the code z is free to hold what the label does
not say (the style), and choosing y at generation time chooses the class. The model answers the
course's one interface (:class:`~vae_lib.models.VAEBase`), with the labels as ``y``; ``fit`` and
``evaluate`` pass each batch's labels along.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import INPUT_DIM
from .likelihoods import Likelihood
from .models import VAEBase, _check_sizes, _SeedDecoder, check_input


class ConditionalVAE(_SeedDecoder, VAEBase):
    """The seed's MLP VAE with a one-hot label appended to the encoder's input and to z.

    Encoder: [x, onehot(y)] -> hidden -> (mu, logvar). Decoder: [z, onehot(y)] -> hidden -> 784.
    Every method takes the labels ``y`` (int64, values 0 .. n_classes - 1); a missing label or one
    outside the classes is a ``ValueError``. Introduced in notebook 11.
    """

    conditional = True

    def __init__(self, latent_dim: int = 2, hidden_dim: int = 400, n_classes: int = 10, input_dim: int = INPUT_DIM,
                 likelihood: Likelihood | str = "bernoulli"):
        super().__init__(latent_dim, input_dim, likelihood)
        _check_sizes(hidden_dim=hidden_dim, n_classes=n_classes)
        self.hidden_dim, self.n_classes = hidden_dim, n_classes
        self.fc1 = nn.Linear(input_dim + n_classes, hidden_dim)
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)
        self._build_decoder(latent_dim + n_classes)

    def one_hot(self, y: torch.Tensor | None, n: int) -> torch.Tensor:
        """The labels ``y`` of ``n`` images as one-hot rows (n, n_classes), checked."""
        if y is None:
            raise ValueError("the conditional VAE needs the images' labels y; is the split without labels?")
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.shape != (n,):
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must be an integer tensor of shape ({n},), one label per image; got {shape}")
        if n and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(f"labels must lie in 0 .. {self.n_classes - 1}; got values from "
                             f"{y.min().item()} to {y.max().item()}")
        return F.one_hot(y, self.n_classes).to(torch.float32)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of q_phi(z | x, y) for images ``x`` (N, 784) with labels ``y`` (N,)."""
        check_input(x, self.input_dim, "ConditionalVAE.encode")
        h = torch.relu(self.fc1(torch.cat([x, self.one_hot(y, x.shape[0]).to(x)], dim=1)))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's logits for codes ``z`` (N, latent_dim) under labels ``y`` (N,)."""
        check_input(z, self.latent_dim, "ConditionalVAE.decode")
        return self.fc4(torch.relu(self.fc3(torch.cat([z, self.one_hot(y, z.shape[0]).to(z)], dim=1))))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | int | None = None) -> torch.Tensor:
        """Decode ``n`` prior draws under labels ``y``: a tensor of ``n`` labels, or one class for all."""
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n,), y, dtype=torch.int64, device=self.device)
        return super().sample(n, generator, y)
