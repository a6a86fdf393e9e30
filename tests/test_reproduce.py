"""The reproduction of Norouzi et al.'s VAE (benchmarks/reproduce.py): the same code path, unit-test sized.

The full protocol runs for hours (``make reproduce``); here its smoke protocol trains on 300 real
Fashion-MNIST images for at most 4 epochs, is interrupted, resumes, and writes its results.
"""
import json
import math
import os
import signal

import pytest
import torch

from benchmarks import reproduce
from vae_lib.data import DEBIAN_FASHION_MNIST
from vae_lib.models import GatedVAE

pytestmark = pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(),
                                reason="needs Fashion-MNIST from Debian's dataset-fashion-mnist")


def test_the_protocols_splits_follow_the_reference_code(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "data"))
    train, val, test = reproduce.splits(reproduce.SMOKE, "cpu")
    assert len(train) == 300 and len(val) == 100 and len(test) == 50
    for split in (val, test):
        assert set(split.images.unique().tolist()) == {0.0, 1.0}, "validation and test are binarized once"
    assert not set(train.images.unique().tolist()) <= {0.0, 1.0}, "training images stay grey (binarized per batch)"
    full = reproduce.Protocol()
    assert (full.n_train, full.n_val, full.latent_dim, full.batch_size, full.lr, full.warmup_epochs, full.patience,
            full.max_epochs, full.importance_samples) == (50_000, 10_000, 40, 100, 5e-4, 100, 50, 2000, 5000)


def test_adam_normgrad_normalises_each_gradient():
    p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    q = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    p.grad, q.grad = torch.tensor([30.0, 40.0]), torch.tensor([0.3, 0.4])
    a, b = reproduce.AdamNormGrad([p], lr=0.1), reproduce.AdamNormGrad([q], lr=0.1)
    a.step()
    b.step()
    assert torch.allclose(p, q), "a gradient's scale must not matter after the normalisation"
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.8]), atol=1e-6)


def test_adam_normgrad_takes_the_reference_codes_steps():
    """The fused, all-at-once version against the reference's loop: each gradient divided by its norm
    + 1e-7, one parameter at a time, then plain (for-loop) Adam."""
    g = torch.Generator().manual_seed(0)
    shapes = [(30, 20), (30,), (5, 30), (5,)]
    start = [torch.randn(s, generator=g) for s in shapes]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    ref = [torch.nn.Parameter(t.clone()) for t in start]
    opt = reproduce.AdamNormGrad(ours, lr=5e-3)
    assert opt.defaults["fused"], "on the CPU the fused kernel is used"
    ref_opt = torch.optim.Adam(ref, lr=5e-3, foreach=False)
    for _ in range(25):
        grads = [torch.randn(s, generator=g) * 10 ** torch.randint(-3, 3, (), generator=g).item() for s in shapes]
        for p, q, grad in zip(ours, ref, grads):
            p.grad, q.grad = grad.clone(), grad.clone()
        opt.step()
        with torch.no_grad():
            for q in ref:
                q.grad.div_(q.grad.norm(2) + 1e-7)
        ref_opt.step()
    moved = max((q - t).abs().max().item() for q, t in zip(ref, start))
    gap = max((p - q).abs().max().item() for p, q in zip(ours, ref))
    assert moved > 0.05 and gap < 1e-4 * moved, f"the parameters differ by {gap:.2e} after moving {moved:.2e}"


def test_gated_vae_matches_the_reference_architecture():
    model = GatedVAE()
    assert model.latent_dim == 40 and model.hidden_dim == 300
    mu, logvar = model.encode(torch.rand(5, 784))
    assert mu.shape == (5, 40) and logvar.min() >= -6 and logvar.max() <= 2
    with torch.no_grad():
        model.fc_logvar.bias.fill_(100.0)
    assert model.encode(torch.rand(2, 784))[1].max() == 2.0, "log sigma^2 is clipped by the hardtanh"
    w = model.encoder[0].h.weight
    assert abs(w.std().item() - (2 / 784) ** 0.5) < 0.005, "He initialisation, N(0, 2 / fan_in)"


def test_smoke_run_is_interrupted_resumes_exactly_and_writes_its_results(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "data"))
    # One run straight through, for reference.
    straight = tmp_path / "straight"
    assert reproduce.run_protocol(reproduce.SMOKE, straight, straight / "state", "cpu", straight / "log.txt") == 0
    expected = json.loads((straight / "reproduce_smoke.json").read_text())

    out, folder, log = tmp_path / "results", tmp_path / "state", tmp_path / "log.txt"
    forward, calls = GatedVAE.encode, {"n": 0}

    def interrupting(self, x, y=None):
        calls["n"] += self.training
        if self.training and calls["n"] == 6 + 2:    # 6 steps per epoch: the 2nd step of epoch 2
            os.kill(os.getpid(), signal.SIGINT)       # as Ctrl-C would: training stops after this step
        return forward(self, x, y)

    monkeypatch.setattr(GatedVAE, "encode", interrupting)
    assert reproduce.run_protocol(reproduce.SMOKE, out, folder, "cpu", log) == 130
    state = torch.load(folder / "gated_vae_smoke.pt", weights_only=True)
    assert state["epoch"] == 1 and not state["done"] and len(state["val_loss"]) == 1
    assert not (out / "reproduce_smoke.json").exists()

    monkeypatch.setattr(GatedVAE, "encode", forward)
    assert reproduce.run_protocol(reproduce.SMOKE, out, folder, "cpu", log) == 0
    assert "Resuming from" in log.read_text() and "1 epochs done" in log.read_text()
    report = json.loads((out / "reproduce_smoke.json").read_text())
    # The saved state was the end of epoch 1, random state included: the resumed run is the straight run.
    assert report["val_loss"] == expected["val_loss"] and report["nll"] == expected["nll"]
    assert report["epochs_run"] == len(report["val_loss"]) and 2 <= report["epochs_run"] <= 4
    assert 1 <= report["best_epoch"] <= report["epochs_run"]
    assert report["nll"] > 0 and report["nll_se"] > 0 and report["nll"] <= report["test_elbo"] + 4 * report["nll_se"]
    assert report["difference"] == pytest.approx(report["nll"] - 228.70)
    md = (out / "reproduce_smoke.md").read_text()
    assert "228.70" in md and f"{report['nll']:.2f}" in md


