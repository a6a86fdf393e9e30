import math

import matplotlib
import pytest
import torch

from vae_lib.data import mutate_pixels
from vae_lib.models import ConvVAE
from vae_lib.ood import (auroc, auroc_bound, auroc_text, auroc_uncertainty, background_share, bits_per_dim,
                         complexity_score, draw_ood_histograms, likelihood_ratio, likelihood_regret, png_bits_per_dim,
                         synthetic_sets, typicality_scores)

matplotlib.use("Agg")


def _brute_force_auroc(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    greater = (b[:, None] > a[None, :]).double().sum()
    ties = (b[:, None] == a[None, :]).double().sum()
    return ((greater + 0.5 * ties) / (a.numel() * b.numel())).item()


def test_auroc_counts_every_pair_as_a_brute_force_count_does():
    g = torch.Generator().manual_seed(0)
    for n_in, n_out in ((7, 5), (200, 120)):
        a = torch.randint(0, 6, (n_in,), generator=g).float()        # many ties
        b = torch.randint(2, 9, (n_out,), generator=g).float()
        assert auroc(a, b)[0] == pytest.approx(_brute_force_auroc(a, b), abs=1e-12)


def test_auroc_ranks_higher_scores_as_out_of_distribution():
    g = torch.Generator().manual_seed(1)
    scores_in, scores_out = torch.randn(500, generator=g), torch.randn(500, generator=g) + 2.0
    area, se = auroc(scores_in, scores_out)
    # two unit normals two apart: Phi(2 / sqrt 2) = 0.921
    assert area == pytest.approx(0.5 * (1 + math.erf(1.0)), abs=4 * se)
    assert auroc(scores_out, scores_in)[0] == pytest.approx(1 - area)
    assert auroc(torch.zeros(3), torch.ones(2)) == (1.0, 0.0)
    assert auroc(torch.ones(4), torch.ones(4))[0] == 0.5


def test_auroc_standard_error_matches_the_spread_over_repeats():
    g = torch.Generator().manual_seed(2)
    areas, ses = [], []
    for _ in range(300):
        area, se = auroc(torch.randn(60, generator=g), torch.randn(40, generator=g) + 1.0)
        areas.append(area)
        ses.append(se)
    spread = torch.tensor(areas).std().item()
    assert 0.8 < sum(ses) / len(ses) / spread < 1.25


def test_auroc_rejects_empty_or_infinite_scores():
    for a, b in ((torch.zeros(0), torch.ones(2)), (torch.tensor([0.0, math.inf]), torch.ones(2))):
        with pytest.raises(ValueError):
            auroc(a, b)


def test_png_length_is_in_bits_and_grows_with_complexity():
    g = torch.Generator().manual_seed(0)
    sets = synthetic_sets(torch.rand(8, 784, generator=g).mul(255).round().div(255), g)
    constant, noise = png_bits_per_dim(sets["constant"]), png_bits_per_dim(sets["uniform noise"])
    assert (constant < 1.0).all() and (noise > 8.0).all()    # noise cannot be compressed below its 8 bits
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.new("L", (28, 28), 0).save(buffer, format="PNG", compress_level=9)
    assert png_bits_per_dim(torch.zeros(1, 784)).item() == pytest.approx(8 * buffer.tell() / 784)
    with pytest.raises(ValueError):
        png_bits_per_dim(torch.zeros(2, 783))


def test_complexity_score_subtracts_bits_from_bits():
    png = torch.tensor([1.0, 3.0, 6.0])
    # a model whose -log p(x) equals the PNG length, in nats: L(x) bits/dim * 784 * ln 2
    nll_nats = png * 784 * math.log(2)
    assert torch.allclose(complexity_score(nll_nats, png), torch.zeros(3), atol=1e-5)
    assert torch.allclose(complexity_score(nll_nats + 784 * math.log(2), png), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError):
        complexity_score(nll_nats, png[:2])


def test_likelihood_ratio_and_typicality():
    assert torch.equal(likelihood_ratio(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 2.5])), torch.tensor([2.0, -0.5]))
    with pytest.raises(ValueError):
        likelihood_ratio(torch.ones(2), torch.ones(3))
    g = torch.Generator().manual_seed(0)
    typical = typicality_scores(torch.full((100,), 4.0), 4.0, 10, g)
    too_likely = typicality_scores(torch.full((100,), 3.0), 4.0, 10, g)
    assert typical.shape == (10,) and (typical == 0).all() and (too_likely == 1).all()
    assert typicality_scores(torch.arange(25.0), 0.0, 10, g).shape == (2,)
    with pytest.raises(ValueError):
        typicality_scores(torch.ones(5), 1.0, 6)


