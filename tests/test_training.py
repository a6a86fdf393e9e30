import math

import pytest
import torch

from vae_lib.checkpoints import (
    CheckpointError, TrainConfig, checkpoint_path, load_checkpoint, save_checkpoint, train_or_load,
)
from vae_lib.data import Split
from vae_lib.models import VAE, AutoEncoder
from vae_lib.training import History, adam, evaluate, fit, model_loss
from vae_lib.utils import describe_device, get_device, set_seed

from splits import make_split


def test_fit_lowers_the_loss_and_records_history():
    set_seed(0)
    model = VAE(latent_dim=2, hidden_dim=32)
    train, test = make_split(), make_split(64, train=False, seed=1)
    before = evaluate(model, test)
    history = fit(model, train, test, epochs=3, batch_size=32, lr=3e-3, progress=False)
    assert len(history) == 3 and len(history.test_loss) == 3 and len(history.seconds) == 3
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.test_loss[-1] < before["loss"]
    for i in range(3):
        assert math.isclose(history.train_loss[i], history.train_recon[i] + history.train_kl[i], rel_tol=1e-4)
        assert math.isclose(history.test_loss[i], history.test_recon[i] + history.test_kl[i], rel_tol=1e-4)
        assert history.seconds[i] > 0


def test_fit_train_loss_is_the_seeds_quantity():
    """The recorded train loss is the sum of the batch losses divided by N, as the seed prints."""
    set_seed(0)
    model = VAE(latent_dim=2, hidden_dim=16)
    split = make_split(100)
    lines = []
    history = fit(model, split, epochs=1, batch_size=32, progress=False, log=lines.append)
    # Replay the same epoch by hand with the same seeds.
    set_seed(0)
    replay = VAE(latent_dim=2, hidden_dim=16)
    opt = adam(replay.parameters(), lr=1e-3)
    total = 0.0
    for x, _ in split.batches(32):
        terms = model_loss(replay, x, reduction="sum")
        opt.zero_grad()
        terms.loss.backward()
        opt.step()
        total += terms.loss.item()
    assert math.isclose(history.train_loss[0], total / 100, rel_tol=1e-5)
    assert lines == [f"Epoch 1, Loss: {history.train_loss[0]:.4f}, seconds: {history.seconds[0]:.2f}"]


def test_adam_is_fused_on_the_cpu_and_plain_elsewhere():
    assert adam(VAE(hidden_dim=8).parameters()).defaults["fused"] is True
    meta = torch.nn.Linear(3, 2, device="meta")
    assert not adam(meta.parameters()).defaults["fused"]
    with pytest.raises(ValueError, match="at least one parameter"):
        adam([])


def test_fused_adam_takes_the_reference_adam_steps():
    """The fused kernel is a speed choice only: 30 steps land where the for-loop Adam lands."""
    set_seed(0)
    fused_model = VAE(latent_dim=2, hidden_dim=32)
    reference = VAE(latent_dim=2, hidden_dim=32)
    reference.load_state_dict(fused_model.state_dict())
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    fused_opt = adam(fused_model.parameters(), lr=1e-3)
    reference_opt = torch.optim.Adam(reference.parameters(), lr=1e-3, foreach=False)
    x = make_split(64).images
    for step in range(30):
        for model, opt in ((fused_model, fused_opt), (reference, reference_opt)):
            torch.manual_seed(step)  # the same eps in both models' reparameterization
            opt.zero_grad()
            model_loss(model, x, reduction="sum").loss.backward()
            opt.step()
    for name, ref in reference.state_dict().items():
        moved = (ref - start[name]).abs().max().item()
        assert moved > 1e-3, f"{name} hardly moved; the comparison would prove nothing"
        diff = (fused_model.state_dict()[name] - ref).abs().max().item()
        assert diff < 1e-3 * moved, f"{name}: fused Adam is {diff:.2e} away from the reference (moved {moved:.2e})"


def test_fit_validates_its_inputs():
    model = VAE(hidden_dim=8)
    split = make_split(16)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, split, epochs=0, progress=False)
    with pytest.raises(ValueError, match="likelihood"):
        fit(model, split, likelihood="laplace", progress=False)
    with pytest.raises(ValueError, match="beta"):
        fit(model, split, beta=-1, progress=False)
    bad = Split(split.images * 255, split.labels, split.classes, "mnist", True)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        fit(model, bad, progress=False)


