# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Week 1 of Module 2 — DETR from scratch
#
# Before 2020, an object detector was a pipeline of hand-made parts: thousands of **anchor
# boxes** tiled over the image, a rule that decides which anchors are "positive" for which
# object, box regression relative to the anchors, and **non-maximum suppression** (NMS) to
# delete the duplicates the detector produces for every object. Carion et al. (2020, *End-to-End
# Object Detection with Transformers*, **DETR**) replaced all of it with one idea:
#
# > Predict a **set** of boxes directly, and train with a loss that is invariant to the order
# > of the predictions: match predictions to ground-truth objects one-to-one with the Hungarian
# > algorithm, then score each matched pair.
#
# The network is a CNN backbone, a transformer encoder over the feature map, and a transformer
# decoder that reads $Q$ learned **object queries**; each query comes out as one prediction, a
# class (or "no object") and a box. Because the matching is one-to-one, the loss *punishes*
# duplicates: a second query on an already-matched object is matched to nothing and is trained to
# say "no object". No anchors, no NMS.
#
# This week you write every piece of it and train a tiny DETR on synthetic shapes:
#
# 1. **boxes**: box formats, IoU and generalised IoU (GIoU);
# 2. **matcher**: DETR's matching cost and the Hungarian assignment;
# 3. **criterion**: the set loss — classification with a down-weighted no-object class, L1 and
#    GIoU on matched pairs;
# 4. **position**: the 2-D sine position encoding of the feature map;
# 5. **detr**: the model — backbone, input projection, transformer, object queries, class and
#    box heads;
# 6. **train**: the training loop, which must overfit a small set of images.
#
# The sources of truth are the paper and its code, facebookresearch/detr (`util/box_ops.py`,
# `models/matcher.py`, `models/detr.py`, `models/position_encoding.py`); the grader compares
# your functions with `torchvision.ops` and with the DETR port in Hugging Face `transformers`.
#
# **What you may use.** Any tensor operation, `torch.nn` (including `nn.Transformer`),
# `torch.nn.functional`, `torch.optim`, and `scipy.optimize.linear_sum_assignment` (DETR's own
# code uses it). **What you may not use** (outside cells tagged `demo`): `torchvision` — its
# `ops` compute boxes and GIoU for you, and the grader uses them as the reference — nor
# `transformers` or `timm`.

# %% [markdown] boilerplate="how_this_notebook_works"
# (the build writes this cell from autograder/pipeline/templates/how_this_notebook_works.md)

# %% [markdown]
# ## The contract with the grader
#
# | detail | what to do |
# | --- | --- |
# | box formats | predictions and targets are `(cx, cy, w, h)` normalised to $[0, 1]$ by the image size; IoU functions take `(x0, y0, x1, y1)` |
# | class logits | `C + 1` columns: the `C` real classes, then **the last column is "no object"** |
# | `box_iou` | returns the pair `(iou, union)`, both `[N, M]` |
# | `matching_cost` | softmax probabilities; $-w_c\,p(c_j)+w_{L1}\lVert b-b_j\rVert_1-w_{g}\,\mathrm{GIoU}$, `[Q, T]` |
# | `hungarian_match` | least total cost; query indices ascending; `int64` tensors |
# | `set_criterion` | `loss_ce` is the weighted mean of the cross-entropy (weights 1, no object `eos_coef`); `loss_bbox` and `loss_giou` are sums over matched pairs divided by the number of target boxes in the batch (at least 1) |
# | `SinePositionEmbedding` | positions $1..H$ and $1..W$; normalised by $H + 10^{-6}$ (resp. $W$) times `scale`; frequencies `temperature ** (2 (i // 2) / num_pos_feats)`; sin and cos interleaved; y's features first, then x's |
# | `DETR` | the names `backbone`, `input_proj`, `position`, `query_embed`, `transformer`, `class_embed`, `bbox_embed`, built exactly as in part 5 |
# | `train_detr` | AdamW on all parameters, full batch, `steps` steps; the model is trained in place |

# %%
import math

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

# %% tags=["demo"]
import matplotlib.pyplot as plt

from autograder.kit import setup
from autograder.selfcheck import check

_ = setup(seed=0)  # seeds, and one thread: these models are tiny

