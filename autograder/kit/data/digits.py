"""scikit-learn's 8x8 digits (1797 images shipped inside the package), and the same digits
shifted on a larger canvas."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from autograder.kit.seeding import generator

TEST_SIZE = 500


@dataclass(frozen=True)
class Split:
    """Images [n, 1, H, W] in [0, 1] (float32) and integer labels, train and test."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"x_train": self.x_train, "y_train": self.y_train, "x_test": self.x_test, "y_test": self.y_test}


@lru_cache(maxsize=1)
def _all_digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.tensor(data.target, dtype=torch.long)


def digits(seed: int = 0, test_size: int = TEST_SIZE) -> Split:
    """All 1797 digits in [0, 1], shuffled by `seed`; the last `test_size` are the test set
    (seed 0: the 1297 / 500 split every Module 1 notebook uses)."""
    images, labels = _all_digits()
    order = torch.randperm(len(images), generator=generator(seed))
    train, test = order[:-test_size], order[-test_size:]
    return Split(images[train], labels[train], images[test], labels[test])


def shifted_digits(seed: int = 0, canvas: int = 16, test_size: int = TEST_SIZE) -> Split:
    """The digits split of `digits(seed)`, each pasted at a uniformly random offset on a
    `canvas` x `canvas` black image: the class is the same wherever the digit lies, so a
    model must learn some translation invariance (raw-pixel kNN falls from 0.98 to about 0.5)."""
    if canvas < 8:
        raise ValueError(f"canvas must be at least 8 pixels (the digits are 8x8), not {canvas}")
    split = digits(seed, test_size)
    g = generator(seed + 1)

    def place(images: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(images), 1, canvas, canvas)
        offsets = torch.randint(0, canvas - 7, (len(images), 2), generator=g)
        for i, (dy, dx) in enumerate(offsets.tolist()):
            out[i, :, dy:dy + 8, dx:dx + 8] = images[i]
        return out

    return Split(place(split.x_train), split.y_train, place(split.x_test), split.y_test)