def test_fit_stops_on_divergence():
    model = VAE(hidden_dim=8)
    with torch.no_grad():
        model.fc_logvar.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="smaller lr"):
        fit(model, make_split(16), epochs=1, progress=False)


def test_autoencoder_and_gaussian_and_binarized_training():
    set_seed(0)
    ae = AutoEncoder(hidden_dim=16)
    h = fit(ae, make_split(64), make_split(32, False), epochs=2, batch_size=16, progress=False)
    assert h.train_kl == [0.0, 0.0] and h.train_loss[1] < h.train_loss[0]
    vae = VAE(hidden_dim=16)
    h = fit(vae, make_split(64), epochs=3, batch_size=16, lr=3e-3, likelihood="gaussian", progress=False)
    assert h.train_loss[-1] < h.train_loss[0]
    x = make_split(8).images
    torch.manual_seed(7)
    logits, _, _ = vae(x)
    # The seed's "MSE": -log N(x; sigmoid(logits), I) with its constant, a true negative log density.
    expected = 0.5 * (x - torch.sigmoid(logits)).pow(2).sum(1) + 0.5 * 784 * math.log(2 * math.pi)
    torch.manual_seed(7)
    got = model_loss(vae, x, likelihood="gaussian", reduction="none").recon
    assert torch.allclose(got.detach(), expected.detach(), rtol=1e-5)
    assert vae.likelihood.name == "gaussian", "training with a likelihood makes it the model's"
    h = fit(VAE(hidden_dim=16), make_split(64), epochs=1, binarize=True, progress=False)
    assert math.isfinite(h.train_loss[0])


def test_evaluate_restores_training_mode_and_is_per_image():
    model = VAE(hidden_dim=8).train()
    split = make_split(10)
    ev = evaluate(model, split, batch_size=3)
    assert model.training
    torch.manual_seed(0)
    ev = evaluate(model, split, batch_size=3)
    torch.manual_seed(0)
    per = torch.cat([model_loss(model, x, reduction="none").loss for x, _ in split.batches(3, shuffle=False)])
    assert math.isclose(ev["loss"], per.mean().item(), rel_tol=1e-5)


def test_set_seed_makes_runs_repeatable_and_checks_its_argument():
    set_seed(3)
    a = torch.randn(3)
    set_seed(3)
    assert torch.equal(a, torch.randn(3))
    with pytest.raises(ValueError):
        set_seed(-1)
    with pytest.raises(ValueError):
        set_seed(1.5)


