"""Trusted implementations and data for m2w03's hidden suite (the trusted side only).

The trusted losses are the libraries' own: DETR's `dice_loss` and `sigmoid_focal_loss` from
transformers' loss module, Mask2Former's `pair_wise_dice_loss` and
`pair_wise_sigmoid_cross_entropy_loss`, and torchvision's `masks_to_boxes` and
`sigmoid_focal_loss`, imported when the first test asks for them (a few seconds, paid once per
grading process). OKS comes from pycocotools' `COCOeval.computeOks`. Fixture names start with `m2w03_`.
"""

from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from autograder.kit.data import shapes


@pytest.fixture(scope="session")
def m2w03_lib() -> types.SimpleNamespace:
    """The trusted libraries' functions (see the module docstring)."""
    from torchvision.ops import masks_to_boxes, sigmoid_focal_loss
    from transformers.loss.loss_for_object_detection import dice_loss
    from transformers.loss.loss_for_object_detection import sigmoid_focal_loss as detr_focal_loss
    from transformers.models.mask2former.modeling_mask2former import (
        pair_wise_dice_loss, pair_wise_sigmoid_cross_entropy_loss)

    return types.SimpleNamespace(dice_loss=dice_loss, focal_loss=detr_focal_loss,
                                 pair_wise_dice=pair_wise_dice_loss, pair_wise_ce=pair_wise_sigmoid_cross_entropy_loss,
                                 masks_to_boxes=masks_to_boxes, tv_focal_loss=sigmoid_focal_loss)


