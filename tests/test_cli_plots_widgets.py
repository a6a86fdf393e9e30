import os
import re
import subprocess
import sys

import matplotlib
import pytest
import torch
from pathlib import Path

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vae_lib.plots import image_grid, name_classes, plot_history, save_figure, show_images  # noqa: E402
from vae_lib.train import main, parse_args  # noqa: E402
from vae_lib.training import History  # noqa: E402
from vae_lib.widgets import slider_explorer  # noqa: E402
from conftest import write_tiny_dataset  # noqa: E402


def test_cli_defaults_are_the_seeds():
    args = parse_args([])
    assert (args.latent_dim, args.hidden_dim, args.batch_size, args.epochs, args.lr) == (2, 400, 128, 10, 1e-3)
    with pytest.raises(SystemExit):
        parse_args(["--epochs", "0"])


def test_cli_trains_prints_seed_lines_and_saves_samples(tmp_path, monkeypatch, capsys):
    write_tiny_dataset(tmp_path / "d", "MNIST", n_train=64, n_test=16)
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "d"))
    out = tmp_path / "samples.png"
    assert main(["--dataset", "mnist", "--epochs", "2", "--hidden-dim", "16", "--batch-size", "16",
                 "--samples", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    epochs = re.findall(r"^Epoch (\d+), Loss: ([0-9.]+), Test: ([0-9.]+), seconds: [0-9.]+$", text, re.M)
    assert [e[0] for e in epochs] == ["1", "2"]
    from PIL import Image
    with Image.open(out) as im:
        assert im.size == (8 * 28 + 9 * 2, 8 * 28 + 9 * 2)  # 64 samples, 8 per row, 2-pixel padding


def test_cli_reports_bad_dataset_and_missing_data(tmp_path, monkeypatch, capsys):
    assert main(["--dataset", "cifar"]) == 2
    assert "Valid names" in capsys.readouterr().err
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("vae_lib.data.datasets.MNIST.download", lambda self: (_ for _ in ()).throw(RuntimeError("offline")))
    assert main(["--dataset", "mnist", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "dataset-fashion-mnist" in err and err.startswith("error: ") and err.count("\n") == 1


def test_cli_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "vae_lib.train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--latent-dim" in result.stdout


def test_image_grid_and_show_images():
    grid = image_grid(torch.rand(10, 784), nrow=5)
    assert grid.shape == (2 * 28 + 3 * 2, 5 * 28 + 6 * 2)
    assert image_grid(torch.rand(4, 1, 28, 28), nrow=2).shape == (62, 62)
    with pytest.raises(ValueError):
        image_grid(torch.rand(4, 3, 28, 28))
    ax = show_images(torch.rand(8, 784), nrow=4, title="t")
    assert ax.get_title() == "t"
    plt.close("all")


def test_plot_history_and_save_figure(tmp_path):
    h = History([3.0, 2.0], [2.5, 1.5], [0.5, 0.5], [3.1, 2.1], [2.6, 1.6], [0.5, 0.5], [1.0, 1.0])
    fig = plot_history(h)
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 2
    path = save_figure(fig, "04_history", "mnist", folder=tmp_path)
    assert path == tmp_path / "04_history_mnist.png" and path.stat().st_size > 1000
    # Without a folder it goes to VAE_FIGURES_DIR (under test a temporary one), never to the committed figures/.
    default = save_figure(fig, "01_gap")
    assert default == Path(os.environ["VAE_FIGURES_DIR"]) / "01_gap.png" and default.is_file()
    with pytest.raises(ValueError):
        save_figure(fig, "a/b")
    with pytest.raises(ValueError, match="empty"):
        plot_history(History())
    plt.close("all")


def test_slider_explorer_wires_sliders_to_the_draw_function():
    import ipywidgets as widgets

    calls = []

    def draw(a, b):
        calls.append((a, b))
        plt.figure()

    a, b = widgets.FloatSlider(value=0.5, min=0, max=1), widgets.IntSlider(value=2, min=0, max=5)
    box = slider_explorer(draw, {"a": a, "b": b}, height="300px")
    assert calls == [(0.5, 2)]  # drawn once with the initial values
    a.value = 0.75
    assert calls[-1] == (0.75, 2)
    assert box.output.layout.height == "300px"
    with pytest.raises(ValueError):
        slider_explorer(draw, {})
    with pytest.raises(ValueError):
        slider_explorer(draw, {"a": 1.0})
    plt.close("all")


def test_cli_rejects_an_unavailable_device(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def _tiny(tmp_path, monkeypatch):
    write_tiny_dataset(tmp_path / "d", "MNIST", n_train=64, n_test=16)
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "d"))
    return ["--dataset", "mnist", "--hidden-dim", "16", "--batch-size", "16", "--device", "cpu",
            "--samples", str(tmp_path / "s.png")]


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_reports_a_diverging_run_in_one_line(tmp_path, monkeypatch, capsys):
    assert main(_tiny(tmp_path, monkeypatch) + ["--epochs", "3", "--lr", "1e12"]) == 2
    _one_error_line(capsys, "training diverged", "--lr 1e+12")


def test_cli_reports_unreadable_data_in_one_line(tmp_path, monkeypatch, capsys):
    args = _tiny(tmp_path, monkeypatch)
    images = tmp_path / "d" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])        # truncated
    assert main(args + ["--epochs", "1"]) == 2
    _one_error_line(capsys, "unreadable", "truncated or corrupt")


def test_cli_reports_a_failing_device_in_one_line(tmp_path, monkeypatch, capsys):
    def vanished(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be ...")

    monkeypatch.setattr("vae_lib.train.fit", vanished)
    assert main(_tiny(tmp_path, monkeypatch) + ["--epochs", "1"]) == 2
    _one_error_line(capsys, "training on cpu", "CUDA error: an illegal memory access")


def test_cli_reports_samples_it_cannot_write_in_one_line(tmp_path, monkeypatch, capsys):
    args = _tiny(tmp_path, monkeypatch)
    (tmp_path / "blocker").write_text("a file, not a folder")
    args[args.index("--samples") + 1] = str(tmp_path / "blocker" / "s.png")
    assert main(args + ["--epochs", "1"]) == 2
    _one_error_line(capsys, "cannot save the samples", "--samples")


def test_cli_ctrl_c_says_how_far_it_got_and_exits_130(tmp_path, monkeypatch, capsys):
    import os
    import signal

    from vae_lib.models import VAE

    forward, calls = VAE.encode, {"n": 0}

    def interrupting(self, x, y=None):
        calls["n"] += self.training
        if self.training and calls["n"] == 6:       # epoch 2 of 4 steps per epoch
            os.kill(os.getpid(), signal.SIGINT)
        return forward(self, x, y)

    monkeypatch.setattr(VAE, "encode", interrupting)
    assert main(_tiny(tmp_path, monkeypatch) + ["--epochs", "3"]) == 130
    out, err = capsys.readouterr()
    assert err.strip() == "interrupted: 1 of 3 epochs completed; no samples saved", "one line says how far it got"
    assert "Interrupted" not in out and re.findall(r"^Epoch \d+", out, re.M) == ["Epoch 1"]
    assert not (tmp_path / "s.png").exists()


def test_cli_ctrl_c_outside_a_step_says_where_it_was(tmp_path, monkeypatch, capsys):
    args = _tiny(tmp_path, monkeypatch) + ["--epochs", "3"]

    def stopped_loading(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("vae_lib.train.load_data", stopped_loading)
    assert main(args) == 130
    assert capsys.readouterr().err.strip() == "interrupted while loading the data; no samples saved"
    monkeypatch.undo()

    def second_ctrl_c(model, train, test, log=None, **k):
        log("Epoch 1, Loss: 500.0000, Test: 490.0000, seconds: 0.10")
        raise KeyboardInterrupt                  # pressed twice: it ends fit at once

    args = _tiny(tmp_path, monkeypatch) + ["--epochs", "3"]
    monkeypatch.setattr("vae_lib.train.fit", second_ctrl_c)
    assert main(args) == 130
    assert capsys.readouterr().err.strip() == "interrupted while training, 1 of 3 epochs completed; no samples saved"


def test_name_classes_puts_each_name_at_its_median_and_rejects_bad_input():
    _, ax = plt.subplots()
    points = torch.tensor([[0.0, 0.0], [2.0, 2.0], [4.0, 4.0], [10.0, -1.0], [12.0, -3.0]])
    texts = name_classes(ax, points, torch.tensor([0, 0, 0, 2, 2]), ["a", "b", "c"])
    assert [(t.get_text(), t.get_position()) for t in texts] == [("a", (2.0, 2.0)), ("c", (11.0, -2.0))]
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        name_classes(ax, torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), ["a"])
    with pytest.raises(ValueError, match="index the 2 class names"):
        name_classes(ax, points, torch.tensor([0, 1, 2, 0, 0]), ["a", "b"])
    plt.close("all")