def test_get_device(monkeypatch, capsys):
    monkeypatch.setenv("VAE_DEVICE", "cpu")
    assert get_device().type == "cpu"
    assert "Using device: cpu" in capsys.readouterr().out
    monkeypatch.delenv("VAE_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device(verbose=False).type == expected
    if not torch.cuda.is_available():   # Apple's MPS only when asked for, even where it exists
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
        assert get_device(verbose=False).type == "cpu"
    monkeypatch.setenv("VAE_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="VAE_DEVICE"):
        get_device()
    assert describe_device("cpu").startswith("cpu (")


# --- checkpoints -----------------------------------------------------------------------------

CFG = TrainConfig(dataset="mnist", hidden_dim=16, epochs=2, batch_size=32)


def test_config_key_depends_on_every_field():
    assert CFG.key() == TrainConfig(dataset="mnist", hidden_dim=16, epochs=2, batch_size=32).key()
    for change in ({"dataset": "fashion-mnist"}, {"latent_dim": 3}, {"lr": 2e-3}, {"seed": 1}, {"beta": 2.0}):
        other = TrainConfig(**{**CFG.to_dict(), **change})
        assert other.key() != CFG.key() and checkpoint_path(other) != checkpoint_path(CFG)
    for change in ({"channels": 16}, {"warmup_epochs": 3}, {"free_bits": 0.5}, {"labels_per_class": 5},
                   {"labels_per_class": 5, "label_seed": 1}, {"cycles": 4}, {"capacity": 20.0, "capacity_gamma": 1.0},
                   {"prior": "vamp", "prior_components": 50}, {"prior": "mog", "prior_components": 50},
                   {"model": "hvae-top-down", "top_latent_dim": 4}, {"model": "vq", "codebook_size": 16},
                   {"model": "vq", "codebook_size": 16, "codebook": "ema"}, {"held_out_class": 0},
                   {"mutation_rate": 0.2}):
        assert TrainConfig(**{**CFG.to_dict(), **change}).key() != CFG.key()
    assert TrainConfig().to_dict() == {   # the seed's settings, on the course's default data set
        "dataset": "fashion-mnist", "model": "vae", "latent_dim": 2, "hidden_dim": 400, "epochs": 10, "batch_size": 128,
        "lr": 1e-3, "likelihood": "bernoulli", "beta": 1.0, "binarize": False, "seed": 0,
        "channels": 32, "warmup_epochs": 0, "free_bits": 0.0, "labels_per_class": 0, "label_seed": 0,
        "cycles": 0, "capacity": 0.0, "capacity_gamma": 0.0, "prior": "standard", "prior_components": 0, "prior_init": "random",
        "top_latent_dim": 0, "codebook_size": 0, "codebook": "", "held_out_class": -1, "mutation_rate": 0.0}


def test_fields_added_later_keep_the_existing_checkpoint_names():
    """These names were written by notebooks 04-07 before TrainConfig grew fields for Part II."""
    assert TrainConfig(dataset="fashion-mnist").filename() == "vae_fashion-mnist_z2_h400_e10_297298541dff.pt"
    assert TrainConfig().filename() == TrainConfig(dataset="fashion-mnist").filename()   # the default: the same name
    assert TrainConfig(dataset="fashion-mnist", model="ae").filename() == "ae_fashion-mnist_z2_h400_e10_02e0ebf8cc44.pt"
    assert TrainConfig(dataset="fashion-mnist", latent_dim=10, epochs=5).key() == "00d39f51af52"
    assert TrainConfig(dataset="fashion-mnist", latent_dim=20, binarize=True, epochs=4).key() == "b7ec7f115cd7"
    conv = TrainConfig(dataset="fashion-mnist", model="conv", channels=16)
    assert conv.filename().startswith("conv_fashion-mnist_z2_c16_e10_")


def test_train_or_load_trains_once_then_loads(tmp_path):
    train, test = make_split(), make_split(32, False)
    logs = []
    model, history = train_or_load(CFG, train, test, progress=False, log=logs.append)
    path = checkpoint_path(CFG)
    assert path.is_file() and "saved to" in logs[-1]
    again, history2 = train_or_load(CFG, train, test, progress=False, log=logs.append)
    assert logs[-1].startswith("Loaded")
    assert history2.to_dict() == history.to_dict()
    for (k, v), (_, w) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(v, w), k
    assert not again.training


def test_corrupt_checkpoint_is_reported_and_retrained():
    train = make_split(64)
    path = checkpoint_path(CFG)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint at all")
    logs = []
    model, _ = train_or_load(CFG, train, progress=False, log=logs.append)
    assert "Cannot use the checkpoint" in logs[0] and "not a readable checkpoint" in logs[0]
    load_checkpoint(path, CFG)  # now a good one


def test_mismatched_checkpoint_is_rejected(tmp_path):
    model = VAE(hidden_dim=16)
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, CFG, History(train_loss=[1.0], train_recon=[1.0], train_kl=[0.0],
                                              test_loss=[], test_recon=[], test_kl=[], seconds=[0.1]))
    load_checkpoint(path, CFG)
    other = TrainConfig(**{**CFG.to_dict(), "epochs": 3})
    with pytest.raises(CheckpointError, match="trained with"):
        load_checkpoint(path, other)
    # Same config claimed, but weights of another shape inside.
    save_checkpoint(path, VAE(hidden_dim=8), CFG, History())
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path, CFG)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt", CFG)
    torch.save({"format_version": 99}, path)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(path, CFG)


def test_checkpoint_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "config": CFG.to_dict(), "obj": make_split}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path, CFG)


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, VAE(hidden_dim=16), CFG, History())
    good = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, VAE(hidden_dim=16), CFG, History())
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_train_or_load_checks_the_dataset_name():
    with pytest.raises(ValueError, match="config.dataset"):
        train_or_load(TrainConfig(dataset="fashion-mnist"), make_split(8), progress=False)


def test_show_source_renders_several_objects():
    from vae_lib.models import VAE
    from vae_lib.utils import show_source

    md = show_source(VAE.encode, VAE.forward)
    assert md.data.startswith("```python\ndef encode(") and "def forward(" in md.data
    with pytest.raises(ValueError, match="at least one"):
        show_source()
    with pytest.raises(ValueError, match="cannot show"):
        show_source(42)