# -- trusted modules, written here -------------------------------------------------------------------
class TrustedMLP(nn.Module):
    """DETR's MLP with the given block's names (layers.i)."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class TrustedMaskHead(nn.Module):
    def __init__(self, hidden_dim, num_classes, mask_dim, num_layers=3):
        super().__init__()
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = TrustedMLP(hidden_dim, hidden_dim, mask_dim, num_layers)

    def forward(self, queries, pixel_embed):
        q = F.layer_norm(queries, queries.shape[-1:], self.decoder_norm.weight, self.decoder_norm.bias, 1e-5)
        m = self.mask_embed(q)                                            # [B, Q, C]
        # the dot product per pixel, as a batched matrix product over the flattened pixels
        b, c, h, w = pixel_embed.shape
        masks = torch.bmm(m, pixel_embed.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return self.class_embed(q), masks


class TrustedKeypointHead(nn.Module):
    def __init__(self, hidden_dim, num_keypoints, num_layers=3):
        super().__init__()
        self.keypoint_embed = TrustedMLP(hidden_dim, hidden_dim, 2 * num_keypoints, num_layers)
        self.k = num_keypoints

    def forward(self, queries):
        out = torch.sigmoid(self.keypoint_embed(queries))
        return torch.stack([out[..., 0::2], out[..., 1::2]], dim=-1)     # (x, y) of keypoint k at 2k, 2k + 1


def sine_position(x, num_pos_feats, temperature=10000.0):
    """DETR's normalised sine encoding, [B, C, H, W] -> [B, 2 * num_pos_feats, H, W] (y first)."""
    b, _, h, w = x.shape
    y = torch.arange(1, h + 1, dtype=torch.float32)[:, None].expand(h, w) / (h + 1e-6) * 2 * math.pi
    xx = torch.arange(1, w + 1, dtype=torch.float32)[None, :].expand(h, w) / (w + 1e-6) * 2 * math.pi
    dim_t = temperature ** (2 * (torch.arange(num_pos_feats) // 2) / num_pos_feats)
    out = []
    for grid in (y, xx):
        p = grid[..., None] / dim_t
        out.append(torch.stack([p[..., 0::2].sin(), p[..., 1::2].cos()], dim=-1).flatten(-2))
    return torch.cat(out, dim=-1).permute(2, 0, 1)[None].expand(b, -1, -1, -1).to(x.dtype)


class TrustedSegmenter(nn.Module):
    """The notebook's TinySegmenter, same names and layout: the source of the initial weights."""

    def __init__(self, num_classes=2, hidden_dim=64, num_queries=6, mask_dim=32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(64, hidden_dim, 3, stride=2, padding=1))
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.transformer = nn.Transformer(hidden_dim, nhead=4, num_encoder_layers=1, num_decoder_layers=2,
                                          dim_feedforward=128, dropout=0.0, batch_first=True)
        self.pixel_proj = nn.Conv2d(16, mask_dim, 1)
        self.memory_proj = nn.Conv2d(hidden_dim, mask_dim, 1)
        self.head = TrustedMaskHead(hidden_dim, num_classes, mask_dim)
        self.hidden_dim = hidden_dim

    def forward(self, images):
        full = self.stem(images)
        coarse = self.down(full)
        b, d, h, w = coarse.shape
        tokens = (coarse + sine_position(coarse, d // 2)).flatten(2).transpose(1, 2)
        memory = self.transformer.encoder(tokens)
        queries = self.transformer.decoder(self.query_embed.weight.expand(b, -1, -1), memory)
        memory_map = memory.transpose(1, 2).reshape(b, d, h, w)
        pixel = self.pixel_proj(full) + F.interpolate(self.memory_proj(memory_map), size=full.shape[-2:],
                                                      mode="bilinear", align_corners=False)
        return self.head(queries, pixel)


class TrustedPoseNet(nn.Module):
    """The notebook's TinyPoseNet, same names and layout: the source of the initial weights."""

    def __init__(self, num_keypoints=3, hidden_dim=64, num_queries=4):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(64, hidden_dim, 3, stride=2, padding=1))
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.transformer = nn.Transformer(hidden_dim, nhead=4, num_encoder_layers=1, num_decoder_layers=2,
                                          dim_feedforward=128, dropout=0.0, batch_first=True)
        self.class_embed = nn.Linear(hidden_dim, 2)
        self.keypoint_head = TrustedKeypointHead(hidden_dim, num_keypoints)

    def forward(self, images):
        features = self.backbone(images)
        b, d = features.shape[:2]
        tokens = (features + sine_position(features, d // 2)).flatten(2).transpose(1, 2)
        queries = self.transformer(tokens, self.query_embed.weight.expand(b, -1, -1))
        return self.class_embed(queries), self.keypoint_head(queries)


@pytest.fixture(scope="session")
def m2w03_trusted() -> types.SimpleNamespace:
    return types.SimpleNamespace(MaskHead=TrustedMaskHead, KeypointHead=TrustedKeypointHead,
                                 Segmenter=TrustedSegmenter, PoseNet=TrustedPoseNet,
                                 scores=segmentation_scores)


@pytest.fixture(scope="session")
def m2w03_shapes():
    """The training set of the segmenter: 12 images of 24x24 pixels, 1-3 squares or discs of 5-10 pixels."""
    return shapes(12, seed=0, size=24, object_size=(5, 10))


@pytest.fixture(scope="session")
def m2w03_triangles():
    """The training set of the pose regressor: 12 images of 24x24 pixels, one triangle of 8-14 pixels each; its
    keypoints (apex, bottom-left, bottom-right) normalised by the image size, and the triangles' areas in pixels."""
    data = shapes(12, seed=1, size=24, objects=(1, 1), kinds=("triangle",), object_size=(8, 14))
    keypoints = [k / torch.tensor([24.0, 24.0, 1.0]) for k in data.keypoints]
    areas = torch.tensor([float(m.sum()) for m in data.masks], dtype=torch.float64)
    return types.SimpleNamespace(images=data.images, keypoints=keypoints, pixels=data.keypoints, areas=areas)


def segmentation_scores(class_logits, mask_logits, labels, masks):
    """The trusted metric of the segmenter: per image, each true object is paired (Hungarian) with
    the query whose binary mask (sigmoid > 0.5) overlaps it best, counting its class probability as
    a tie-breaker; returns (mean IoU over all objects, share of them whose query's argmax class is
    right)."""
    ious, correct, total = 0.0, 0, 0
    for b in range(len(labels)):
        predicted = mask_logits[b] > 0                                    # sigmoid > 0.5
        truth = masks[b].bool()
        inter = (predicted[:, None] & truth[None]).flatten(2).sum(-1).double()
        union = (predicted[:, None] | truth[None]).flatten(2).sum(-1).double()
        iou = inter / union.clamp(min=1)
        cost = -iou - class_logits[b].double().softmax(-1)[:, labels[b]]
        q, t = linear_sum_assignment(cost.numpy())
        ious += float(iou[q, t].sum())
        correct += int((class_logits[b, q].argmax(-1) == labels[b][t]).sum())
        total += len(labels[b])
    return ious / total, correct / total
