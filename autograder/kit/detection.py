"""Trusted-side detection metrics for DETR-style outputs (Module 2's hidden suites).

A DETR-style model returns, per image, `Q` predictions: class logits `[Q, C + 1]` whose last
column is "no object", and boxes `[Q, 4]` as (cx, cy, w, h) normalised to [0, 1]. Targets
are labels `[T]` and boxes `[T, 4]` in the same format. A prediction is a *detection* when
its most likely class is not "no object".

- `box_iou_cxcywh`: the IoU of every pair, computed here (no torchvision import);
- `matched_iou`: each target's IoU with the prediction a one-to-one matching on IoU gives it;
- `detection_counts`: true positives (one-to-one, right class, IoU >= a threshold),
  detections and targets, from which recall and precision follow;
- `evaluate`: those summed over a batch, as recall, precision and mean matched IoU.

Only torch at import time; scipy (the assignment) is imported when a matching is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


def box_iou_cxcywh(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every pair: a [N, 4], b [M, 4] as (cx, cy, w, h) -> [N, M] (0 for empty unions)."""
    a, b = a.double(), b.double()
    a0, a1 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b0, b1 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    inter = (torch.min(a1[:, None], b1[None]) - torch.max(a0[:, None], b0[None])).clamp(min=0).prod(-1)
    area_a, area_b = a[:, 2:].clamp(min=0).prod(-1), b[:, 2:].clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _assign(score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-to-one assignment of rows to columns that maximises the total score."""
    from scipy.optimize import linear_sum_assignment

    if score.numel() == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    rows, cols = linear_sum_assignment(score.detach().cpu().numpy(), maximize=True)
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def matched_iou(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """Each target's IoU with its prediction under the one-to-one matching of largest total IoU
    (classes ignored): [Q, 4], [T, 4] -> [T] (Q >= T)."""
    iou = box_iou_cxcywh(pred_boxes, target_boxes)
    rows, cols = _assign(iou)
    out = torch.zeros(len(target_boxes), dtype=torch.float64)
    out[cols] = iou[rows, cols]
    return out


def detection_counts(logits: torch.Tensor, pred_boxes: torch.Tensor, target_labels: torch.Tensor,
                     target_boxes: torch.Tensor, iou_threshold: float = 0.5) -> tuple[int, int, int]:
    """(true positives, detections, targets) for one image.

    Detections are the predictions whose argmax class is not the last ("no object"). A true
    positive is a detection matched one-to-one to a target of its class with IoU >= the
    threshold; the matching maximises the number of such pairs (then their total IoU), so a
    duplicate detection of a found object counts as a false positive."""
    labels = logits.argmax(-1)
    keep = labels != logits.shape[-1] - 1
    det_labels, det_boxes = labels[keep], pred_boxes[keep]
    if len(det_boxes) == 0 or len(target_boxes) == 0:
        return 0, int(keep.sum()), len(target_boxes)
    iou = box_iou_cxcywh(det_boxes, target_boxes)
    valid = (det_labels[:, None] == target_labels[None].to(det_labels.device)) & (iou >= iou_threshold)
    score = torch.where(valid, 1.0 + iou, torch.zeros_like(iou))  # a valid pair outweighs any IoU gain
    rows, cols = _assign(score)
    return int(valid[rows, cols].sum()), int(keep.sum()), len(target_boxes)


@dataclass(frozen=True)
class DetectionScores:
    recall: float        # true positives / targets
    precision: float     # true positives / detections (1 when there are no detections and no targets)
    mean_iou: float      # the mean over all targets of `matched_iou`
    true_positives: int
    detections: int
    targets: int


def evaluate(logits: torch.Tensor, pred_boxes: torch.Tensor, target_labels: Sequence[torch.Tensor],
             target_boxes: Sequence[torch.Tensor], iou_threshold: float = 0.5) -> DetectionScores:
    """`detection_counts` and `matched_iou` over a batch: logits [B, Q, C + 1], boxes [B, Q, 4]."""
    tp = dets = total = 0
    ious = []
    for b in range(len(target_boxes)):
        t, d, n = detection_counts(logits[b], pred_boxes[b], target_labels[b], target_boxes[b], iou_threshold)
        tp, dets, total = tp + t, dets + d, total + n
        ious.append(matched_iou(pred_boxes[b], target_boxes[b]))
    all_ious = torch.cat(ious) if ious else torch.zeros(0, dtype=torch.float64)
    return DetectionScores(recall=tp / max(total, 1), precision=tp / dets if dets else float(total == 0),
                           mean_iou=float(all_ious.mean()) if len(all_ious) else 1.0,
                           true_positives=tp, detections=dets, targets=total)