def test_fit_checks_batch_size_and_accepts_an_optimizer():
    model = VAE(hidden_dim=8)
    split = make_split(32)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, split, batch_size=0, progress=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    before = [p.clone() for p in model.parameters()]
    fit(model, split, epochs=1, optimizer=opt, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # lr 0: the given optimizer was used


def test_history_from_dict_rejects_wrong_keys():
    h = History([1.0], [1.0], [0.0], [], [], [], [0.1])
    assert History.from_dict(h.to_dict()) == h
    with pytest.raises(ValueError, match="exactly the keys"):
        History.from_dict({"train_loss": [1.0]})


def test_train_or_load_retrain_and_device_and_missing_test_curves():
    train, test = make_split(64), make_split(16, False)
    logs = []
    train_or_load(CFG, train, progress=False, log=logs.append)           # trained without test curves
    _, history = train_or_load(CFG, train, test, progress=False, log=logs.append)
    assert "without test-set evaluation" in logs[1] and len(history.test_loss) == CFG.epochs
    train_or_load(CFG, train, test, progress=False, retrain=True, log=logs.append)
    assert "saved to" in logs[-1]
    model, _ = load_checkpoint(checkpoint_path(CFG), CFG, device="cpu")
    assert next(model.parameters()).device.type == "cpu"


def test_check_device():
    from vae_lib.utils import check_device

    assert check_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="not a device name"):
        check_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            check_device("cuda", "--device")


def test_cpu_generator_orders_batches_the_same_on_any_device():
    split = make_split(20)
    a = torch.cat([y for _, y in split.batches(7, generator=torch.Generator().manual_seed(5))])
    b = torch.cat([y for _, y in split.to("cpu").batches(7, generator=torch.Generator().manual_seed(5))])
    assert torch.equal(a, b)


@pytest.mark.skipif(not (torch.cuda.is_available() or torch.backends.mps.is_available()), reason="needs a GPU")
def test_fit_and_evaluate_on_the_gpu():
    device = get_device(verbose=False)
    set_seed(0)
    model = VAE(hidden_dim=32).to(device)
    train, test = make_split().to(device), make_split(64, False).to(device)
    history = fit(model, train, test, epochs=2, batch_size=32, progress=False)
    assert history.train_loss[-1] < history.train_loss[0] and math.isfinite(history.test_loss[-1])
    order = [y for _, y in train.batches(50, generator=torch.Generator().manual_seed(0))]
    assert order[0].device.type == device.type
    with pytest.raises(ValueError, match="use split.to"):
        fit(model, train, make_split(8, False), epochs=1, progress=False)


# --- the KL term in practice (notebook 10) ---------------------------------------------------

def test_kl_weight_warms_up_linearly():
    from vae_lib.training import kl_weight

    assert [kl_weight(e, 1.0, 4) for e in (1, 2, 3, 4, 5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert kl_weight(1, 1.0, 100) == 0.01 and kl_weight(7, 0.5, 0) == 0.5
    for bad in ({"epoch": 0}, {"epoch": 1.5}, {"warmup_epochs": -1}, {"beta": -1.0}):
        with pytest.raises(ValueError):
            kl_weight(**{"epoch": 1, "beta": 1.0, "warmup_epochs": 2, **bad})


def test_free_bits_clamp_each_dimensions_batch_mean():
    from vae_lib.training import free_bits_kl

    # Batch means 0.2, 3.0, 0.0 and 0.6; the last dimension is below lambda = 0.5 in one image and above
    # it on average, so clamping each image's KL instead of the batch mean would give 0.5 + 1.1, not 1.2.
    kl = torch.tensor([[0.1, 2.0, 0.0, 0.1], [0.3, 4.0, 0.0, 1.1]], requires_grad=True)
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(7.6)
    assert free_bits_kl(kl, 0.5).item() == pytest.approx(2 * (0.5 + 3.0 + 0.5 + 0.6))
    free_bits_kl(kl, 0.5).backward()
    # Below lambda a dimension gets no gradient (it may rest at the prior); above, the plain one.
    assert torch.equal(kl.grad, torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="free_bits"):
        free_bits_kl(kl, -0.1)
    with pytest.raises(ValueError, match="shape"):
        free_bits_kl(torch.zeros(3), 0.5)


def test_history_reports_the_true_elbo_not_the_objective():
    """During warm-up the objective (recon + beta_t KL) is below the -ELBO; after it they agree."""
    set_seed(0)
    model = VAE(latent_dim=2, hidden_dim=32)
    h = fit(model, make_split(256), make_split(64, False, seed=1), epochs=5, batch_size=32, lr=3e-3,
            warmup_epochs=3, progress=False)
    assert h.beta == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0])
    for e in range(5):
        assert h.train_loss[e] == pytest.approx(h.train_recon[e] + h.train_kl[e], rel=1e-5)
        assert h.test_loss[e] == pytest.approx(h.test_recon[e] + h.test_kl[e], rel=1e-5)
        expected = h.train_recon[e] + h.beta[e] * h.train_kl[e]
        assert h.train_objective[e] == pytest.approx(expected, rel=1e-5)
    assert all(h.train_loss[e] - h.train_objective[e] > 0.1 for e in (0, 1)), "warm-up: they differ"
    assert all(h.train_loss[e] == pytest.approx(h.train_objective[e], rel=1e-6) for e in (2, 3, 4))
    # The test loss is the true -ELBO too: the same as evaluate's, which knows nothing of the objective.
    assert h.test_loss[-1] == pytest.approx(evaluate(model, make_split(64, False, seed=1))["loss"], rel=0.05)


