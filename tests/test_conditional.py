"""The conditional VAE of notebook 11: labels in, the same interface, clear errors."""
import pytest
import torch

from vae_lib.models.conditional import ConditionalVAE
from vae_lib.data import Split
from vae_lib.evaluation import importance_log_weights
from vae_lib.training import evaluate, fit
from vae_lib.utils import set_seed

from splits import make_split


def test_labels_enter_encoder_and_decoder():
    set_seed(0)
    model = ConditionalVAE(latent_dim=2, hidden_dim=16, n_classes=3)
    x, y = torch.rand(4, 784), torch.tensor([0, 1, 2, 1])
    logits, mu, logvar = model(x, y)
    assert logits.shape == (4, 784) and mu.shape == (4, 2)
    z = torch.zeros(1, 2)
    a, b = model.decode(z, torch.tensor([0])), model.decode(z, torch.tensor([2]))
    assert not torch.allclose(a, b), "the label does not change what is decoded"
    assert not torch.allclose(model.encode(x[:1], y[:1])[0], model.encode(x[:1], torch.tensor([2]))[0])
    assert model.sample(5, y=1).shape == (5, 784)


@pytest.mark.parametrize("y, message", [
    (None, "needs the images' labels"),
    (torch.tensor([0, 3]), r"labels must lie in 0 \.\. 2"),
    (torch.tensor([0, -1]), r"labels must lie in 0 \.\. 2"),
    (torch.tensor([0.0, 1.0]), "integer tensor"),
    (torch.tensor([0]), "integer tensor of shape"),
])
def test_bad_labels_are_clear_errors(y, message):
    model = ConditionalVAE(latent_dim=2, hidden_dim=8, n_classes=3)
    with pytest.raises(ValueError, match=message):
        model(torch.rand(2, 784), y)


def test_fit_passes_the_labels_and_a_split_without_labels_is_refused():
    set_seed(0)
    model = ConditionalVAE(latent_dim=2, hidden_dim=16, n_classes=2)
    train, test = make_split(128), make_split(32, False)
    history = fit(model, train, test, epochs=2, batch_size=32, lr=3e-3, progress=False)
    assert history.train_loss[-1] < history.train_loss[0]
    assert evaluate(model, test)["kl"] > 0
    unlabelled = Split(train.images, None, train.classes, "mnist", True)
    with pytest.raises(ValueError, match="split without labels"):
        fit(model, unlabelled, epochs=1, progress=False)
    with pytest.raises(ValueError, match="conditional: pass the images' labels"):
        importance_log_weights(model, test.images[:4], 5)
    x, y = test.images[:4], torch.tensor([1, 0, 1, 1])
    mu, logvar = torch.zeros(4, 2), torch.zeros(4, 2)      # q = the prior: the weights are log p(x | z, y)
    log_w = importance_log_weights(model, x, 5, q=(mu, logvar), labels=y, generator=torch.Generator().manual_seed(0))
    eps = torch.randn((5, 4, 2), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # Each (sample, image) pair decoded on its own, with that image's label.
        loop = torch.tensor([[-torch.nn.functional.binary_cross_entropy_with_logits(
            model.decode_logits(eps[s, n:n + 1].float(), y[n:n + 1]), x[n:n + 1], reduction="sum").item()
            for n in range(4)] for s in range(5)], dtype=torch.float64)
    assert torch.allclose(log_w, loop, rtol=0, atol=1e-3), "labels and samples are paired wrongly"


def test_m2_sums_the_label_out_of_an_unlabelled_image_and_trains_its_classifier_on_the_labelled_ones():
    """The M2 terms by hand: a labelled image's -ELBO(x, y) + log K; an unlabelled one's
    sum_y q(y|x) -ELBO(x, y) + KL(q(y|x) || uniform); the classifier term only where the label is known."""
    from vae_lib.models.conditional import SemiSupervisedVAE
    from vae_lib.likelihoods import get_likelihood
    from vae_lib.losses import gaussian_kl_per_dim

    set_seed(0)
    model = SemiSupervisedVAE(latent_dim=2, hidden_dim=16, n_classes=3, classifier_weight=7.0)
    lik = get_likelihood("bernoulli")
    x, y = torch.rand(3, 784), torch.tensor([2, -1, 0])
    torch.manual_seed(1)
    rec, kl, extra = model.loss_terms(x, y, lik)
    assert rec.shape == (3,) and kl.shape == (3, 3) and extra.shape == (3,)
    # the same draws, image by image (the forward pass draws labelled rows first, then 3 copies of the unlabelled one)
    torch.manual_seed(1)
    xs, ys = torch.cat([x[[0, 2]], x[[1]].repeat(3, 1)]), torch.tensor([2, 0, 0, 1, 2])
    params, mu, logvar = model(xs, ys)
    rec_rows, kl_rows = lik.nll(params, xs), gaussian_kl_per_dim(mu, logvar)
    log_q = torch.log_softmax(model.classify(x), 1)
    q1 = log_q[1].exp()
    assert torch.allclose(rec[0], rec_rows[0]) and torch.allclose(rec[2], rec_rows[1])
    assert torch.allclose(rec[1], (q1 * rec_rows[2:]).sum())
    assert torch.allclose(kl[0], torch.cat([kl_rows[0], torch.tensor([torch.log(torch.tensor(3.0))])]))
    assert torch.allclose(kl[1, :2], (q1[:, None] * kl_rows[2:]).sum(0))
    assert torch.allclose(kl[1, 2], (q1 * (log_q[1] + torch.log(torch.tensor(3.0)))).sum(), atol=1e-6) and kl[1, 2] >= 0
    assert extra[1] == 0 and torch.allclose(extra[[0, 2]], -7.0 * log_q[[0, 2], [2, 0]])


def test_m2_learns_to_classify_from_few_labels_through_fit():
    from vae_lib.models.conditional import SemiSupervisedVAE
    from vae_lib.downstream import label_budget, semi_supervised_split

    set_seed(0)
    train, test = make_split(256), make_split(64, False)
    budget = label_budget(train, 4, seed=0)
    split = semi_supervised_split(budget, labelled_share=0.1)
    assert (split.labels == -1).sum() == len(budget.unlabelled) and set(split.labels[split.labels >= 0].tolist()) <= {0, 1}
    assert abs((split.labels >= 0).float().mean().item() - 0.1) < 0.05
    model = SemiSupervisedVAE(latent_dim=2, hidden_dim=32, n_classes=2, classifier_weight=10.0)
    history = fit(model, split, test, epochs=3, batch_size=32, lr=3e-3, progress=False)
    assert history.train_loss[-1] < history.train_loss[0]
    # the classifier term adds to the ELBO: visibly while the classifier learns, then it falls towards 0
    assert history.train_objective[0] > history.train_loss[0] + 0.01
    assert all(o > lo - 1e-3 for o, lo in zip(history.train_objective, history.train_loss))
    assert (model.predict(test.images) == test.labels).float().mean() > 0.9
    with pytest.raises(ValueError, match="labelled_share"):
        semi_supervised_split(budget, labelled_share=1.0)
