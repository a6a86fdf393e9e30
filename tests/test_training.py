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
    expected = 0.5 * (x - torch.sigmoid(logits)).pow(2).sum(1)  # the Gaussian term takes pixel means
    torch.manual_seed(7)
    got = model_loss(vae, x, likelihood="gaussian", reduction="none").recon
    assert torch.allclose(got.detach(), expected.detach(), rtol=1e-5)
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
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert get_device(verbose=False).type == expected
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
    assert TrainConfig().to_dict() == {
        "dataset": "mnist", "model": "vae", "latent_dim": 2, "hidden_dim": 400, "epochs": 10, "batch_size": 128,
        "lr": 1e-3, "likelihood": "bernoulli", "beta": 1.0, "binarize": False, "seed": 0}


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