def test_free_bits_raise_the_objective_above_the_elbo_where_the_kl_is_small():
    set_seed(0)
    model = VAE(latent_dim=8, hidden_dim=32)
    h = fit(model, make_split(128), epochs=2, batch_size=32, free_bits=2.0, progress=False)
    assert all(obj > loss for obj, loss in zip(h.train_objective, h.train_loss))


def test_callback_stops_and_first_epoch_continues_the_warm_up():
    set_seed(0)
    seen = []
    h = fit(VAE(hidden_dim=8), make_split(64), epochs=5, batch_size=32, warmup_epochs=4, first_epoch=3,
            progress=False, callback=lambda epoch, history: seen.append(epoch) or epoch == 4)
    assert seen == [3, 4] and len(h) == 2 and h.beta == [0.75, 1.0] and not h.interrupted
    with pytest.raises(ValueError, match="callback"):
        fit(VAE(hidden_dim=8), make_split(16), callback=3, progress=False)
    with pytest.raises(ValueError, match="first_epoch"):
        fit(VAE(hidden_dim=8), make_split(16), first_epoch=0, progress=False)


# --- nothing a learner trained is lost -------------------------------------------------------

class _Interrupting(VAE):
    """A VAE whose encoder interrupts training at its call ``at`` in training mode (one call per step):
    by raising, or by a real SIGINT."""

    def __init__(self, at, how):
        super().__init__(latent_dim=2, hidden_dim=16)
        self.at, self.how, self.calls = at, how, 0

    def encode(self, x, y=None):
        self.calls += self.training
        if self.training and self.calls == self.at:
            if self.how == "raise":
                raise KeyboardInterrupt
            import os
            import signal
            os.kill(os.getpid(), signal.SIGINT)
        return super().encode(x, y)


def _steps_recorded(model):
    """Adam whose every finished step keeps a copy of the weights."""
    opt = adam(model.parameters(), lr=3e-3)
    after = []
    step = opt.step

    def recording_step(*a, **k):
        out = step(*a, **k)
        after.append({k: v.clone() for k, v in model.state_dict().items()})
        return out

    opt.step = recording_step
    return opt, after


@pytest.mark.parametrize("how", ["raise", "signal"])
def test_an_interrupt_stops_at_the_end_of_a_step_and_keeps_the_work(how, capsys):
    set_seed(0)
    split = make_split(96)                     # 3 steps of 32 per epoch
    model = _Interrupting(at=3 + 2, how=how)   # in epoch 2, its 2nd step
    opt, after = _steps_recorded(model)
    h = fit(model, split, make_split(32, False), epochs=4, batch_size=32, optimizer=opt, progress=False)
    assert h.interrupted and len(h) == 1 and len(h.test_loss) == 1
    # A raised interrupt drops its unfinished step; a signal lets the current step finish first.
    assert len(after) == (4 if how == "raise" else 5)
    assert all(torch.equal(v, after[-1][k]) for k, v in model.state_dict().items()), "weights of the last step"
    assert "Interrupted: 1 of 4 epochs completed" in capsys.readouterr().out
    import signal
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "Ctrl-C behaves as before afterwards"