# %% [markdown]
# ## Part 1 — Boxes, IoU and generalised IoU
#
# DETR predicts a box as its **centre and size**, $(c_x, c_y, w, h)$, each divided by the image
# width or height so that all four lie in $[0, 1]$ — a sigmoid on the last layer keeps them
# there. Overlaps are easier in **corner** form $(x_0, y_0, x_1, y_1)$:
#
# $$
# x_0 = c_x - \tfrac{w}{2},\quad y_0 = c_y - \tfrac{h}{2},\quad x_1 = c_x + \tfrac{w}{2},\quad y_1 = c_y + \tfrac{h}{2},
# \qquad\text{and back:}\quad c_x = \tfrac{x_0 + x_1}{2},\; w = x_1 - x_0 .
# $$
#
# **IoU.** For boxes $A$ and $B$, the intersection is the box from the larger top-left corner to
# the smaller bottom-right one, empty (area 0) when they do not overlap:
#
# $$
# |A \cap B| = \big[\min(x_1^A, x_1^B) - \max(x_0^A, x_0^B)\big]_+ \cdot \big[\min(y_1^A, y_1^B) - \max(y_0^A, y_0^B)\big]_+ ,
# \qquad \mathrm{IoU} = \frac{|A \cap B|}{|A| + |B| - |A \cap B|} .
# $$
#
# The clamp $[\cdot]_+ = \max(\cdot, 0)$ goes on each side length *before* the product: two
# negative lengths would otherwise multiply into a positive "intersection".
#
# **Generalised IoU** (Rezatofighi et al., 2019). IoU is 0 for every pair of disjoint boxes, near
# or far, so as a loss it gives no gradient to a prediction that misses. GIoU subtracts the part
# of the smallest enclosing box $E$ that the union leaves empty:
#
# $$
# \mathrm{GIoU}(A, B) = \mathrm{IoU} - \frac{|E| - |A \cup B|}{|E|} \in (-1, 1],
# $$
#
# with $E$ from the smaller top-left to the larger bottom-right corner. Identical boxes give 1;
# far-apart small boxes approach $-1$; a miss still has a slope towards the target.
#
# Write the four functions below. The conversions work on any leading dimensions `[..., 4]`.
# `box_iou(boxes1, boxes2)` and `generalized_box_iou(boxes1, boxes2)` take `[N, 4]` and `[M, 4]`
# in corner form and compare **every pair**: `[N, M]`. `box_iou` returns `(iou, union)`,
# because GIoU needs the union too. Boxes are valid ($x_1 \ge x_0$, $y_1 \ge y_0$, positive
# area); keep everything differentiable.

# %%
def box_cxcywh_to_xyxy(boxes):
    """(cx, cy, w, h) -> (x0, y0, x1, y1), over the last axis: [..., 4] -> [..., 4]."""
    ### BEGIN SOLUTION
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    ### END SOLUTION


def box_xyxy_to_cxcywh(boxes):
    """(x0, y0, x1, y1) -> (cx, cy, w, h), over the last axis: [..., 4] -> [..., 4]."""
    ### BEGIN SOLUTION
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)
    ### END SOLUTION


def box_iou(boxes1, boxes2):
    """IoU and union of every pair of boxes.

    Args:
        boxes1: [N, 4] and boxes2: [M, 4], corner form (x0, y0, x1, y1).

    Returns:
        (iou, union), both [N, M].
    """
    ### BEGIN SOLUTION
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])          # [N, M, 2]
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)             # clamp each side, then multiply
    union = area1[:, None] + area2[None, :] - inter
    return inter / union, union
    ### END SOLUTION


def generalized_box_iou(boxes1, boxes2):
    """GIoU of every pair of boxes: [N, 4], [M, 4] in corner form -> [N, M], in (-1, 1]."""
    ### BEGIN SOLUTION
    iou, union = box_iou(boxes1, boxes2)
    top_left = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])          # the enclosing box
    bottom_right = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    enclosing = (bottom_right - top_left).prod(dim=-1)
    return iou - (enclosing - union) / enclosing
    ### END SOLUTION


# %% tags=["demo"]
check("m2w01", "boxes")

