"""The benchmark's own arithmetic and measurements: the FLOP floor, the step's anatomy, peak memory
and the report's table."""
import statistics
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.run import (
    course_epochs, cuda_graph_epochs, epoch_flops, fresh_model, markdown, matmul_throughput, peak_memory_mb,
    reset_peak_memory, step_anatomy,
)
from vae_lib.models import VAE
from vae_lib.training import model_loss

from splits import make_split


def test_epoch_flops_matches_torchs_flop_counter():
    model = VAE(latent_dim=2, hidden_dim=400)
    x = torch.rand(128, 784)
    with FlopCounterMode(display=False) as counter:
        model_loss(model, x, reduction="sum", validate=False).loss.backward()
    assert counter.get_total_flops() == epoch_flops(128)


def test_matmul_throughput_is_positive_and_finite():
    flops = matmul_throughput(torch.device("cpu"), repeats=5)
    assert 1e6 < flops < 1e15


def test_markdown_table_has_one_row_per_variant():
    row = {"variant": "course", "batch_size": 128, "lr": 1e-3, "seconds_per_epoch": 2.0,
           "images_per_second": 30000.0, "ratio_to_textbook": 0.25, "ratio_to_floor": 1.4,
           "peak_memory_mb": 900.0, "test_loss": 264.5}
    report = {"device": "cpu (2 threads)", "dataset": "fashion-mnist", "epochs": 10, "torch": "2.15",
              "torchvision": "0.29", "python": "3.11", "date": "2026-11-21",
              "floor": {"epoch_gflop": 189.0, "matmul_gflops": 100.0, "seconds": 1.89},
              "variants": [dict(row, variant="textbook", ratio_to_textbook=1.0), row],
              "course": [{"notebook": "01_elbo.ipynb", "seconds": 20.0, "passed": True}],
              "anatomy": {"batch_size": 128, "steps": 300, "floor_ms": 2.4, "matmuls_alone_ms": 2.5,
                          "bernoulli_loss_alone_ms": 0.4,
                          "ms_per_step": {"batch": 0.1, "forward": 1.5, "backward": 2.0, "adam": 0.4,
                                          "adam_default_kernel": 1.2, "total": 4.0}}}
    text = markdown(report)
    assert "| course | 128 | 0.001 | 2.000 | 30,000 | 0.250 | 1.40 | 900 | 264.50 |" in text
    assert "| **all notebooks** | **20.0** |" in text
    assert "| zero the gradients, backward pass | 2.000 | 50% |" in text
    assert "| **step** | **4.000** | |" in text
    assert "five large matmuls take 2.500 ms (the floor per step is 2.400 ms)" in text


def test_step_anatomy_times_every_part_of_a_real_step():
    split = make_split(8 * 30)
    init_state = VAE(latent_dim=2, hidden_dim=400).state_dict()
    a = step_anatomy(split, init_state, torch.device("cpu"), batch=8, steps=5)
    ms = a["ms_per_step"]
    assert set(ms) == {"batch", "forward", "backward", "adam", "adam_default_kernel", "total"}
    assert all(v > 0 for v in ms.values())
    assert abs(ms["total"] - (ms["batch"] + ms["forward"] + ms["backward"] + ms["adam"])) < 1e-9
    assert a["matmuls_alone_ms"] > 0 and a["bernoulli_loss_alone_ms"] > 0
    with pytest.raises(ValueError, match="needs at least 45 batches of 8"):
        step_anatomy(split, init_state, torch.device("cpu"), batch=8, steps=25)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
def test_peak_memory_is_per_variant_on_the_cpu():
    """Each variant's peak is its own: a big allocation before the reset does not count after it."""
    cpu = torch.device("cpu")
    reset_peak_memory(cpu)
    big = torch.ones(50_000_000)  # 200 MB, touched
    with_big = peak_memory_mb(cpu)
    del big
    reset_peak_memory(cpu)
    after_reset = peak_memory_mb(cpu)
    assert with_big - after_reset > 150
    small = torch.ones(5_000_000)  # 20 MB
    assert peak_memory_mb(cpu) - after_reset < 100
    del small


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA-graph variant needs a CUDA GPU")
def test_cuda_graph_variant_trains_like_the_eager_course_step():
    """Replaying the captured step trains the model as the eager step does: same start, similar end."""
    cuda = torch.device("cuda")
    split = make_split(2000).to(cuda)
    torch.manual_seed(0)
    init_state = VAE(latent_dim=2, hidden_dim=400).state_dict()
    start_loss = model_loss(fresh_model(cuda, init_state), split.images, reduction="mean").loss.item()
    losses = {}
    for name, run in (("eager", course_epochs), ("graph", cuda_graph_epochs)):
        model = fresh_model(cuda, init_state)
        torch.manual_seed(1)
        seconds = run(model, split, 3, 128, 1e-3, cuda)  # 2000 = 15 full batches + a partial one of 80
        assert len(seconds) == 3 and all(s > 0 for s in seconds)
        with torch.no_grad():
            losses[name] = model_loss(model, split.images, reduction="mean").loss.item()
    assert losses["graph"] < 0.8 * start_loss, (start_loss, losses)
    assert abs(losses["graph"] - losses["eager"]) < 0.05 * losses["eager"], losses