def test_an_interrupted_run_is_not_saved(monkeypatch):
    calls = {"n": 0}
    forward = VAE.encode

    def interrupting(self, x, y=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return forward(self, x, y)

    monkeypatch.setattr(VAE, "encode", interrupting)
    logs = []
    model, history = train_or_load(CFG, make_split(64), progress=False, log=logs.append)
    assert history.interrupted and len(history) < CFG.epochs and isinstance(model, VAE)
    assert not checkpoint_path(CFG).exists() and "Not saved" in logs[-1]


def test_a_failed_save_warns_and_returns_the_trained_model(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the checkpoint folder should be")
    with pytest.warns(UserWarning, match="could not save it") as warned:
        model, history = train_or_load(CFG, make_split(64), folder=blocker / "checkpoints", progress=False, log=None)
    message = str(warned[0].message)
    assert "VAE_CHECKPOINT_DIR" in message and str(blocker) in message
    assert isinstance(model, VAE) and len(history) == CFG.epochs


def test_a_checkpoint_from_other_code_is_reported_and_retrained(tmp_path):
    from vae_lib import checkpoints

    train_or_load(CFG, make_split(64), progress=False, log=None)
    path = checkpoint_path(CFG)
    payload = torch.load(path, weights_only=True)
    payload["code"] = "0123456789abcdef"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="made by other code"):
        load_checkpoint(path, CFG)
    logs = []
    train_or_load(CFG, make_split(64), progress=False, log=logs.append)
    assert "made by other code" in logs[0] and "saved to" in logs[-1]
    assert torch.load(path, weights_only=True)["code"] == checkpoints.code_fingerprint("vae")


def test_the_code_fingerprint_ignores_comments_and_docstrings_but_not_code():
    from vae_lib.checkpoints import _code_without_docstrings, code_fingerprint

    a = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    b = 'def f(x):\n    """Another doc, longer."""\n    # a comment\n    return x + 1\n'
    c = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert _code_without_docstrings(a) == _code_without_docstrings(b) != _code_without_docstrings(c)
    drawing = a + '\n\ndef draw_it(ax):\n    return ax.plot([1, 2])\n'
    assert _code_without_docstrings(drawing) == _code_without_docstrings(a), "a drawing function retrains nothing"
    two = a + "\n\ndef g():\n    return 1\n"
    assert _code_without_docstrings(two, keep=("f",)) == _code_without_docstrings(a, keep=("f",))
    assert _code_without_docstrings(two, keep=("f", "g")) != _code_without_docstrings(a, keep=("f", "g"))
    assert code_fingerprint() == code_fingerprint("vae") and len(code_fingerprint()) == 16
    # Each kind also hashes its own module: the conv net's code does not decide an MLP's checkpoint.
    assert code_fingerprint("conv") != code_fingerprint("vae") == code_fingerprint("ae")


class _Recorder(VAE):
    def __init__(self):
        super().__init__(latent_dim=2, hidden_dim=8)
        self.seen = []

    def encode(self, x, y=None):
        if self.training:
            self.seen.append(x.detach().clone())
        return super().encode(x, y)


def test_binarize_draws_a_fresh_binary_image_every_batch():
    """Dynamic binarization samples: the binary pixels average to the grey levels, and epochs differ."""
    grey = torch.linspace(0.02, 0.98, 784)
    split = Split(grey.expand(256, -1).clone(), torch.zeros(256, dtype=torch.long), ("one",), "mnist", True)
    set_seed(0)
    model = _Recorder()
    fit(model, split, epochs=20, batch_size=256, binarize=True, progress=False)
    draws = torch.cat(model.seen)                                            # (5120, 784)
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    se = (grey * (1 - grey) / len(draws)).sqrt()
    assert ((draws.mean(0) - grey).abs() <= 5 * se).all(), "the binary pixels do not average to the grey levels"
    assert not torch.equal(model.seen[0], model.seen[1]), "two epochs saw the same binary images"


def test_binarize_leaves_the_model_with_the_likelihood_it_was_trained_for():
    model = VAE(hidden_dim=8, likelihood="gaussian")
    fit(model, make_split(32), epochs=1, likelihood="bernoulli", binarize=True, progress=False)
    assert model.likelihood.name == "bernoulli"


def test_ctrl_c_in_the_callback_stops_before_another_step():
    import os
    import signal

    set_seed(0)
    model = VAE(latent_dim=2, hidden_dim=16)
    opt, after = _steps_recorded(model)

    def callback(epoch, history):
        os.kill(os.getpid(), signal.SIGINT)

    h = fit(model, make_split(96), epochs=3, batch_size=32, optimizer=opt, callback=callback, progress=False)
    assert h.interrupted and len(h) == 1 and len(after) == 3, "no step of epoch 2 may run"


def test_ctrl_c_during_the_last_evaluation_does_not_undo_a_finished_run(capsys):
    class Interrupting(VAE):
        evaluations = 0

        def forward(self, x, y=None):
            if not self.training:
                Interrupting.evaluations += 1
                if Interrupting.evaluations == 2:      # the test evaluation after the 2nd (last) epoch
                    import os
                    import signal
                    os.kill(os.getpid(), signal.SIGINT)
            return super().forward(x, y)

    seen = []
    h = fit(Interrupting(hidden_dim=8), make_split(64), make_split(16, False), epochs=2, batch_size=32,
            progress=False, callback=lambda epoch, history: seen.append(epoch))
    assert len(h) == 2 and not h.interrupted and seen == [1, 2]
    assert "Interrupted" not in capsys.readouterr().out


def test_checkpoints_are_readable_like_any_file(tmp_path):
    import os

    path = save_checkpoint(tmp_path / "c.pt", VAE(hidden_dim=8), CFG, History())
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_labelled_budget_trains_on_those_images_only_and_is_cached_under_its_own_name(tmp_path):
    from vae_lib.downstream import label_budget

    train = make_split(256)
    config = TrainConfig(dataset="mnist", latent_dim=2, hidden_dim=16, epochs=2, batch_size=8,
                         labels_per_class=12, label_seed=3)
    assert config.key() != TrainConfig(dataset="mnist", latent_dim=2, hidden_dim=16, epochs=2, batch_size=8).key()
    assert config.key() != TrainConfig(**{**config.to_dict(), "label_seed": 4}).key()
    assert "_l12s3_" in config.filename()
    logs = []
    model, history = train_or_load(config, train, folder=tmp_path, progress=False, log=logs.append)
    assert "saved to" in logs[-1]
    assert len(history) == 2
    # The same weights as fit on label_budget's images, with the same seed.
    set_seed(0)
    direct = config.build()
    fit(direct, label_budget(train, 12, 3).labelled, epochs=2, batch_size=8, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), direct.state_dict().values()))
    again, _ = train_or_load(config, train, folder=tmp_path, progress=False, log=logs.append)
    assert logs[-1].startswith("Loaded")
    with pytest.raises(ValueError, match="labels_per_class"):
        TrainConfig(labels_per_class=-1)


