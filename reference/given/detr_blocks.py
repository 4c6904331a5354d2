"""m2w01's solution, compactly: DETR's box arithmetic, matcher and position encoding, which the
later weeks of Module 2 give their students ready-made. The build puts this file into the
notebook cells marked `given="detr_blocks"`; those weeks list m2w01 under `gives` in course.yaml.

Conventions (as in facebookresearch/detr): predicted and target boxes are (cx, cy, w, h)
normalised by the image size; the IoU functions take (x0, y0, x1, y1); class logits have one
extra last column, "no object"."""

SOLUTION_OF = "m2w01"

import math

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn


def box_cxcywh_to_xyxy(boxes):
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_xyxy_to_cxcywh(boxes):
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_iou(a, b):
    """IoU and union of every pair: a [N, 4], b [M, 4] in xyxy -> ([N, M], [N, M])."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union, union


def generalized_box_iou(a, b):
    """IoU minus the share of the smallest enclosing box that the union leaves empty."""
    iou, union = box_iou(a, b)
    enclosing = (torch.max(a[:, None, 2:], b[None, :, 2:]) - torch.min(a[:, None, :2], b[None, :, :2])).prod(-1)
    return iou - (enclosing - union) / enclosing


def matching_cost(logits, boxes, target_labels, target_boxes, class_weight=1.0, l1_weight=5.0, giou_weight=2.0):
    """DETR's matching cost of every query against every target: [Q, C+1], [Q, 4] with [T], [T, 4] -> [Q, T]."""
    prob = logits.softmax(-1)
    cost_class = -prob[:, target_labels]
    cost_l1 = torch.cdist(boxes, target_boxes, p=1)
    cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))
    return class_weight * cost_class + l1_weight * cost_l1 + giou_weight * cost_giou


@torch.no_grad()
def hungarian_match(cost):
    """The assignment of least total cost: query indices (ascending) and their targets' indices."""
    queries, targets = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(queries, dtype=torch.long), torch.as_tensor(targets, dtype=torch.long)


class SinePositionEmbedding(nn.Module):
    """[B, C, H, W] features -> [B, 2 * num_pos_feats, H, W]: y's encoding, then x's, each
    sin and cos interleaved over frequencies temperature ** (2i / num_pos_feats)."""

    def __init__(self, num_pos_feats=64, temperature=10000, normalize=True, scale=2 * math.pi):
        super().__init__()
        self.num_pos_feats, self.temperature, self.normalize, self.scale = num_pos_feats, temperature, normalize, scale

    def forward(self, x):
        b, _, h, w = x.shape
        y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=x.device)[:, None].expand(h, w)
        x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=x.device)[None, :].expand(h, w)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (h + eps) * self.scale
            x_embed = x_embed / (w + eps) * self.scale
        i = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * (i // 2) / self.num_pos_feats)
        pos_x, pos_y = x_embed[..., None] / dim_t, y_embed[..., None] / dim_t
        pos_x = torch.stack([pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()], dim=-1).flatten(-2)
        pos_y = torch.stack([pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()], dim=-1).flatten(-2)
        pos = torch.cat([pos_y, pos_x], dim=-1).permute(2, 0, 1)
        return pos[None].expand(b, -1, -1, -1).to(x.dtype)


class MLP(nn.Module):
    """DETR's box head: Linear layers with ReLU between them."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x
