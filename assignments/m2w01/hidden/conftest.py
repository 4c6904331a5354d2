"""Shared data for m2w01's hidden suite (the trusted side only). The trusted implementations
(the DETR rebuilt from torch's modules, the criterion from transformers) live in test_hidden.py.

Fixture names start with `m2w01_` so that they cannot clash with other weeks' fixtures.
"""

from __future__ import annotations

import pytest

from autograder.kit.data import shapes


@pytest.fixture(scope="session")
def m2w01_shapes():
    """16 images of 32x32 pixels with 1-3 squares or discs (classes 0, 1), 40 objects in all, and
    DETR targets: labels and (cx, cy, w, h) boxes normalised by the image size."""
    data = shapes(16, seed=0)
    targets = [{"labels": data.labels[i], "boxes": data.normalized_boxes(i)} for i in range(len(data))]
    return data.images, targets