# %% [markdown]
# GIoU keeps a slope where IoU is flat: slide a box past a fixed one.

# %% tags=["demo"]
fixed = torch.tensor([[0.4, 0.4, 0.6, 0.6]])
shifts = torch.linspace(-0.5, 0.5, 101)
moving = torch.stack([0.4 + shifts, torch.full_like(shifts, 0.4), 0.6 + shifts, torch.full_like(shifts, 0.6)], 1)
plt.figure(figsize=(4.5, 2.6))
plt.plot(shifts, box_iou(moving, fixed)[0][:, 0], label="IoU")
plt.plot(shifts, generalized_box_iou(moving, fixed)[:, 0], label="GIoU")
plt.xlabel("horizontal shift of a 0.2 x 0.2 box")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Part 2 — Matching predictions to objects
#
# DETR outputs a fixed number $Q$ of predictions per image (we use 10; the paper uses 100), more
# than there are objects. To compute a loss, each of the $T \le Q$ ground-truth objects is paired
# with exactly one prediction; the other $Q - T$ predictions are paired with "no object"
# ($\varnothing$). Among all such one-to-one assignments $\sigma$, DETR takes the cheapest:
#
# $$
# \hat\sigma = \arg\min_{\sigma} \sum_{j=1}^{T} \mathcal{C}\big(\sigma(j), j\big),
# \qquad
# \mathcal{C}(i, j) = -\,w_{\text{class}}\; \hat p_i(c_j) \;+\; w_{L1}\, \lVert \hat b_i - b_j \rVert_1 \;-\; w_{\text{GIoU}}\; \mathrm{GIoU}(\hat b_i, b_j),
# $$
#
# where $\hat p_i = \operatorname{softmax}(\text{logits}_i)$ over all $C + 1$ classes, $c_j$ is
# object $j$'s class, $\hat b_i, b_j$ are $(c_x, c_y, w, h)$ boxes (GIoU after conversion to
# corners), and the weights are $w_{\text{class}} = 1$, $w_{L1} = 5$, $w_{\text{GIoU}} = 2$ as
# in the paper. Two choices of DETR's matcher that differ from the loss:
#
# - the class term is the **probability** $-\hat p_i(c_j)$, not the log-probability: it lives
#   on the same scale as the box terms, which the paper found to work better;
# - the constant parts are dropped (the "1 −" of the GIoU loss): they do not change the argmin.
#
# The argmin over $T!\,\binom{Q}{T}$ assignments is a **linear assignment problem**, solved
# exactly in polynomial time by the Hungarian algorithm; `scipy.optimize.linear_sum_assignment`
# does it for a rectangular cost matrix, which is what DETR's `HungarianMatcher` calls.
#
# Write `matching_cost(logits, boxes, target_labels, target_boxes, class_weight=1.0,
# l1_weight=5.0, giou_weight=2.0)` for **one image**: logits `[Q, C + 1]`, boxes `[Q, 4]`, labels
# `[T]` (int64) and boxes `[T, 4]` give the cost matrix `[Q, T]`, row $i$ column $j$ the cost of
# pairing prediction $i$ with object $j$. (`torch.cdist(a, b, p=1)` computes all L1 distances.)
# Write it with differentiable tensor operations, without `torch.no_grad()` inside: the caller
# decides whether gradients are needed (`set_criterion` below turns them off around it).
# Then `hungarian_match(cost)`: the assignment of least total cost as two `int64` tensors
# `(query_idx, target_idx)` of length $\min(Q, T)$, query indices ascending, so that query
# `query_idx[k]` is matched to object `target_idx[k]`. An image may have no objects ($T = 0$):
# both tensors are then empty.

# %%
def matching_cost(logits, boxes, target_labels, target_boxes, class_weight=1.0, l1_weight=5.0, giou_weight=2.0):
    """DETR's matching cost of every prediction against every object of one image.

    Args:
        logits: [Q, C + 1] class logits (last column: no object); boxes: [Q, 4] (cx, cy, w, h).
        target_labels: [T] int64 in 0..C-1; target_boxes: [T, 4] (cx, cy, w, h).
        class_weight, l1_weight, giou_weight: the weights of the three terms.

    Returns:
        [Q, T]: -class_weight * p_i(c_j) + l1_weight * |b_i - b_j|_1 - giou_weight * GIoU(b_i, b_j).
    """
    ### BEGIN SOLUTION
    prob = logits.softmax(dim=-1)
    cost_class = -prob[:, target_labels]                                     # [Q, T]
    cost_l1 = torch.cdist(boxes, target_boxes, p=1)
    cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))
    return class_weight * cost_class + l1_weight * cost_l1 + giou_weight * cost_giou
    ### END SOLUTION


