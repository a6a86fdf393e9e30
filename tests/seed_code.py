"""The textbook VAE's model and loss, taken from its script itself (``textbook/vae.py``, not retyped),
for side-by-side tests.

The script loads MNIST when run, so instead of importing it we lift the class ``VAE`` and the
function ``loss_function`` out of its source with ``ast`` and run just those.
"""
from __future__ import annotations

import ast
from pathlib import Path

import torch
import torch.nn as nn

SEED_FILE = Path(__file__).resolve().parents[1] / "textbook" / "vae.py"


def seed_namespace(latent_dim: int = 2, hidden_dim: int = 400) -> dict:
    """Run the textbook script's ``VAE`` class and ``loss_function`` and return them in a namespace."""
    source = SEED_FILE.read_text()
    tree = ast.parse(source)
    keep = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))
            and n.name in ("VAE", "loss_function")]
    assert {n.name for n in keep} == {"VAE", "loss_function"}, "the seed's VAE or loss_function is missing"
    ns = {"torch": torch, "nn": nn, "input_dim": 784, "hidden_dim": hidden_dim, "latent_dim": latent_dim}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(SEED_FILE), "exec"), ns)
    return ns