def test_conv_layers_are_timed_with_their_training_flops():
    from benchmarks.run import conv_layer_ms
    from vae_lib.models.conv import ConvVAE, conv_vae_flops

    model = ConvVAE(latent_dim=2, channels=4)
    rows = conv_layer_ms(model, torch.device("cpu"), batch=8)
    assert set(rows) == {"conv1", "conv2", "deconv1", "deconv2"} and all(r["ms"] > 0 for r in rows.values())
    linear = 3 * (2 * 2 * model.features * 2) + 3 * (2 * 2 * model.features)   # fc_mu, fc_logvar, fc_dec: 3 passes
    assert sum(r["gflop"] for r in rows.values()) * 1e9 == pytest.approx(8 * (conv_vae_flops(model)["training"] - linear))


def test_markdown_reports_the_conv_vae_against_its_floor():
    row = {"variant": "course", "batch_size": 128, "lr": 1e-3, "seconds_per_epoch": 2.0,
           "images_per_second": 30000.0, "ratio_to_textbook": 0.25, "ratio_to_floor": 1.4,
           "peak_memory_mb": 900.0, "test_loss": 264.5}
    report = {"device": "cpu", "dataset": "fashion-mnist", "epochs": 10, "torch": "2.14", "torchvision": "0.29",
              "python": "3.11", "date": "2026-12-01", "floor": {"epoch_gflop": 189.0, "matmul_gflops": 100.0, "seconds": 1.89},
              "variants": [dict(row, variant="textbook", ratio_to_textbook=1.0)],
              "conv": {"channels": 16, "latent_dim": 2, "batch_size": 128, "lr": 3e-3, "epochs": 10,
                       "seconds_per_epoch": 9.5, "test_loss": 271.0, "epoch_gflop": 323.0, "floor_seconds": 3.23,
                       "ratio_to_floor": 2.94, "steps_per_epoch": 469,
                       "layers": {"conv1": {"ms": 2.0, "gflop": 0.026, "gflops_per_s": 13.0}}}}
    text = markdown(report)
    assert "9.500 s per epoch" in text and "2.9x its floor" in text and "| conv1 | 2.000 | 0.026 | 13.0 |" in text


def test_conv_widths_trains_each_width_and_tabulates_it():
    from benchmarks.conv_widths import markdown as widths_markdown
    from benchmarks.conv_widths import widths

    train, test = make_split(256), make_split(64, train=False, seed=1)
    rows = widths(train, test, [2, 16], epochs=3, log=lambda line: None)
    assert [r["model"] for r in rows] == ["MLP 400", "conv 2/4", "conv 16/32"]
    assert all(len(r["seconds"]) == 3 for r in rows)
    assert all(r["seconds_per_epoch"] == statistics.median(r["seconds"][1:]) for r in rows)   # the first is not timed
    assert [r["time_vs_conv16"] for r in rows] == [r["seconds_per_epoch"] / rows[2]["seconds_per_epoch"] for r in rows]
    assert rows[2]["time_vs_conv16"] == 1.0
    assert rows[1]["training_flops_per_image"] < rows[2]["training_flops_per_image"]
    assert rows[0]["training_flops_per_image"] == epoch_flops(1)
    report = {"device": "cpu (2 threads)", "dataset": "mnist", "epochs": 3, "torch": "2.14", "python": "3.11",
              "date": "2026-12-05", "rows": rows}
    table = widths_markdown(report)
    assert table.count("\n| ") == 1 + len(rows) and "| conv 16/32 | 0.003 | 5.4 |" in table
    assert f"| {rows[1]['time_vs_conv16']:.2f} |" in table.splitlines()[-2]
    without_16 = widths_markdown(dict(report, rows=[dict(r, time_vs_conv16=None) for r in rows[:2]]))
    assert "× conv 16/32 (not run)" in without_16


@pytest.mark.parametrize("channels, epochs, message", [([4], 1, "epochs"), ([0], 2, "positive"), ([], 2, "positive"),
                                                       ([True], 2, "positive"), ([4, 4], 2, "repeat")])
def test_conv_widths_refuses_bad_arguments(channels, epochs, message):
    from benchmarks.conv_widths import widths

    with pytest.raises(ValueError, match=message):
        widths(make_split(32), make_split(16, train=False), channels, epochs=epochs)


@pytest.mark.parametrize("argv, message", [(["--epochs", "1"], "--epochs must be at least 2"),
                                           (["--channels", "0"], "--channels must be positive and distinct"),
                                           (["--channels", "8", "8"], "--channels must be positive and distinct")])
def test_conv_widths_command_line_refuses_bad_arguments(argv, message, capsys):
    from benchmarks.conv_widths import main as widths_main

    with pytest.raises(SystemExit) as exit_info:
        widths_main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