@torch.no_grad()
def hungarian_match(cost):
    """The one-to-one assignment of least total cost.

    Args:
        cost: [Q, T] with Q >= T.

    Returns:
        (query_idx, target_idx): int64 tensors of length T (min(Q, T)), query_idx ascending.
    """
    ### BEGIN SOLUTION
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
    ### END SOLUTION


# %% tags=["demo"]
check("m2w01", "matcher")

# %% [markdown]
# The cheapest assignment is not the greedy one. Three predictions, two objects: greedy takes the
# single cheapest pair first and is then forced into an expensive one.

# %% tags=["demo"]
cost = torch.tensor([[1.0, 2.0], [1.1, 9.0], [5.0, 5.0]])
rows, cols = hungarian_match(cost)
print(f"Hungarian: queries {rows.tolist()} -> targets {cols.tolist()}, total {cost[rows, cols].sum():.1f}; "
      f"greedy (0 -> 0, then 2 -> 1): total {cost[0, 0] + cost[2, 1]:.1f}")

# %% [markdown]
# ## Part 3 — The set criterion
#
# With the matching $\hat\sigma$ fixed (no gradient flows through it), DETR's loss for a batch is
#
# $$
# \mathcal{L} = w_{\text{class}}\, \mathcal{L}_{\text{ce}} + w_{L1}\, \mathcal{L}_{\text{bbox}} + w_{\text{GIoU}}\, \mathcal{L}_{\text{giou}} .
# $$
#
# **Classification.** Every prediction gets a target class: its matched object's class, or
# $\varnothing$ (index $C$, the last column) if unmatched. Most predictions are unmatched, so
# DETR down-weights the no-object class by `eos_coef` $= 0.1$ (the paper: "we down-weight the log-
# probability term when $c_i = \varnothing$ by a factor 10 to account for class imbalance").
# DETR computes it as PyTorch's weighted cross-entropy, `F.cross_entropy(logits, classes,
# weight=w)` with $w = (1, \dots, 1, \texttt{eos\_coef})$, whose mean is **weighted**:
#
# $$
# \mathcal{L}_{\text{ce}} = \frac{\sum_{b, i} w_{y_{bi}}\, \big(-\log \hat p_{bi}(y_{bi})\big)}{\sum_{b, i} w_{y_{bi}}} ,
# $$
#
# summed over all $B \cdot Q$ predictions — the denominator is the sum of the weights, not $BQ$.
#
# **Boxes**, on the matched pairs only, with $N_b$ = the number of target boxes in the batch
# (at least 1):
#
# $$
# \mathcal{L}_{\text{bbox}} = \frac{1}{N_b} \sum_{(i, j)\ \text{matched}} \lVert \hat b_i - b_j \rVert_1 ,
# \qquad
# \mathcal{L}_{\text{giou}} = \frac{1}{N_b} \sum_{(i, j)\ \text{matched}} \big(1 - \mathrm{GIoU}(\hat b_i, b_j)\big) .
# $$
#
# The L1 norm sums the four coordinates; dividing by the number of *boxes*, not of predictions
# or coordinates, keeps the loss's scale independent of $Q$ and of how crowded the images are.
# The L1 term alone would weigh an error of 0.02 the same for a small and a large box; GIoU is
# scale-invariant, which is why DETR uses both.
#
# Write `set_criterion(logits, boxes, targets, eos_coef=0.1, class_weight=1.0, l1_weight=5.0,
# giou_weight=2.0)`: logits `[B, Q, C + 1]`, boxes `[B, Q, 4]`, and `targets` a list of $B$
# dicts with `"labels"` (`[T_b]` int64) and `"boxes"` (`[T_b, 4]`, $(c_x, c_y, w, h)$). Match
# each image with `matching_cost` — **using the same three weights** — and `hungarian_match`,
# then return a dict with the scalars `"loss_ce"`, `"loss_bbox"`, `"loss_giou"` and the weighted
# total `"loss"`, all differentiable with respect to the logits and boxes.

