"""Notebook 11's downstream tools: the judge's cache, the label budget, the two classifiers, samples by class."""
import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from vae_lib.models.conditional import ConditionalVAE  # noqa: E402
from vae_lib.data import Split  # noqa: E402
from vae_lib.downstream import (  # noqa: E402
    Judge, JudgeConfig, LinearClassifier, NearestNeighbour, accuracy, class_shares, conditional_samples,
    draw_conditional_explorer, fit_linear_classifier, label_budget, train_or_load_judge,
)
from vae_lib.models import VAE  # noqa: E402


def _ten_classes(n=400, seed=0):
    """Ten classes of images, each a different band of bright pixels, with a little noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = 0.05 * torch.rand(n, 784, generator=g)
    for k in range(10):
        images[labels == k, 78 * k:78 * k + 78] += 0.9
    return Split(images.clamp(0, 1), labels, tuple(f"c{k}" for k in range(10)), "mnist", True)


def test_label_budget_hands_out_exactly_the_budgets_labels():
    train = _ten_classes(400)
    b = label_budget(train, 7, seed=3)
    assert len(b.labelled) == 70 and torch.bincount(b.labelled.labels, minlength=10).tolist() == [7] * 10
    assert b.unlabelled.labels is None and len(b.unlabelled) == 330, "the other images come without labels"
    assert torch.equal(b.labelled.images, train.images[b.index]) and torch.equal(b.labelled.labels, train.labels[b.index])
    rest = torch.ones(400, dtype=torch.bool)
    rest[b.index] = False
    assert torch.equal(b.unlabelled.images, train.images[rest]), "labelled and unlabelled images do not overlap"
    assert torch.equal(label_budget(train, 7, seed=3).index, b.index)
    assert not torch.equal(label_budget(train, 7, seed=4).index, b.index)
    with pytest.raises(ValueError, match="only 40 images"):
        label_budget(train, 41)
    with pytest.raises(ValueError, match="no labels"):
        label_budget(b.unlabelled, 1)


@pytest.mark.parametrize("make", [lambda: LinearClassifier(10, weight_decay=1e-3), NearestNeighbour])
def test_both_classifiers_learn_a_separable_problem_and_check_their_input(make):
    train, test = _ten_classes(200), _ten_classes(100, seed=1)
    clf = make().fit(train.images, train.labels)
    assert clf.error(test.images, test.labels) == 0.0
    shuffled = train.labels[torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    assert make().fit(train.images, shuffled).error(test.images, test.labels) > 0.5, "it must use the labels"
    with pytest.raises(ValueError):
        clf.predict(torch.rand(3, 5))
    with pytest.raises(ValueError):
        make().fit(train.images, train.labels[:10])


def test_linear_classifier_weight_decay_shrinks_and_fit_helper():
    train = _ten_classes(200)
    small = fit_linear_classifier(train.images, train.labels, 10, weight_decay=1e-4)
    large = fit_linear_classifier(train.images, train.labels, 10, weight_decay=1.0)
    assert large.linear.weight.norm() < small.linear.weight.norm()
    with pytest.raises(ValueError, match="weight_decay"):
        LinearClassifier(10, weight_decay=-1.0)
    with pytest.raises(ValueError, match="labels must lie"):
        LinearClassifier(3).fit(train.images, train.labels)
    with pytest.raises(ValueError, match="fit the classifier first"):
        LinearClassifier(10).predict(train.images)


def test_the_judge_is_trained_once_then_loaded(tmp_path):
    train, test = _ten_classes(400), _ten_classes(100, seed=1)
    config = JudgeConfig("mnist", hidden_dim=32, epochs=3, lr=3e-3)
    logs = []
    judge, acc = train_or_load_judge(config, train, test, folder=tmp_path, log=logs.append)
    assert isinstance(judge, Judge) and acc == 1.0 and "saved to" in logs[-1]
    again, acc2 = train_or_load_judge(config, train, test, folder=tmp_path, log=logs.append)
    assert logs[-1].startswith("Loaded") and acc2 == acc
    assert all(torch.equal(a, b) for a, b in zip(judge.state_dict().values(), again.state_dict().values()))
    (tmp_path / config.filename()).write_bytes(b"garbage")
    train_or_load_judge(config, train, test, folder=tmp_path, log=logs.append)
    assert "training the judge again" in logs[-2]
    assert accuracy(judge, test) == 1.0
    with pytest.raises(ValueError, match="config.dataset"):
        train_or_load_judge(JudgeConfig("fashion-mnist"), train, test, folder=tmp_path)


def test_conditional_samples_and_explorer():
    model = ConditionalVAE(latent_dim=2, hidden_dim=16, n_classes=10)
    images, labels = conditional_samples(model, 3, torch.Generator().manual_seed(0))
    assert images.shape == (30, 784) and labels.tolist() == sorted(list(range(10)) * 3)
    assert torch.allclose(class_shares(labels, 10), torch.full((10,), 0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match="conditional"):
        conditional_samples(VAE(hidden_dim=8), 3)
    fig = draw_conditional_explorer(model, 3, 0.5, -0.5, [f"c{k}" for k in range(10)])
    assert len(fig.axes) == 2 and "c3" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="class number"):
        draw_conditional_explorer(model, 10, 0.0, 0.0, [f"c{k}" for k in range(10)])
    with pytest.raises(ValueError, match="non-empty"):
        class_shares(torch.tensor([], dtype=torch.long), 10)
