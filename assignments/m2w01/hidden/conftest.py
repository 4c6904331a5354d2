"""Trusted pieces for m2w01's hidden suite (the trusted side only).

- `TrustedDETR`: the notebook's DETR rebuilt from torch's own modules under the same names
  (`nn.Transformer`, `nn.Conv2d`, `nn.Embedding`, `nn.Linear`), with the sine code written here
  from facebookresearch/detr's `PositionEmbeddingSine` (mask cumsum form), so that the
  student's model can hold the trusted weights and must compute the same outputs.
- `trusted_criterion`: Hugging Face transformers' DETR loss (`ImageLoss` with its
  `HungarianMatcher`), weighted as `ForObjectDetectionLoss` weights it, in float64.
- `m2w01_shapes`: the 16 training images of the convergence test and their targets.

transformers and torchvision are imported lazily: each costs seconds.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autograder.kit.data import shapes


def sine_position(h: int, w: int, num_pos_feats: int, dtype=torch.float64, temperature: float = 10000,
                  normalize: bool = True, scale: float = 2 * math.pi) -> torch.Tensor:
    """facebookresearch/detr's PositionEmbeddingSine for an unpadded [h, w] map: [2F, h, w]."""
    not_mask = torch.ones(1, h, w, dtype=torch.float64)
    y_embed, x_embed = not_mask.cumsum(1), not_mask.cumsum(2)
    if normalize:
        eps = 1e-6
        y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
        x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float64)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    pos_x, pos_y = x_embed[:, :, :, None] / dim_t, y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)[0].to(dtype)


class TrustedBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.num_channels = 64
        self.body = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x):
        return self.body(x)


class TrustedMLP(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        sizes = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


class TrustedDETR(nn.Module):
    """The paper's Listing 1 at toy size, with sine positions: the notebook's contract, by torch's modules."""

    def __init__(self, num_classes, num_queries=10, hidden_dim=64, nheads=4, num_encoder_layers=1,
                 num_decoder_layers=2, dim_feedforward=128):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.backbone = TrustedBackbone()
        self.input_proj = nn.Conv2d(64, hidden_dim, 1)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.transformer = nn.Transformer(hidden_dim, nheads, num_encoder_layers, num_decoder_layers,
                                          dim_feedforward, dropout=0.0, batch_first=True)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = TrustedMLP(hidden_dim, hidden_dim, 4, 3)

    def forward(self, images):
        f = self.input_proj(self.backbone(images))
        b, d, h, w = f.shape
        pos = sine_position(h, w, d // 2, dtype=f.dtype)
        src = (f + pos).reshape(b, d, h * w).permute(0, 2, 1)
        tgt = self.query_embed.weight[None].repeat(b, 1, 1)
        hs = self.transformer(src, tgt)
        return {"pred_logits": self.class_embed(hs), "pred_boxes": self.bbox_embed(hs).sigmoid()}


def trusted_criterion(logits, boxes, targets, eos_coef=0.1, class_weight=1.0, l1_weight=5.0, giou_weight=2.0):
    """transformers' ImageLoss (DETR's SetCriterion) with HungarianMatcher(class_weight, l1_weight,
    giou_weight); the total weighted as ForObjectDetectionLoss does, with class_weight on loss_ce."""
    from transformers.loss.loss_for_object_detection import HungarianMatcher, ImageLoss

    matcher = HungarianMatcher(class_cost=class_weight, bbox_cost=l1_weight, giou_cost=giou_weight)
    criterion = ImageLoss(matcher, num_classes=logits.shape[-1] - 1, eos_coef=eos_coef,
                          losses=["labels", "boxes"]).to(logits.dtype)
    hf_targets = [{"class_labels": t["labels"], "boxes": t["boxes"].to(boxes.dtype)} for t in targets]
    losses = criterion({"logits": logits, "pred_boxes": boxes}, hf_targets)
    losses["loss"] = class_weight * losses["loss_ce"] + l1_weight * losses["loss_bbox"] + giou_weight * losses["loss_giou"]
    return losses


@pytest.fixture(scope="session")
def m2w01_shapes():
    """16 images of 32x32 pixels with 1-3 squares or discs (classes 0, 1), 40 objects in all, and
    DETR targets: labels and (cx, cy, w, h) boxes normalised by the image size."""
    data = shapes(16, seed=0)
    targets = [{"labels": data.labels[i], "boxes": data.normalized_boxes(i)} for i in range(len(data))]
    return data.images, targets