# %%
def set_criterion(logits, boxes, targets, eos_coef=0.1, class_weight=1.0, l1_weight=5.0, giou_weight=2.0):
    """DETR's set loss for a batch.

    Args:
        logits: [B, Q, C + 1]; boxes: [B, Q, 4] (cx, cy, w, h) in [0, 1].
        targets: B dicts with "labels" [T_b] (int64) and "boxes" [T_b, 4] (cx, cy, w, h); T_b may be 0.
        eos_coef: the weight of the no-object class in the cross-entropy.
        class_weight, l1_weight, giou_weight: the matching weights and the weights of the total.

    Returns:
        {"loss_ce", "loss_bbox", "loss_giou", "loss"}: scalars; loss = the weighted sum of the three.
    """
    ### BEGIN SOLUTION
    B, Q, num_classes_plus_one = logits.shape
    classes = torch.full((B, Q), num_classes_plus_one - 1, dtype=torch.long, device=logits.device)  # all "no object" ...
    matched_boxes, matched_targets = [], []
    for b, target in enumerate(targets):
        with torch.no_grad():
            cost = matching_cost(logits[b], boxes[b], target["labels"], target["boxes"],
                                 class_weight, l1_weight, giou_weight)
        query_idx, target_idx = hungarian_match(cost)
        classes[b, query_idx] = target["labels"][target_idx]                  # ... but the matched queries
        matched_boxes.append(boxes[b, query_idx])
        matched_targets.append(target["boxes"][target_idx])
    weight = torch.ones(num_classes_plus_one, dtype=logits.dtype, device=logits.device)
    weight[-1] = eos_coef
    loss_ce = F.cross_entropy(logits.flatten(0, 1), classes.flatten(), weight=weight)   # a weighted mean
    src, tgt = torch.cat(matched_boxes), torch.cat(matched_targets).to(boxes.dtype)
    num_boxes = max(len(tgt), 1)
    loss_bbox = (src - tgt).abs().sum() / num_boxes
    giou = generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt)).diagonal()
    loss_giou = (1 - giou).sum() / num_boxes
    total = class_weight * loss_ce + l1_weight * loss_bbox + giou_weight * loss_giou
    return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou, "loss": total}
    ### END SOLUTION


# %% tags=["demo"]
check("m2w01", "criterion")

# %% [markdown]
# The loss does not care in which order the queries list the objects: permute the predictions
# and it stays the same (the matching follows them).

