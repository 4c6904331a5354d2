"""Trusted evaluation: DINO's weighted kNN against a one-query-at-a-time loop, and the linear
probe against scikit-learn's LogisticRegression."""

import math

import pytest
import torch

from autograder.kit.probes import fit_linear_probe, knn_accuracy, knn_scores


def knn_loop(train, train_labels, test, num_classes, k, temperature):
    scores = torch.zeros(len(test), num_classes, dtype=torch.float64)
    for i, query in enumerate(test):
        sims = sorted(((float(query @ t / (query.norm() * t.norm())), j) for j, t in enumerate(train)), reverse=True)
        for s, j in sims[:k]:
            scores[i, int(train_labels[j])] += math.exp(s / temperature)
    return scores


@pytest.mark.parametrize("k, temperature", [(20, 0.07), (3, 0.5)])
def test_knn_scores_match_a_plain_loop(k, temperature):
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.randn(7, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(4, (40,), generator=g)
    expected = knn_loop(train, labels, test, 4, k, temperature)
    assert torch.allclose(knn_scores(train, labels, test, 4, k, temperature), expected, rtol=1e-12)


def test_knn_accuracy_is_one_on_separated_clusters_and_chance_on_noise():
    g = torch.Generator().manual_seed(1)
    centres = 10 * torch.eye(5)
    y, yt = torch.randint(5, (200,), generator=g), torch.randint(5, (100,), generator=g)
    x, xt = centres[y] + torch.randn(200, 5, generator=g), centres[yt] + torch.randn(100, 5, generator=g)
    assert knn_accuracy(x, y, xt, yt) == 1.0
    assert knn_accuracy(torch.randn(200, 5, generator=g), y, torch.randn(100, 5, generator=g), yt) < 0.45


@pytest.mark.parametrize("C", [1.0, 0.05])
def test_linear_probe_matches_scikit_learn(C):
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(2)
    labels = torch.multinomial(torch.tensor([3.0, 2.0, 1.0]), 150, replacement=True, generator=g)
    features = torch.randn(150, 4, generator=g, dtype=torch.float64)
    features[:, :3] += 1.5 * torch.nn.functional.one_hot(labels, 3).double()
    ours = fit_linear_probe(features, labels, C=C)
    theirs = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(features.numpy(), labels.numpy())
    probabilities = ours.logits(features).softmax(1)
    # both solve one strictly convex problem to a gradient tolerance of ~1e-10: 1e-6 is many times their gap
    assert torch.allclose(probabilities, torch.tensor(theirs.predict_proba(features.numpy())), atol=1e-6)