def test_synthetic_sets_and_mutation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 784, generator=g)
    sets = synthetic_sets(x, g)
    assert torch.equal(sets["inverted"], 1 - x)
    assert torch.equal(sets["flipped"].reshape(4, 28, 28)[:, 0], x.reshape(4, 28, 28)[:, -1])
    assert (sets["constant"] == sets["constant"][:, :1]).all()
    assert torch.equal(sets["uniform noise"] * 255, (sets["uniform noise"] * 255).round())
    assert torch.equal(mutate_pixels(x, 0.0, g), x)
    mutated = mutate_pixels(torch.zeros(100, 784), 0.3, g)
    assert 0.28 < (mutated != 0).float().mean() < 0.32    # 0.3 changed, 1 in 256 of them to 0 again
    assert background_share(torch.tensor([[0.0, 0.5, 0.0, 1.0]])).item() == 0.5
    with pytest.raises(ValueError):
        mutate_pixels(x, 1.5)


def test_bits_per_dim_and_likelihood_regret_on_a_small_model():
    torch.manual_seed(0)
    model = ConvVAE(4, 4, likelihood="discretized-logistic")
    x = torch.randint(0, 256, (3, 784)).float().div(255)
    bits = bits_per_dim(model, x, 4, torch.Generator().manual_seed(0))
    assert bits.shape == (3,) and (bits > 0).all()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    regret = likelihood_regret(model, x, steps=30, lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert regret.shape == (3,) and (regret > 0).all()       # fitting the encoder to one image helps it
    for k, v in model.state_dict().items():                  # ... and leaves the model as it was
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError):
        likelihood_regret(model, x, steps=0)


def test_draw_ood_histograms():
    scores = {"bits/dim": {"Fashion-MNIST test": torch.randn(50), "MNIST digits": torch.randn(40) - 1}}
    fig = draw_ood_histograms(scores, "bits/dim", "MNIST digits")
    assert "AUROC" in fig.axes[0].get_title() and "wrong way" in fig.axes[0].get_title()
    for score, ood_set in (("nope", "MNIST digits"), ("bits/dim", "nope")):
        with pytest.raises(ValueError):
            draw_ood_histograms(scores, score, ood_set)


def test_load_digits_falls_back_to_the_rehearsal_digits(monkeypatch):
    import vae_lib.ood as ood
    from vae_lib.data import DatasetUnavailableError, Split

    asked = []

    def fake_load_split(dataset, train=True, device="cpu", root=None, download=True):
        asked.append(dataset)
        if dataset == "mnist":
            raise DatasetUnavailableError("offline")
        return Split(torch.zeros(3, 784), torch.zeros(3, dtype=torch.long), tuple("0123456789"), dataset, train)

    monkeypatch.setattr(ood, "load_split", fake_load_split)
    digits = ood.load_digits()
    assert asked == ["mnist", "mnist-5k"] and digits.dataset == "mnist-5k" and not digits.train


def test_auroc_at_zero_or_one_reports_a_bound_not_a_zero_standard_error():
    area, se = auroc(torch.zeros(50), torch.ones(50))
    assert area == 1.0 and se == 0.0                         # Hanley-McNeil's formula degenerates here
    assert auroc_bound(1.0, 50, 50) == pytest.approx(0.94)   # the rule of three: 1 - 3/50
    assert auroc_bound(0.0, 500, 50) == pytest.approx(0.06)
    assert auroc_uncertainty(area, se, 50, 50) == pytest.approx(0.06)
    assert auroc_uncertainty(0.7, 0.02, 50, 50) == 0.02
    assert auroc_text(area, se, 50, 50) == "1.000 (≥ 0.940, 95%)" and "± 0.000" not in auroc_text(area, se, 50, 50)
    assert auroc_text(0.0, 0.0, 50, 50) == "0.000 (≤ 0.060, 95%)"
    assert auroc_text(0.7, 0.02, 50, 50) == "0.700 ± 0.020"
    assert auroc_text(0.99996, 0.00003, 500, 500) == "0.999960 ± 0.000030"
    assert not auroc_text(*auroc(torch.arange(500.0), torch.arange(499.0, 999.0)), 500, 500).endswith("± 0.000")
    with pytest.raises(ValueError):
        auroc_bound(0.7, 50, 50)
    with pytest.raises(ValueError):
        auroc_bound(1.0, 0, 50)


