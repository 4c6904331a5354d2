"""Trusted evaluation of features: the metrics that decide a score are computed here, on the
trusted side, from features the worker returned for inputs the trusted side chose.

- `knn_predict`: DINO's weighted k-nearest-neighbour vote (cosine similarity, the top k
  neighbours vote for their class with weight exp(similarity / T); k = 20, T = 0.07 as in
  DINO's evaluation code).
- `fit_linear_probe`: multinomial logistic regression with an L2 penalty on the weights, the
  objective of scikit-learn's `LogisticRegression(C=C)`: C·Σ cross-entropy + ½‖W‖², or, divided
  by C·N, mean cross-entropy + ‖W‖² / (2·C·N). Solved in float64 with L-BFGS; no scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def knn_scores(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, num_classes: int,
               k: int = 20, temperature: float = 0.07) -> torch.Tensor:
    """[n_test, num_classes] vote totals of the k most cosine-similar training features."""
    train = F.normalize(train.double(), dim=1)
    test = F.normalize(test.double(), dim=1)
    similarity = test @ train.T
    top, index = similarity.topk(min(k, len(train)), dim=1)
    votes = torch.zeros(len(test), num_classes, dtype=torch.float64)
    return votes.scatter_add_(1, train_labels.long()[index], (top / temperature).exp())


def knn_predict(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, num_classes: int,
                k: int = 20, temperature: float = 0.07) -> torch.Tensor:
    return knn_scores(train, train_labels, test, num_classes, k, temperature).argmax(1)


def knn_accuracy(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                 k: int = 20, temperature: float = 0.07) -> float:
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    predicted = knn_predict(train, train_labels, test, num_classes, k, temperature)
    return float((predicted == test_labels.long()).double().mean())


@dataclass
class LinearProbe:
    weight: torch.Tensor  # [classes, features]
    bias: torch.Tensor    # [classes]

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features.double() @ self.weight.T + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(features).argmax(1)

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.predict(features) == labels.long()).double().mean())


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, C: float = 1.0, max_iter: int = 500,
                     num_classes: int | None = None) -> LinearProbe:
    """The probe scikit-learn's `LogisticRegression(C=C)` fits (its default lbfgs, multinomial)."""
    x = features.detach().double()
    y = labels.long()
    classes = num_classes or int(y.max()) + 1
    weight = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    penalty = 1.0 / (2.0 * C * len(x))
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, tolerance_grad=1e-10,
                                  tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    return LinearProbe(weight.detach(), bias.detach())


def linear_probe_accuracy(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor,
                          test_labels: torch.Tensor, C: float = 1.0) -> float:
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    return fit_linear_probe(train, train_labels, C, num_classes=num_classes).accuracy(test, test_labels)