def test_a_state_file_that_cannot_be_resumed_is_kept_not_overwritten(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "data"))
    folder, log = tmp_path / "state", tmp_path / "log.txt"
    folder.mkdir()
    hours_of_work = b"a state written by another version of the code"
    (folder / "gated_vae_smoke.pt").write_bytes(hours_of_work)
    (folder / "gated_vae_smoke_unusable_1.pt").write_bytes(b"kept by an earlier run")
    assert reproduce.run_protocol(reproduce.SMOKE, tmp_path / "results", folder, "cpu", log) == 0
    assert (folder / "gated_vae_smoke_unusable_2.pt").read_bytes() == hours_of_work
    assert (folder / "gated_vae_smoke_unusable_1.pt").read_bytes() == b"kept by an earlier run"
    assert "Cannot resume" in log.read_text() and "gated_vae_smoke_unusable_2.pt" in log.read_text()
    assert torch.load(folder / "gated_vae_smoke.pt", weights_only=True)["done"], "the new run saved its own state"


def test_the_vampprior_run_has_its_own_files_and_the_papers_vampprior_number(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "data"))
    out, folder = tmp_path / "results", tmp_path / "state"
    assert reproduce.run_protocol(reproduce.SMOKE_VAMP, out, folder, "cpu", tmp_path / "log.txt") == 0
    report = json.loads((out / "reproduce_vamp_smoke.json").read_text())
    assert report["protocol"]["prior"] == "vamp" and report["paper_nll"] == 227.35
    assert report["difference"] == pytest.approx(report["nll"] - 227.35) and math.isfinite(report["nll"])
    state = torch.load(folder / "gated_vae_vamp_smoke.pt", weights_only=True)
    assert state["model"]["prior.raw_inputs"].shape == (10, 784), "the pseudo-inputs are saved with the model"
    assert "VampPrior (K = 10)" in (out / "reproduce_vamp_smoke.md").read_text()
    assert not (out / "reproduce_smoke.json").exists() and not (folder / "gated_vae_smoke.pt").exists()
    assert reproduce.FULL[1].prior == "vamp" and reproduce.FULL[1].components == reproduce.VAMP_COMPONENTS
    assert reproduce.FULL[1].full and not reproduce.SMOKE_VAMP.full


def test_the_hvae_run_has_its_own_files_and_the_papers_hvae_number(tmp_path, monkeypatch):
    """``--model hvae --smoke`` end to end through the command line: the two-level model of the reference
    code, trained and evaluated by the smoke protocol, in files that no other run writes."""
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VAE_OUTPUTS_DIR", str(tmp_path / "outputs"))
    out, folder = tmp_path / "results", tmp_path / "state"
    assert reproduce.main(["--model", "hvae", "--smoke", "--device", "cpu", "--out", str(out),
                           "--checkpoints", str(folder)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["reproduce_hvae_smoke.json", "reproduce_hvae_smoke.md"]
    assert [p.name for p in folder.iterdir()] == ["gated_vae_hvae_smoke.pt"]
    assert (tmp_path / "outputs" / "reproduce" / "log_hvae_smoke.txt").is_file()
    report = json.loads((out / "reproduce_hvae_smoke.json").read_text())
    assert report["protocol"]["model"] == "hvae" and report["paper_nll"] == 227.37
    assert report["difference"] == pytest.approx(report["nll"] - 227.37) and math.isfinite(report["nll"])
    assert 2 <= report["epochs_run"] <= 4 and report["nll"] <= report["test_elbo"] + 4 * report["nll_se"]
    z1_kl, z2_kl = report["test_kl_layers"]
    assert z1_kl > 0 and z2_kl > 0, "both layers' KL terms are reported"
    state = torch.load(folder / "gated_vae_hvae_smoke.pt", weights_only=True)
    assert state["model"]["q_z1_layers_joint.0.h.weight"].shape == (300, 600), "the two-level model was trained"
    md = (out / "reproduce_hvae_smoke.md").read_text()
    assert "227.37" in md and "--model hvae" in md and "two-level HVAE" in md and f"{report['nll']:.2f}" in md