def test_a_checkpoint_saved_before_a_field_was_added_still_loads(tmp_path):
    config = TrainConfig(dataset="mnist", hidden_dim=16, epochs=1)
    model, history = train_or_load(config, make_split(32), folder=tmp_path, progress=False, log=None)
    path = checkpoint_path(config, tmp_path)
    payload = torch.load(path, weights_only=True)
    for field in ("labels_per_class", "label_seed", "free_bits"):
        del payload["config"][field]          # as a checkpoint written before these fields existed
    torch.save(payload, path)
    loaded, _ = load_checkpoint(path, config)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    with pytest.raises(CheckpointError, match="was trained with"):
        load_checkpoint(path, TrainConfig(dataset="mnist", hidden_dim=16, epochs=1, labels_per_class=2))


def test_a_change_to_the_code_of_training_changes_the_fingerprint_and_a_comment_does_not(monkeypatch):
    from pathlib import Path

    from vae_lib.checkpoints import code_fingerprint

    before = code_fingerprint("vae")
    read_text = Path.read_text

    def edited(extra):
        def read(self, *args, **kwargs):
            text = read_text(self, *args, **kwargs)
            return text + extra if self.name == "training.py" and self.parent.name == "vae_lib" else text
        return read

    monkeypatch.setattr(Path, "read_text", edited("\n# a comment only\n"))
    assert code_fingerprint("vae") == before
    monkeypatch.setattr(Path, "read_text", edited("\nDEFAULT_LR = 2e-3\n"))
    assert code_fingerprint("vae") != before, "a change to fit's module must make old checkpoints stale"


