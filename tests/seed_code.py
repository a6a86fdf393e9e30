"""The seed's model and loss, taken from the seed script itself (not retyped), for side-by-side tests.

The seed script loads MNIST when imported, so instead of importing it we lift the class ``VAE`` and
the function ``loss_function`` out of its source with ``ast`` and run just those. When the seed
file is not beside the repository, the verbatim copy from ``vae_seed.md`` below is used.
"""
from __future__ import annotations

import ast
from pathlib import Path

import torch
import torch.nn as nn

SEED_FILE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "seed_vae.py"

# Verbatim from shared/seed/vae_seed.md, used only if the seed script is absent.
SEED_SOURCE_FALLBACK = '''
class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()
        # Encoder
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)
        # Decoder
        self.fc3 = nn.Linear(latent_dim, hidden_dim)
        self.fc4 = nn.Linear(hidden_dim, input_dim)

    def encode(self, x):
        h = torch.relu(self.fc1(x))
        mu = self.fc_mu(h)
        logvar = self.fc_logvar(h)
        return mu, logvar

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h = torch.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h))  # Output in [0,1], suitable for MNIST

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar

def loss_function(recon_x, x, mu, logvar):
    BCE = nn.functional.binary_cross_entropy(recon_x, x, reduction='sum')  # Reconstruction loss
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())  # KL divergence
    return BCE + KLD
'''


def seed_namespace(latent_dim: int = 2, hidden_dim: int = 400) -> dict:
    """Run the seed's ``VAE`` class and ``loss_function`` and return them in a namespace."""
    source = SEED_FILE.read_text() if SEED_FILE.is_file() else SEED_SOURCE_FALLBACK
    tree = ast.parse(source)
    keep = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))
            and n.name in ("VAE", "loss_function")]
    assert {n.name for n in keep} == {"VAE", "loss_function"}, "the seed's VAE or loss_function is missing"
    ns = {"torch": torch, "nn": nn, "input_dim": 784, "hidden_dim": hidden_dim, "latent_dim": latent_dim}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(SEED_FILE), "exec"), ns)
    return ns