def test_likelihood_regret_restores_each_requires_grad_flag():
    torch.manual_seed(0)
    model = ConvVAE(4, 4, likelihood="discretized-logistic")
    frozen = [name for name, _ in model.named_parameters()][::2]
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    x = torch.randint(0, 256, (1, 784)).float().div(255)
    likelihood_regret(model, x, steps=2, generator=torch.Generator().manual_seed(0))
    assert [name for name, p in model.named_parameters() if not p.requires_grad] == frozen


def test_neg_elbo_agrees_with_the_library_importance_weights():
    from vae_lib.evaluation import importance_log_weights
    from vae_lib.ood import _neg_elbo

    torch.manual_seed(0)
    model = ConvVAE(4, 4, likelihood="discretized-logistic")
    x = torch.randint(0, 256, (2, 784)).float().div(255)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        log_w = importance_log_weights(model, x, 6, generator=torch.Generator().manual_seed(3))
        eps = torch.randn((6, 2, 4), dtype=torch.float64, generator=torch.Generator().manual_seed(3)).float()
        ours = _neg_elbo(model, x, mu, logvar, eps)
    assert torch.allclose(ours.double(), -log_w.mean(0), rtol=1e-4, atol=1e-2)


def test_bad_input_to_the_scores():
    with pytest.raises(ValueError, match="1-D"):
        typicality_scores(torch.ones(4, 2), 1.0, 2)
    with pytest.raises(ValueError, match="finite"):
        typicality_scores(torch.tensor([1.0, float("nan"), 1.0, 1.0]), 1.0, 2)
    with pytest.raises(ValueError, match="batch_size"):
        typicality_scores(torch.ones(4), 1.0, True)
    bits = torch.full((10,), 3.0)                            # 3 bits/dim passed where nats were due
    with pytest.raises(ValueError, match="nats"):
        complexity_score(bits, torch.ones(10))
    complexity_score(bits * 784 * math.log(2), torch.ones(10))   # the same in nats per image passes


def test_train_config_rejects_bad_held_out_class_and_mutation_rate():
    from vae_lib.checkpoints import TrainConfig

    for bad in ({"mutation_rate": "0.2"}, {"mutation_rate": True}, {"mutation_rate": 1.0},
                {"held_out_class": True}, {"held_out_class": "0"}, {"held_out_class": -2}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    TrainConfig(mutation_rate=0.2, held_out_class=0)


def test_the_held_out_and_mutation_selection_is_in_the_fingerprint_of_those_models_only(monkeypatch):
    import vae_lib.checkpoints as checkpoints
    from vae_lib.checkpoints import TrainConfig, config_fingerprint

    configs = {"default": TrainConfig(model="conv"), "held out": TrainConfig(model="conv", held_out_class=0),
               "background": TrainConfig(model="conv", held_out_class=0, mutation_rate=0.2)}
    before = {name: config_fingerprint(c) for name, c in configs.items()}
    source = checkpoints._data_source()
    changed = source.replace("train.subset(train.labels != held_out_class)", "train.subset(train.labels == held_out_class)")
    assert changed != source
    monkeypatch.setattr(checkpoints, "_data_source", lambda: changed)
    after = {name: config_fingerprint(c) for name, c in configs.items()}
    assert after["default"] == before["default"]
    assert after["held out"] != before["held out"] and after["background"] != before["background"]


def test_training_selection_holds_out_and_mutates():
    from vae_lib.data import Split, training_selection

    split = Split(torch.zeros(6, 784), torch.tensor([0, 1, 2, 0, 1, 2]), tuple("012"), "fashion-mnist", True)
    kept = training_selection(split, held_out_class=1)
    assert len(kept) == 4 and not (kept.labels == 1).any() and torch.equal(kept.images, torch.zeros(4, 784))
    mutated = training_selection(split, mutation_rate=0.5, seed=0)
    assert torch.equal(mutated.images, training_selection(split, mutation_rate=0.5, seed=0).images)
    assert (mutated.images != 0).any()
    assert training_selection(split) is split
    with pytest.raises(ValueError):
        training_selection(split, held_out_class=7)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mutate_pixels(torch.full((2, 784), 2.0), 0.1)