def test_cyclical_weight_rises_in_each_cycle_and_capacity_pulls_the_kl_to_its_target():
    from vae_lib.training import capacity_kl, cyclical_weight

    # 4 cycles, ramp 1/2: within each quarter the weight rises from 0 to beta over its first half
    assert [cyclical_weight(f, 2.0, cycles=4) for f in (0.0, 0.0625, 0.125, 0.2, 0.25, 0.3125, 1.0)] == \
        [0.0, 1.0, 2.0, 2.0, 0.0, 1.0, 2.0]
    assert cyclical_weight(0.4, 0.5, cycles=0) == 0.5
    with pytest.raises(ValueError, match="fraction"):
        cyclical_weight(1.5, cycles=2)
    kl = torch.tensor([[1.0, 2.0], [3.0, 4.0]])          # per image: 3 and 7 nats, mean 5
    assert capacity_kl(kl, 5.0, 10.0) == 0.0
    assert capacity_kl(kl, 2.0, 10.0) == pytest.approx(2 * 10 * 3)
    assert capacity_kl(kl, 9.0, 1.0) == pytest.approx(2 * 4)
    with pytest.raises(ValueError, match="capacity_gamma"):
        capacity_kl(kl, 1.0, -1.0)


def test_fit_with_cycles_or_capacity_records_the_true_elbo_and_refuses_conflicting_remedies():
    train = make_split(128)
    set_seed(0)
    h = fit(VAE(latent_dim=2, hidden_dim=16), train, epochs=4, batch_size=32, cycles=2, progress=False)
    # 4 steps an epoch, 2 cycles of 8 steps, each ramping over its first 4: the weight of each epoch's last step
    assert h.beta == [0.75, 1.0, 0.75, 1.0]
    assert h.train_objective[0] < h.train_loss[0] - 1e-3, "a weight below 1 makes the objective less than the -ELBO"
    set_seed(0)
    model = VAE(latent_dim=2, hidden_dim=16)
    test = make_split(64, False)
    h = fit(model, train, test, epochs=3, batch_size=32, capacity=6.0, capacity_gamma=50.0, progress=False)
    assert h.train_kl[-1] > 1.0, "capacity annealing should pull the KL up towards its target"
    assert all(abs(o - lo) > 1.0 for o, lo in zip(h.train_objective, h.train_loss)), "the objective is not the -ELBO"
    evals = torch.tensor([evaluate(model, test)["loss"] for _ in range(20)])   # one z per image: each is noisy
    assert abs(h.test_loss[-1] - evals.mean()) < 4 * evals.std(), "the history records the -ELBO"
    with pytest.raises(ValueError, match="beta=1"):
        fit(VAE(latent_dim=2, hidden_dim=16), train, epochs=1, beta=0.5, capacity_gamma=1.0, progress=False)
    with pytest.raises(ValueError, match="choose one"):
        fit(VAE(latent_dim=2, hidden_dim=16), train, epochs=1, warmup_epochs=1, cycles=2, progress=False)
    with pytest.raises(ValueError, match="replaces the KL term"):
        fit(VAE(latent_dim=2, hidden_dim=16), train, epochs=1, free_bits=0.1, capacity_gamma=1.0, progress=False)
    with pytest.raises(ValueError, match="cycles"):
        fit(VAE(latent_dim=2, hidden_dim=16), train, epochs=1, cycles=-1, progress=False)


def test_held_out_class_and_mutation_rate_change_what_is_trained(monkeypatch):
    """Notebook 16's nine-class model never sees the held-out class; its background model sees mutated images."""
    import vae_lib.checkpoints as checkpoints

    seen = []
    monkeypatch.setattr(checkpoints, "fit", lambda model, train, *a, **k: seen.append(train) or History())
    train = make_split(64)
    train_or_load(TrainConfig(dataset="mnist", hidden_dim=16, epochs=1, held_out_class=1), train, progress=False, log=None)
    assert len(seen[-1]) == int((train.labels == 0).sum()) and (seen[-1].labels == 0).all()
    train_or_load(TrainConfig(dataset="mnist", hidden_dim=16, epochs=1, mutation_rate=0.5), train, progress=False, log=None)
    changed = (seen[-1].images != train.images).float().mean().item()
    assert 0.4 < changed < 0.6 and len(seen[-1]) == len(train)
    with pytest.raises(ValueError, match="not a label"):
        train_or_load(TrainConfig(dataset="mnist", hidden_dim=16, epochs=1, held_out_class=5), train, progress=False)
    for bad in ({"held_out_class": -2}, {"mutation_rate": 1.5}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    assert TrainConfig(held_out_class=3, mutation_rate=0.2).filename().startswith("vae_fashion-mnist_z2_h400_e10_wo3_mu0.2_")