# %% tags=["demo"]
g = torch.Generator().manual_seed(0)
demo_logits, demo_boxes = torch.randn(1, 5, 3, generator=g), 0.3 + 0.4 * torch.rand(1, 5, 4, generator=g)
demo_targets = [{"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])}]
perm = torch.randperm(5, generator=g)
print({k: round(v.item(), 5) for k, v in set_criterion(demo_logits, demo_boxes, demo_targets).items()})
print({k: round(v.item(), 5) for k, v in set_criterion(demo_logits[:, perm], demo_boxes[:, perm], demo_targets).items()})

# %% [markdown]
# ## Part 4 — Sine position encoding in 2-D
#
# Attention is blind to order: without position information the encoder sees the feature map
# as a bag of vectors. DETR adds to every feature at grid position $(y, x)$ a fixed code built
# like the Transformer's 1-D sinusoids, once for $y$ and once for $x$ (`PositionEmbeddingSine`
# in `models/position_encoding.py`). With $F$ = `num_pos_feats` features per coordinate:
#
# 1. positions count from **1**: $y = 1, \dots, H$ and $x = 1, \dots, W$ (DETR takes a cumulative
#    sum over the non-padding pixels, which is this when there is no padding);
# 2. with `normalize=True`, rescale to $(0, \text{scale}]$:
#    $y \leftarrow y / (H + \epsilon) \cdot \text{scale}$, $\epsilon = 10^{-6}$, the same for $x$
#    with $W$; `scale` defaults to $2\pi$, one full turn of the slowest sinusoid;
# 3. frequencies: $d_i = \text{temperature}^{\,2 \lfloor i/2 \rfloor / F}$ for $i = 0, \dots, F - 1$
#    (each value appears twice: once for a sine, once for a cosine);
# 4. features of $x$: $\sin(x / d_0), \cos(x / d_1), \sin(x / d_2), \cos(x / d_3), \dots$ —
#    even indices sine, odd indices cosine, **interleaved**; the same for $y$;
# 5. concatenate **y's $F$ features first, then x's**: $2F$ channels.
#
# Write the module `SinePositionEmbedding(num_pos_feats=64, temperature=10000, normalize=True,
# scale=2 * math.pi)`. Its `forward(x)` reads only the shape of a feature map `x` `[B, C, H, W]`
# and returns `[B, 2 * num_pos_feats, H, W]` in `x`'s dtype (the same code for every image). It
# has no parameters or buffers. `num_pos_feats` is even.

# %%
class SinePositionEmbedding(nn.Module):
    """DETR's 2-D sine position encoding: [B, C, H, W] -> [B, 2 * num_pos_feats, H, W]."""

    def __init__(self, num_pos_feats=64, temperature=10000, normalize=True, scale=2 * math.pi):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale

    def forward(self, x):
        ### BEGIN SOLUTION
        B, _, H, W = x.shape
        y = torch.arange(1, H + 1, dtype=torch.float64)[:, None].expand(H, W)
        xs = torch.arange(1, W + 1, dtype=torch.float64)[None, :].expand(H, W)
        if self.normalize:
            eps = 1e-6
            y = y / (H + eps) * self.scale
            xs = xs / (W + eps) * self.scale
        i = torch.arange(self.num_pos_feats, dtype=torch.float64)
        dim_t = self.temperature ** (2 * (i // 2) / self.num_pos_feats)
        pos_x, pos_y = xs[..., None] / dim_t, y[..., None] / dim_t                # [H, W, F]
        pos_x = torch.stack([pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()], dim=-1).flatten(-2)
        pos_y = torch.stack([pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()], dim=-1).flatten(-2)
        pos = torch.cat([pos_y, pos_x], dim=-1).permute(2, 0, 1)                 # [2F, H, W]
        return pos.to(dtype=x.dtype, device=x.device).unsqueeze(0).expand(B, -1, -1, -1)
        ### END SOLUTION


# %% tags=["demo"]
check("m2w01", "position")

# %% tags=["demo"]
pos = SinePositionEmbedding(num_pos_feats=16)(torch.zeros(1, 1, 8, 8))[0]
fig, axes = plt.subplots(1, 4, figsize=(8, 2.2))
for ax, channel in zip(axes, [0, 1, 16, 22]):
    ax.imshow(pos[channel], cmap="coolwarm")
    ax.set_title(f"channel {channel}", fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Part 5 — The DETR model
#
# The paper's Listing 1 fits DETR's inference in twenty lines. Ours is the same model at toy
# size:
#
# 1. **Backbone**: a CNN that turns images `[B, 3, H, W]` into features `[B, 64, H/8, W/8]`
#    (given below; DETR uses a ResNet-50, stride 32).
# 2. **Input projection** `input_proj`: a $1 \times 1$ convolution from the backbone's channels
#    to the transformer's width $d$ = `hidden_dim`.
# 3. **Position**: `position = SinePositionEmbedding(hidden_dim // 2)` (normalised, as DETR),
#    added to the projected features; the sum is flattened to a sequence of $H/8 \cdot W/8$
#    tokens, row-major: `[B, HW, d]`.
# 4. **Object queries**: `query_embed = nn.Embedding(num_queries, hidden_dim)`; its weight,
#    the same for every image, is the decoder's input sequence `[B, Q, d]`. The queries are
#    learned "slots": each learns to ask for objects in certain places and of certain sizes.
# 5. **Transformer**: `transformer = nn.Transformer(d_model=hidden_dim, nhead=nheads,
#    num_encoder_layers=..., num_decoder_layers=..., dim_feedforward=..., dropout=0.0,
#    batch_first=True)`, called as `transformer(src, tgt)` with the tokens as `src` and the
#    queries as `tgt`: the encoder mixes the image tokens, the decoder's self-attention lets the
#    queries see each other (that is how they learn not to duplicate), and its cross-attention
#    reads the image. Output `[B, Q, d]`.
# 6. **Heads** on every query: `class_embed = nn.Linear(hidden_dim, num_classes + 1)` for the
#    logits, and `bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)` followed by a **sigmoid** for
#    the boxes $(c_x, c_y, w, h) \in (0, 1)^4$.
#
# `MLP(input_dim, hidden_dim, output_dim, num_layers)` holds `num_layers` linear layers in an
# `nn.ModuleList` named `layers` (`input_dim -> hidden_dim -> ... -> output_dim`), with a ReLU
# after every layer but the last.
#
# (The original DETR adds the position code and the query embedding inside *every* attention
# layer, to queries and keys, and starts the decoder from zeros; Listing 1 adds them once at the
# input, as here, which lets us use `nn.Transformer` unchanged. It also trains with auxiliary
# losses after every decoder layer; we skip them.)
#
# `DETR(num_classes, num_queries=10, hidden_dim=64, nheads=4, num_encoder_layers=1,
# num_decoder_layers=2, dim_feedforward=128)`: `forward(images)` returns
# `{"pred_logits": [B, Q, num_classes + 1], "pred_boxes": [B, Q, 4]}`. Use exactly the attribute
# names above (and `self.backbone = Backbone()`): the grader loads its own weights into your
# model by these names and checks that your model computes what its own does.

# %%
class Backbone(nn.Module):
    """Given: a small CNN of stride 8, [B, 3, H, W] -> [B, num_channels, H / 8, W / 8]."""

    def __init__(self, in_chans=3, num_channels=64):
        super().__init__()
        self.num_channels = num_channels
        self.body = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, num_channels, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, images):
        return self.body(images)


# %%
class MLP(nn.Module):
    """Linear layers with a ReLU between them (DETR's box head)."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        ### BEGIN SOLUTION
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x
        ### END SOLUTION


class DETR(nn.Module):
    """A small DETR: backbone, input projection, sine positions, nn.Transformer, object queries, heads."""

    def __init__(self, num_classes, num_queries=10, hidden_dim=64, nheads=4, num_encoder_layers=1,
                 num_decoder_layers=2, dim_feedforward=128):
        super().__init__()
        ### BEGIN SOLUTION
        self.backbone = Backbone()
        self.input_proj = nn.Conv2d(self.backbone.num_channels, hidden_dim, kernel_size=1)
        self.position = SinePositionEmbedding(hidden_dim // 2, normalize=True)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.transformer = nn.Transformer(d_model=hidden_dim, nhead=nheads, num_encoder_layers=num_encoder_layers,
                                          num_decoder_layers=num_decoder_layers, dim_feedforward=dim_feedforward,
                                          dropout=0.0, batch_first=True)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        ### END SOLUTION

    def forward(self, images):
        """images [B, 3, H, W] -> {"pred_logits": [B, Q, num_classes + 1], "pred_boxes": [B, Q, 4]}."""
        ### BEGIN SOLUTION
        features = self.input_proj(self.backbone(images))                         # [B, d, h, w]
        tokens = (features + self.position(features)).flatten(2).transpose(1, 2)  # [B, hw, d], row-major
        queries = self.query_embed.weight.unsqueeze(0).expand(len(images), -1, -1)
        hs = self.transformer(tokens, queries)                                     # [B, Q, d]
        return {"pred_logits": self.class_embed(hs), "pred_boxes": self.bbox_embed(hs).sigmoid()}
        ### END SOLUTION


# %% tags=["demo"]
check("m2w01", "detr")

# %% [markdown]
# ## Part 6 — Training: overfit a small set of shapes
#
# Overfitting a handful of images is the first test of any detector: if it cannot learn 16
# images by heart, something in the matching, the loss or the heads is wrong. Our images come
# from the course's generator `autograder.kit.data.shapes`: $32 \times 32$ pixels, 1 to 3 squares
# or discs (classes 0 and 1) per image; the targets are the normalised $(c_x, c_y, w, h)$ boxes.
#
# Write `train_detr(model, images, targets, steps=200, lr=2e-3, weight_decay=1e-4)`: an
# `torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)` (DETR's optimiser),
# and `steps` steps, each on the **whole** set: `model(images)`, `set_criterion(...)` with its
# defaults, backward, step. Train `model` in place, put it back in `model.eval()` mode at the end,
# and return the list of the `steps` total losses as Python floats.
#
# The grader builds your `DETR(num_classes=2)`, trains it with your `train_detr` on 16 images, and
# then runs the trained model itself on those images: a prediction counts as a detection when its
# most likely class is not "no object"; each object must be found by a detection of the right
# class with IoU ≥ 0.5, and the detections must not be duplicates or inventions.

# %%
def train_detr(model, images, targets, steps=200, lr=2e-3, weight_decay=1e-4):
    """Train `model` in place with AdamW on the whole set for `steps` steps; return the losses.

    Args:
        model: a DETR; images: [N, 3, H, W]; targets: N dicts with "labels" and "boxes" (cx, cy, w, h).
        steps: optimisation steps; lr, weight_decay: AdamW's.

    Returns:
        A list of `steps` floats: the total loss before each step.
    """
    ### BEGIN SOLUTION
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for _ in range(steps):
        out = model(images)
        loss = set_criterion(out["pred_logits"], out["pred_boxes"], targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
    ### END SOLUTION


# %% tags=["demo"]
check("m2w01", "train")

# %% tags=["demo"]
import time

from autograder.kit.data import shapes

data = shapes(16, seed=0)
images = data.images
targets = [{"labels": data.labels[i], "boxes": data.normalized_boxes(i)} for i in range(len(data))]
torch.manual_seed(0)
model = DETR(num_classes=2)
start = time.time()
losses = train_detr(model, images, targets)
print(f"{len(losses)} steps in {time.time() - start:.1f} s: loss {losses[0]:.2f} -> {losses[-1]:.3f}")

# %% tags=["demo"]
with torch.no_grad():
    out = model(images)
fig, axes = plt.subplots(2, 4, figsize=(9, 4.6))
for ax, i in zip(axes.flat, range(8)):
    ax.imshow(images[i].permute(1, 2, 0))
    for x0, y0, x1, y1 in data.boxes[i].tolist():
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="white", lw=2))
    prob = out["pred_logits"][i].softmax(-1)
    keep = prob.argmax(-1) != prob.shape[-1] - 1
    for box, p in zip(box_cxcywh_to_xyxy(out["pred_boxes"][i][keep]) * 32, prob[keep]):
        x0, y0, x1, y1 = box.tolist()
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="red", lw=1, ls="--"))
        ax.text(x0, y0 - 1, f"{data.kinds[int(p[:-1].argmax())]} {p.max():.2f}", color="red", fontsize=7)
    ax.axis("off")
fig.suptitle("targets (white) and the detections of the trained DETR (red)")
plt.tight_layout()
plt.show()

# %% [markdown]
# Which query found which object? Each query specialises: print, for every detection, the query
# that made it. In a model trained on many images the same queries handle the same regions.

# %% tags=["demo"]
for i in range(4):
    prob = out["pred_logits"][i].softmax(-1)
    found = (prob.argmax(-1) != prob.shape[-1] - 1).nonzero().flatten().tolist()
    print(f"image {i}: {len(data.labels[i])} objects, detections by queries {found}")

# %% [markdown]
# ## What to take away
#
# - DETR predicts a fixed-size set and trains it with a **one-to-one matching**: the Hungarian
#   algorithm on a cost of class probability, L1 and GIoU. Duplicates are matched to nothing and
#   learn to say "no object"; no NMS is needed.
# - GIoU keeps a gradient for boxes that do not overlap their target; L1 on normalised
#   $(c_x, c_y, w, h)$ and GIoU complement each other.
# - The no-object class is down-weighted (0.1) in a **weighted mean** cross-entropy; the box losses
#   are divided by the number of target boxes.
# - Object queries are learned embeddings read by the decoder; the sine code tells the encoder
#   where each feature came from.
#
# Next week: why DETR trains slowly (it needed 500 epochs on COCO) and how Deformable DETR,
# LW-DETR and RF-DETR fix it.
