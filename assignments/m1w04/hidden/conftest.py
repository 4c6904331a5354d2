"""Shared data and trusted models for m1w04's hidden suite (the trusted side only).

Fixture names start with `m1w04_` so that they cannot clash with other weeks' fixtures.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autograder.kit.data import digits


@pytest.fixture(scope="session")
def m1w04_vit():
    """timm's VisionTransformer class (the notebook's ViT takes the same arguments and weights)."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer


@pytest.fixture(scope="session")
def m1w04_digits() -> dict[str, torch.Tensor]:
    """scikit-learn's 8x8 digits in [0, 1], [n, 1, 8, 8]; a fixed split of 1297 train / 500 test."""
    split = digits()
    images, labels = torch.cat([split.x_train, split.x_test]), torch.cat([split.y_train, split.y_test])
    train, test = torch.arange(len(split.x_train)), torch.arange(len(split.x_train), len(images))
    return {"images": images, "train": train, "test": test, "labels": labels}


@pytest.fixture(scope="session")
def m1w04_random_backbone(m1w04_vit) -> dict:
    """A frozen random ViT for the digits probes: PyTorch's default init for every Linear and Conv,
    class token and position embeddings N(0, 0.5^2) (so that the random network knows where each
    patch is). Returns the config and the state dict to load into the notebook's ViT."""
    cfg = dict(img_size=8, patch_size=2, in_chans=1, num_classes=0, embed_dim=64, depth=3, num_heads=4,
               mlp_ratio=2.0)
    model = m1w04_vit(**cfg)
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            module.reset_parameters()
    with torch.no_grad():
        model.pos_embed.normal_(0.0, 0.5)
        model.cls_token.normal_(0.0, 0.5)
    return {"cfg": cfg, "state": {k: v.clone() for k, v in model.state_dict().items()}}


def noisy_stripes(n: int, seed: int, size: int = 16, patch: int = 4):
    """Noise images, each with one patch-aligned striped object (horizontal: class 0, vertical:
    class 1) at a random patch; returns images [n, 1, size, size], labels [n] and the object's
    patch mask [n, P] (row-major)."""
    g = torch.Generator().manual_seed(seed)
    grid = size // patch
    images = 0.3 * torch.randn(n, 1, size, size, generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(0, grid * grid, (n,), generator=g)
    stripes = torch.zeros(2, patch, patch)
    stripes[0, ::2, :] = 1.0
    stripes[1, :, ::2] = 1.0
    for i in range(n):
        r, c = divmod(int(where[i]), grid)
        images[i, 0, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] += 2.0 * stripes[labels[i]]
    return images, labels, F.one_hot(where, grid * grid).bool()


@pytest.fixture(scope="session")
def m1w04_object_vit(m1w04_vit) -> dict:
    """A one-block timm ViT trained here (150 AdamW steps, about 1-2 s) to classify the stripes of an
    object hidden in noise: its class token can only do so by attending to the object's patch.
    Measured over 8 init seeds: 100% accuracy, 0.95-1.00 of the last layer's class-token attention
    (mean over heads) on the object patch, against 1/16 before training."""
    cfg = dict(img_size=16, patch_size=4, in_chans=1, num_classes=2, embed_dim=32, depth=1, num_heads=2,
               mlp_ratio=2.0)
    images, labels, _ = noisy_stripes(2048, seed=100)
    torch.manual_seed(0)
    model = m1w04_vit(**cfg)
    untrained = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    batches = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(images), (64,), generator=batches)
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    x, y, mask = noisy_stripes(64, seed=999)
    return {"cfg": cfg, "trained": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "untrained": untrained, "x": x, "y": y, "mask": mask}
