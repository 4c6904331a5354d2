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
# # Week 3 — Segmentation and pose with transformers
#
# DETR (two weeks ago) turned detection into **set prediction**: a fixed set of $Q$ object
# queries goes through a transformer decoder, each query predicts a class (or "no object") and a
# box, and a Hungarian matching decides which query answers for which ground-truth object. Once
# the matching is fixed, every matched query is trained like a one-object regressor.
#
# Nothing in that recipe is specific to boxes. A query is a vector that *stands for one object*;
# give it other heads and it predicts other things about that object:
#
# - **a mask** — Mask2Former (Cheng et al., 2022) and **MaskDINO** (Li et al., 2023) predict an
#   instance mask per query by a dot product between the query and a map of *per-pixel
#   embeddings*: the mask of query $q$ is "which pixels look like $q$". MaskDINO adds this mask
#   branch to the DINO detector, so that one decoder predicts boxes and masks, and uses the
#   masks to improve the boxes (boxes derived from predicted masks initialise the anchors);
# - **keypoints** — DETR-style pose estimators (PETR, Shi et al., 2022; ED-Pose, Yang et al.,
#   2023) let each query regress the $K$ keypoints of one person directly, with no heatmaps and
#   no grouping step, and score them with COCO's **object keypoint similarity** (OKS).
#
# This week you write those heads, their losses, the mask-aware matching cost, the conversion
# from masks to boxes, and OKS; then you train a tiny MaskDINO-style segmenter on synthetic
# shapes, and a tiny DETR-style pose regressor on triangles whose corners are the keypoints. The box arithmetic, the Hungarian matcher, the sine position encoding and the MLP from
# week 1 of this module are given.
#
# **What you may use.** Any tensor operation, `torch.nn`, `torch.nn.functional`, `torch.optim`
# and `scipy.optimize.linear_sum_assignment` (through the given `hungarian_match`). **What you
# may not use** (outside cells tagged `demo`): `torchvision` (it has `masks_to_boxes` and
# `sigmoid_focal_loss`), `transformers`, `pycocotools`, `timm` and `segment_anything` — the
# grader uses them as trusted references.

# %% [markdown] boilerplate="how_this_notebook_works"
# (the build writes this cell from autograder/pipeline/templates/how_this_notebook_works.md)

# %% [markdown]
# ## The contract with the grader
#
# | detail | what to do |
# | --- | --- |
# | class logits | `num_classes + 1` columns, the last one is "no object" (as in DETR) |
# | mask logits | `[B, Q, H, W]` = `einsum("bqc,bchw->bqhw", mask_embed, pixel_embed)`, no bias, no sigmoid |
# | `MaskHead` names | `decoder_norm` (`nn.LayerNorm`, default eps), `class_embed` (`nn.Linear`), `mask_embed` (the given `MLP`) |
# | losses over masks | inputs are logits, flattened from dimension 1; targets 0/1 (bool or float); sums divided by `num_masks` |
# | dice | $1 - \frac{2\sum p t + 1}{\sum p + \sum t + 1}$ per mask, $p = \sigma(x)$ |
# | focal | mean over pixels per mask, then sum over masks; `alpha < 0` switches the α weighting off |
# | matching cost | `class_weight · (−p_class) + mask_weight · pairwise BCE + dice_weight · pairwise dice`, `[Q, T]` |
# | `masks_to_boxes` | `(x0, y0, x1, y1)` inclusive pixel indices (torchvision's), float32, empty mask → zeros |
# | `masks_to_normalized_boxes` | `(cx, cy, w, h)` of the pixel extent (`x1 + 1` exclusive) divided by `(W, H, W, H)` |
# | keypoints | `[..., K, 2]` as `(x, y)`; the head's `2K` outputs are `x0, y0, x1, y1, ...`, through a sigmoid |
# | OKS | COCO's: `exp(−d² / (2 · area · (2σ)²))` averaged over keypoints with visibility > 0 |
# | training loops | full batch, `AdamW(model.parameters(), lr=lr)`, return one loss per step (before the step), end in `eval()` |
# | training losses | segmenter `2 · CE + 100 · focal + 5 · dice`; pose `2 · CE + 5 · keypoint L1`; "no object" weighted 0.1 in the CE |

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn

# %% tags=["demo"]
import matplotlib.pyplot as plt

from autograder.kit import setup
from autograder.selfcheck import check

_ = setup(seed=0)  # seeds and one thread; it returns a generator, which a cell would display

# %% [markdown]
# ## DETR's building blocks (given)
#
# From week 1 of this module, compactly: box conversions, (generalised) IoU, DETR's matching
# cost, `hungarian_match(cost) -> (query_idx, target_idx)`, the sine position encoding and
# DETR's `MLP(input_dim, hidden_dim, output_dim, num_layers)` (Linear layers with ReLU between
# them, its layers in `self.layers`). Read them; do not change them.

# %% given="detr_blocks"
# filled in by the build from reference/given/detr_blocks.py


# %% [markdown]
# ## Part 1 — Masks from queries: the query–pixel dot product
#
# A segmentation transformer in the MaskDINO / Mask2Former family has three pieces:
#
# 1. a **pixel decoder** turns the backbone's features into a high-resolution map of per-pixel
#    embeddings $\mathcal{E} \in \mathbb{R}^{C \times H \times W}$ (MaskDINO fuses a stride-4
#    backbone feature with the upsampled stride-8 output of the transformer encoder);
# 2. a **transformer decoder** refines $Q$ queries $h_1, \dots, h_Q \in \mathbb{R}^{d}$ by
#    attending to the encoder's tokens;
# 3. **prediction heads** read each query. The class head is DETR's. The mask head is one small
#    MLP that maps a query to a *mask embedding* $m_q = \operatorname{MLP}(h_q) \in \mathbb{R}^C$,
#    and the mask logits are the dot product of that embedding with every pixel's embedding:
#
# $$
# M_q[y, x] = \langle m_q, \mathcal{E}[:, y, x] \rangle = \sum_c m_{q,c}\, \mathcal{E}_{c,y,x}, \qquad
# \text{in PyTorch: } \texttt{torch.einsum("bqc,bchw->bqhw", m, E)} .
# $$
#
# The mask is $\sigma(M_q) > 0.5$. Why a dot product? It makes the mask head *independent of the
# number of objects and classes*: one pixel map serves every query, every query costs one
# matrix product, and the pixel embeddings learn a space in which "belongs to object $q$" is a
# direction. (Mask R-CNN instead crops a feature window per box and runs a small FCN on it.)
#
# As in Mask2Former's and MaskDINO's code, the decoder's output goes through a final LayerNorm
# (`decoder_norm`) before *both* heads.
#
# Write `mask_logits(mask_embed, pixel_embed)` and the module `MaskHead`:
#
# - `MaskHead(hidden_dim, num_classes, mask_dim, num_layers=3)` holds `decoder_norm =
#   nn.LayerNorm(hidden_dim)`, `class_embed = nn.Linear(hidden_dim, num_classes + 1)` and
#   `mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, num_layers)` (the given `MLP`);
# - `forward(queries, pixel_embed)` takes queries `[B, Q, hidden_dim]` and pixel embeddings
#   `[B, mask_dim, H, W]` and returns `(class_logits [B, Q, num_classes + 1], mask_logits [B, Q, H, W])`.

# %%
def mask_logits(mask_embed, pixel_embed):
    """Query-pixel mask logits: [B, Q, C] and [B, C, H, W] -> [B, Q, H, W] (no sigmoid)."""
    ### BEGIN SOLUTION
    return torch.einsum("bqc,bchw->bqhw", mask_embed, pixel_embed)
    ### END SOLUTION


class MaskHead(nn.Module):
    """Class and mask predictions from decoder queries and per-pixel embeddings (Mask2Former / MaskDINO)."""

    def __init__(self, hidden_dim, num_classes, mask_dim, num_layers=3):
        super().__init__()
        ### BEGIN SOLUTION
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, num_layers)
        ### END SOLUTION

    def forward(self, queries, pixel_embed):
        """queries [B, Q, hidden_dim], pixel_embed [B, mask_dim, H, W] ->
        (class_logits [B, Q, num_classes + 1], mask_logits [B, Q, H, W])."""
        ### BEGIN SOLUTION
        queries = self.decoder_norm(queries)
        return self.class_embed(queries), mask_logits(self.mask_embed(queries), pixel_embed)
        ### END SOLUTION


# %% tags=["demo"]
check("m2w03", "mask_head")

# %% [markdown]
# ## Part 2 — Mask losses: dice and sigmoid focal loss
#
# Once the matching has paired query $q$ with ground-truth mask $t$, the predicted logits $M_q$
# are pushed towards $t$ pixel by pixel. Two losses are used together, because each fails alone.
#
# **Per-pixel binary cross-entropy** treats every pixel as an independent classification. Small
# objects cover few pixels, so a mask of all-background is already "99% right"; the **focal
# loss** (Lin et al., 2017, RetinaNet) down-weights the pixels that are already easy. With
# $p = \sigma(x)$, target $t \in \{0, 1\}$ and $p_t = p$ if $t = 1$ else $1 - p$:
#
# $$
# \operatorname{FL}(x, t) = -\alpha_t\, (1 - p_t)^{\gamma} \log p_t, \qquad
# \alpha_t = \alpha\, t + (1 - \alpha)(1 - t),
# $$
#
# with $\gamma = 2$ and $\alpha = 0.25$ by default; $-\log p_t$ is exactly the binary
# cross-entropy with logits. DETR's segmentation code switches the $\alpha$ weighting off when
# `alpha < 0` (then $\gamma = 0$ gives the plain BCE that Mask2Former uses). A mask's loss is the
# **mean over its pixels**, and the masks' losses are **summed and divided by `num_masks`**, the
# number of ground-truth masks in the batch (in multi-GPU training, averaged over all GPUs: the
# loss per object must not depend on how the batch was split).
#
# **Dice loss** (Milletari et al., 2016, V-Net) looks at the mask as a whole: it is one minus a
# soft overlap score, insensitive to how large the object is,
#
# $$
# \operatorname{Dice}(x, t) = 1 - \frac{2 \sum_i p_i t_i + 1}{\sum_i p_i + \sum_i t_i + 1},
# \qquad p_i = \sigma(x_i),
# $$
#
# per mask, summed over masks and divided by `num_masks`. The $+1$ ("smoothing") keeps the loss
# defined for an empty target and prediction. For a perfect hard prediction ($p = t$) the
# fraction is one and the loss is zero.
#
# Write `dice_loss(inputs, targets, num_masks)` and
# `sigmoid_focal_loss(inputs, targets, num_masks, alpha=0.25, gamma=2.0)`. `inputs` are logits
# `[N, ...]` (any trailing shape, e.g. `[N, H, W]`: flatten from dimension 1); `targets` have the
# same shape, 0/1 values as bool or float; both return a scalar.

# %%
def dice_loss(inputs, targets, num_masks):
    """DETR's dice loss: 1 - (2 sum(p t) + 1) / (sum p + sum t + 1) per mask, summed, / num_masks."""
    ### BEGIN SOLUTION
    probs = inputs.sigmoid().flatten(1)
    targets = targets.flatten(1).to(probs.dtype)
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks
    ### END SOLUTION


def sigmoid_focal_loss(inputs, targets, num_masks, alpha=0.25, gamma=2.0):
    """Sigmoid focal loss (RetinaNet): mean over each mask's pixels, summed over masks, / num_masks."""
    ### BEGIN SOLUTION
    inputs = inputs.flatten(1)
    targets = targets.flatten(1).to(inputs.dtype)
    probs = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks
    ### END SOLUTION


# %% tags=["demo"]
check("m2w03", "mask_losses")

# %% [markdown]
# ## Part 3 — Matching with masks
#
# DETR matched queries to objects with a cost of class probability, box L1 and GIoU. With masks,
# Mask2Former and MaskDINO replace (or complement) the box terms with **the mask losses
# themselves, evaluated for every query–target pair**. For logits $x_q \in \mathbb{R}^P$
# (flattened over the $P$ pixels) and a target mask $t_j \in \{0,1\}^P$:
#
# $$
# C^{\text{bce}}_{qj} = \frac1P \sum_i \big[\, t_{ji}\, \ell^+(x_{qi}) + (1 - t_{ji})\, \ell^-(x_{qi}) \big],
# \qquad \ell^+(x) = -\log \sigma(x), \;\; \ell^-(x) = -\log(1 - \sigma(x)),
# $$
#
# which is the mean binary cross-entropy of the pair, written so that **all pairs come from two
# matrix products** ($\ell^+$ times $t^\top$ plus $\ell^-$ times $(1 - t)^\top$) instead of a
# loop over $Q \times T$ pairs; and the pairwise dice
#
# $$
# C^{\text{dice}}_{qj} = 1 - \frac{2\, \sigma(x_q)^\top t_j + 1}{\sum_i \sigma(x_{qi}) + \sum_i t_{ji} + 1} .
# $$
#
# The full cost, `[Q, T]`, with Mask2Former's default weights (class 2, mask 5, dice 5) is
#
# $$
# C_{qj} = -\lambda_{\text{cls}}\, \hat p_q(c_j) + \lambda_{\text{mask}}\, C^{\text{bce}}_{qj} + \lambda_{\text{dice}}\, C^{\text{dice}}_{qj},
# $$
#
# with $\hat p_q$ the softmax over the `num_classes + 1` logits (the "no object" column
# included) and $c_j$ the target's class. (Mask2Former evaluates the mask terms at 12544 random
# points per mask to save memory; our masks are small, so we use every pixel.)
#
# Write `pairwise_sigmoid_ce(inputs, targets)` and `pairwise_dice(inputs, targets)` (logits
# `[Q, P]`, targets `[T, P]`, both returning `[Q, T]`), then
# `mask_matching_cost(class_logits, mask_logits, target_labels, target_masks, class_weight=2.0,
# mask_weight=5.0, dice_weight=5.0)` for one image (`[Q, C+1]`, `[Q, H, W]`, `[T]`, `[T, H, W]`
# → `[Q, T]`), and `match_masks(...)` with the same arguments, which returns the given
# `hungarian_match` of that cost: `(query_idx, target_idx)`.

# %%
def pairwise_sigmoid_ce(inputs, targets):
    """Mean binary cross-entropy of every (query, target) pair: [Q, P] logits, [T, P] targets -> [Q, T]."""
    ### BEGIN SOLUTION
    targets = targets.to(inputs.dtype)
    positive = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    negative = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (positive @ targets.T + negative @ (1 - targets).T) / inputs.shape[1]
    ### END SOLUTION


def pairwise_dice(inputs, targets):
    """Dice loss of every (query, target) pair: [Q, P] logits, [T, P] targets -> [Q, T]."""
    ### BEGIN SOLUTION
    probs = inputs.sigmoid()
    targets = targets.to(probs.dtype)
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)
    ### END SOLUTION


def mask_matching_cost(class_logits, mask_logits, target_labels, target_masks, class_weight=2.0, mask_weight=5.0,
                       dice_weight=5.0):
    """Mask2Former's matching cost for one image: [Q, C+1], [Q, H, W], [T], [T, H, W] -> [Q, T]."""
    ### BEGIN SOLUTION
    cost_class = -class_logits.softmax(-1)[:, target_labels]
    inputs, targets = mask_logits.flatten(1), target_masks.flatten(1)
    return (class_weight * cost_class + mask_weight * pairwise_sigmoid_ce(inputs, targets)
            + dice_weight * pairwise_dice(inputs, targets))
    ### END SOLUTION


def match_masks(class_logits, mask_logits, target_labels, target_masks, class_weight=2.0, mask_weight=5.0,
                dice_weight=5.0):
    """The Hungarian matching under `mask_matching_cost`: (query_idx, target_idx), query_idx ascending."""
    ### BEGIN SOLUTION
    return hungarian_match(mask_matching_cost(class_logits, mask_logits, target_labels, target_masks,
                                              class_weight, mask_weight, dice_weight))
    ### END SOLUTION


# %% tags=["demo"]
check("m2w03", "mask_matching")

# %% [markdown]
# ## Part 4 — Boxes from masks
#
# A mask determines a box: the smallest axis-aligned rectangle around its pixels. MaskDINO uses
# this twice: its query selection predicts masks for the top encoder tokens and turns them into
# boxes to initialise the decoder's anchors ("mask-enhanced anchor box initialisation"), and it
# lets the box and mask branches supervise each other. Data sets without boxes get them the same
# way.
#
# Two conventions, and every off-by-one between them is a classic bug:
#
# - **pixel indices, inclusive** — `torchvision.ops.masks_to_boxes`: `(x0, y0, x1, y1)` are the
#   column and row *indices* of the first and last mask pixel. A one-pixel mask at row 3,
#   column 5 has the box `(5, 3, 5, 3)`, of width 0. Empty masks give `(0, 0, 0, 0)`.
# - **pixel extent, continuous** — the region the pixels cover, from the left edge of the first
#   pixel to the right edge of the last: `(x0, y0, x1 + 1, y1 + 1)`; the one-pixel mask covers
#   a 1×1 square. This is what a DETR box describes (the kit's `shapes` boxes are these). DETR
#   then predicts it as `(cx, cy, w, h)` divided by the image's width and height.
#
# Write `masks_to_boxes(masks)` (`[N, H, W]` bool or 0/1 → `[N, 4]` float32, inclusive indices,
# empty → zeros) and `masks_to_normalized_boxes(masks)` (→ `[N, 4]` float32, the extent as
# `(cx, cy, w, h)` divided by `(W, H, W, H)`; empty → zeros). Images need not be square.

# %%
def masks_to_boxes(masks):
    """[N, H, W] masks -> [N, 4] float32 (x0, y0, x1, y1): inclusive pixel indices; empty masks -> 0."""
    ### BEGIN SOLUTION
    masks = masks.bool()
    n, h, w = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)                  # [N, H], [N, W]
    ys = torch.arange(h, dtype=torch.float32)
    xs = torch.arange(w, dtype=torch.float32)
    big = float(max(h, w))
    x0 = torch.where(cols, xs, big).amin(dim=1)
    x1 = torch.where(cols, xs, -1.0).amax(dim=1)
    y0 = torch.where(rows, ys, big).amin(dim=1)
    y1 = torch.where(rows, ys, -1.0).amax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    return torch.where(rows.any(dim=1, keepdim=True), boxes, torch.zeros_like(boxes))
    ### END SOLUTION


def masks_to_normalized_boxes(masks):
    """[N, H, W] masks -> [N, 4] float32 (cx, cy, w, h) of the pixel extent / (W, H, W, H); empty -> 0."""
    ### BEGIN SOLUTION
    n, h, w = masks.shape
    boxes = masks_to_boxes(masks)
    extent = boxes + torch.tensor([0.0, 0.0, 1.0, 1.0])              # the last pixel's far edge
    normalized = box_xyxy_to_cxcywh(extent) / torch.tensor([w, h, w, h], dtype=torch.float32)
    empty = ~masks.flatten(1).bool().any(dim=1, keepdim=True)
    return torch.where(empty, torch.zeros_like(normalized), normalized)
    ### END SOLUTION


# %% tags=["demo"]
check("m2w03", "boxes_from_masks")

# %% [markdown]
# The kit's shapes come with masks and boxes; the boxes you derive from the masks should sit
# exactly on the drawn extent (red), and torchvision's inclusive box (dashed) one pixel inside at
# the right and bottom edges.

# %% tags=["demo"]
from matplotlib.patches import Rectangle

from autograder.kit.data import shapes

demo = shapes(3, seed=3, size=32, kinds=("square", "disc", "triangle"))
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, image, masks in zip(axes, demo.images, demo.masks):
    ax.imshow(image.permute(1, 2, 0))
    cx, cy, w, h = (masks_to_normalized_boxes(masks) * 32).unbind(-1)
    for x, y, bw, bh in zip(cx - w / 2, cy - h / 2, w, h):
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), bw, bh, fill=False, color="red"))   # imshow centres pixels on integers
    for x0, y0, x1, y1 in masks_to_boxes(masks):
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="white", ls="--"))
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Part 5 — Pose: keypoints per query, and OKS
#
# **Regressing keypoints.** A DETR-style pose model lets each query predict one person: a class
# score ("person" or no object) and the $K$ keypoints directly, as $2K$ numbers through a sigmoid,
# normalised by the image size like DETR's boxes. (PETR and ED-Pose refine them over decoder
# layers; we keep one head.) Write `KeypointHead(hidden_dim, num_keypoints, num_layers=3)` with
# `keypoint_embed = MLP(hidden_dim, hidden_dim, 2 * num_keypoints, num_layers)`; `forward(queries)`
# maps `[B, Q, hidden_dim]` to `[B, Q, K, 2]`, the sigmoid of the MLP's output reshaped so that
# outputs `2k` and `2k + 1` are the `(x, y)` of keypoint `k`.
#
# **The loss.** Matched queries are trained with an L1 loss on the keypoints that are *labelled*:
# COCO's visibility flag $v$ is 0 (not labelled), 1 (labelled, occluded) or 2 (visible), and a
# keypoint with $v = 0$ has no position to regress. Write
# `keypoint_l1_loss(pred, target, num_objects)`: `pred [N, K, 2]`, `target [N, K, 3]` as
# `(x, y, v)`; the sum of $|\Delta x| + |\Delta y|$ over the keypoints with $v > 0$, divided by
# `num_objects`.
#
# **Object keypoint similarity.** COCO scores a predicted pose against a ground truth as an IoU
# would score a box: a number in $[0, 1]$, thresholded at 0.5, 0.55, …, 0.95 for the AP. For each
# labelled keypoint $i$ it measures the distance $d_i$ between prediction and truth on a scale
# set by the object's area $s^2$ (the segment area) and a per-keypoint constant $\sigma_i$ (how
# precisely human annotators place that keypoint: eyes 0.025, hips 0.107):
#
# $$
# \operatorname{OKS} = \frac{\sum_i \exp\!\left(-\dfrac{d_i^2}{2\, s^2\, k_i^2}\right) [v_i > 0]}{\sum_i [v_i > 0]},
# \qquad k_i = 2\sigma_i .
# $$
#
# Read that carefully against `pycocotools`'s `computeOks`: `vars = (sigmas * 2) ** 2` and
# `e = d2 / vars / area / 2` — the area is $s^2$ (not $s$), the constant is $(2\sigma)^2$ (not
# $\sigma^2$), and the average runs over the labelled keypoints only (the prediction's own
# visibility does not matter). A prediction exactly on the truth scores 1; a single keypoint at
# distance $d$ scores $\exp(-d^2 / (8\, \sigma^2 s^2))$.
#
# Write `keypoint_oks(pred, target, areas, sigmas)`: predictions `[N, K, 2]`, ground truths
# `[M, K, 3]` (`(x, y, v)`), their areas `[M]` and `sigmas [K]`, all in the same (pixel) units;
# it returns the `[N, M]` OKS of every prediction–truth pair. Every ground truth has at least one
# labelled keypoint.

# %%
class KeypointHead(nn.Module):
    """K keypoints per query, normalised to [0, 1]: [B, Q, hidden_dim] -> [B, Q, K, 2] as (x, y)."""

    def __init__(self, hidden_dim, num_keypoints, num_layers=3):
        super().__init__()
        ### BEGIN SOLUTION
        self.num_keypoints = num_keypoints
        self.keypoint_embed = MLP(hidden_dim, hidden_dim, 2 * num_keypoints, num_layers)
        ### END SOLUTION

    def forward(self, queries):
        ### BEGIN SOLUTION
        out = self.keypoint_embed(queries).sigmoid()
        return out.reshape(*queries.shape[:-1], self.num_keypoints, 2)
        ### END SOLUTION


def keypoint_l1_loss(pred, target, num_objects):
    """L1 over the labelled keypoints (v > 0): pred [N, K, 2], target [N, K, 3] -> a scalar / num_objects."""
    ### BEGIN SOLUTION
    labelled = (target[..., 2] > 0).to(pred.dtype)
    return ((pred - target[..., :2]).abs().sum(-1) * labelled).sum() / num_objects
    ### END SOLUTION


def keypoint_oks(pred, target, areas, sigmas):
    """COCO's object keypoint similarity of every pair: [N, K, 2], [M, K, 3], [M], [K] -> [N, M]."""
    ### BEGIN SOLUTION
    d2 = ((pred[:, None, :, :] - target[None, :, :, :2]) ** 2).sum(-1)         # [N, M, K]
    e = d2 / ((2 * sigmas) ** 2 * areas[:, None] * 2)                            # [N, M, K]
    labelled = (target[..., 2] > 0).to(pred.dtype)                               # [M, K]
    return (torch.exp(-e) * labelled).sum(-1) / labelled.sum(-1)
    ### END SOLUTION


# %% tags=["demo"]
check("m2w03", "pose")

# %% [markdown]
# ## Part 6 — Training a tiny MaskDINO-style segmenter
#
# Now the pieces work together. The model below is given: a small CNN backbone keeps a
# full-resolution feature map (for the pixel embeddings) and reduces the image to a grid of
# tokens at stride 8 (3×3 for our 24×24 images); a one-layer transformer encoder and a
# two-layer decoder with `num_queries` learned queries follow, as in DETR; the **pixel decoder**
# adds the upsampled encoder output to the projected full-resolution feature (MaskDINO fuses
# stride-4 and stride-8 features; our images are tiny, so full resolution and stride 8); and
# your `MaskHead` reads the queries against that pixel map.
#
# Write `train_segmenter(model, images, labels, masks, steps, lr)`: train `model` on the whole
# batch (`images [n, 3, H, W]`, and per image its `labels [k]` (long) and `masks [k, H, W]`
# (bool)) for `steps` steps of `torch.optim.AdamW(model.parameters(), lr=lr)` (its default
# weight decay), one full-batch step each, and return the list of the `steps` losses (floats,
# each the loss *before* its step). Call `model.train()` first and leave the model in `eval()`
# mode. Nothing is random: no seed is needed. Each step:
#
# 1. run the model: class logits `[n, Q, C+1]`, mask logits `[n, Q, H, W]`;
# 2. per image, `match_masks` with the default weights (class 2, mask 5, dice 5);
# 3. the **class loss**: cross-entropy over all queries of all images, the target of a matched
#    query its object's class, of every other query "no object" (the last class), with DETR's
#    class weights (1 for the object classes, `eos_coef = 0.1` for "no object") —
#    `F.cross_entropy(logits, targets, weight=...)`;
# 4. the **mask losses** over the matched pairs of all images together: your
#    `sigmoid_focal_loss` and `dice_loss` with `num_masks` the number of objects in the batch;
# 5. the total, `loss = 2 * class_loss + 100 * focal + 5 * dice`. (The focal loss scales every
#    pixel's BCE by $\alpha_t \le 0.75$ and $(1 - p_t)^2 \le 1$, an easy pixel's by orders of
#    magnitude, so it is much smaller than the BCE it replaces; the factor 100 brings it to the
#    scale of Mask2Former's BCE term, weight 5.) Match on detached predictions: the matching is
#    a choice, not a function to differentiate.
#
# The grader builds the model, calls your `train_segmenter`, then runs the trained model on the
# training images itself and measures the masks of the matched queries: their mean IoU with the
# true masks, and how many are classified correctly.

# %%
class TinySegmenter(nn.Module):
    """A MaskDINO-style segmenter for small images (given): CNN, transformer, pixel decoder, MaskHead."""

    def __init__(self, num_classes=2, hidden_dim=64, num_queries=6, mask_dim=32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(64, hidden_dim, 3, stride=2, padding=1))
        self.position = SinePositionEmbedding(hidden_dim // 2)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.transformer = nn.Transformer(hidden_dim, nhead=4, num_encoder_layers=1, num_decoder_layers=2,
                                          dim_feedforward=128, dropout=0.0, batch_first=True)
        self.pixel_proj = nn.Conv2d(16, mask_dim, 1)
        self.memory_proj = nn.Conv2d(hidden_dim, mask_dim, 1)
        self.head = MaskHead(hidden_dim, num_classes, mask_dim)

    def forward(self, images):
        full = self.stem(images)                                   # [B, 16, H, W]
        coarse = self.down(full)                                   # [B, hidden, H/8, W/8]
        b, d, h, w = coarse.shape
        tokens = (coarse + self.position(coarse)).flatten(2).transpose(1, 2)
        memory = self.transformer.encoder(tokens)
        queries = self.transformer.decoder(self.query_embed.weight.expand(b, -1, -1), memory)
        memory_map = memory.transpose(1, 2).reshape(b, d, h, w)
        pixel_embed = self.pixel_proj(full) + F.interpolate(self.memory_proj(memory_map), size=full.shape[-2:],
                                                            mode="bilinear", align_corners=False)
        return self.head(queries, pixel_embed)


def train_segmenter(model, images, labels, masks, steps, lr):
    """Full-batch AdamW training with Hungarian-matched class, focal and dice losses; returns the step losses."""
    ### BEGIN SOLUTION
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    num_masks = sum(len(l) for l in labels)
    model.train()
    losses = []
    for _ in range(steps):
        class_logits, mask_logits = model(images)
        num_classes = class_logits.shape[-1] - 1
        class_targets = torch.full(class_logits.shape[:2], num_classes, dtype=torch.long)
        pred_masks, true_masks = [], []
        for b in range(len(images)):
            q, t = match_masks(class_logits[b].detach(), mask_logits[b].detach(), labels[b], masks[b])
            class_targets[b, q] = labels[b][t]
            pred_masks.append(mask_logits[b, q])
            true_masks.append(masks[b][t])
        weight = torch.ones(num_classes + 1, dtype=class_logits.dtype)
        weight[-1] = 0.1                                           # eos_coef
        class_loss = F.cross_entropy(class_logits.flatten(0, 1), class_targets.flatten(), weight=weight)
        pred, true = torch.cat(pred_masks), torch.cat(true_masks)
        loss = (2 * class_loss + 100 * sigmoid_focal_loss(pred, true, num_masks)
                + 5 * dice_loss(pred, true, num_masks))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
    ### END SOLUTION


# %% tags=["demo"]
check("m2w03", "segmenter")

# %% [markdown]
# Train it (about 5 seconds on one CPU thread) and look at what each matched query predicts: the
# true masks, the predicted masks of the queries the Hungarian matching pairs with them, and the
# boxes your `masks_to_boxes` derives from the predictions.

# %% tags=["demo"]
import time

from scipy.optimize import linear_sum_assignment

train = shapes(12, seed=0, size=24, object_size=(5, 10))
torch.manual_seed(0)
segmenter = TinySegmenter()
start = time.time()
seg_losses = train_segmenter(segmenter, train.images, train.labels, train.masks, 120, 3e-3)
print(f"120 steps in {time.time() - start:.1f} s; loss {seg_losses[0]:.2f} -> {seg_losses[-1]:.3f}")
with torch.no_grad():
    seg_classes, seg_masks = segmenter(train.images)


def object_map(masks):
    """[k, H, W] masks -> [H, W]: 0 for background, i + 1 where mask i is (the first, where they overlap)."""
    return (masks.float().argmax(0) + 1) * masks.any(0)


fig, axes = plt.subplots(3, 4, figsize=(10, 7.5))
for col in range(4):
    q, t = match_masks(seg_classes[col], seg_masks[col], train.labels[col], train.masks[col])
    predicted = seg_masks[col, q] > 0
    axes[0, col].imshow(train.images[col].permute(1, 2, 0))
    axes[1, col].imshow(object_map(train.masks[col][t]), cmap="tab10", vmin=0, vmax=9)
    axes[2, col].imshow(object_map(predicted), cmap="tab10", vmin=0, vmax=9)
    for x0, y0, x1, y1 in masks_to_boxes(predicted):
        axes[2, col].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, color="white"))
    axes[2, col].set_title(f"queries {q.tolist()}", fontsize=8)
for ax, name in zip(axes[:, 0], ("image", "true masks", "matched queries' masks")):
    ax.set_ylabel(name)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Part 7 — Training a tiny DETR-style pose regressor
#
# The same recipe with the keypoint head. The model below is given: a small CNN reduces the image
# to a grid of tokens, a transformer (one encoder layer, two decoder layers) refines
# `num_queries` learned queries, a linear class head says "object" (class 0) or "no object"
# (class 1) per query, and your `KeypointHead` regresses the `K` keypoints of each query,
# normalised to $[0, 1]$.
#
# Write `train_pose(model, images, keypoints, steps, lr)`: `images [n, 3, H, W]`, and per image
# its objects' keypoints `[k, K, 3]` as `(x, y, v)` with `x, y` **normalised** by the image's
# width and height. Train for `steps` full-batch steps of
# `torch.optim.AdamW(model.parameters(), lr=lr)`, return the `steps` losses (floats, each before
# its step), `model.train()` first and `model.eval()` at the end. Each step:
#
# 1. run the model: class logits `[n, Q, 2]`, keypoints `[n, Q, K, 2]`;
# 2. per image, the matching cost of query $q$ and object $j$ is
#    $-\hat p_q(\text{object}) + 5 \sum_{i:\, v_{ji} > 0} \lVert \hat k_{qi} - k_{ji} \rVert_1$
#    (the class probability after a softmax, and the L1 distance of the labelled keypoints), and
#    the given `hungarian_match` pairs them;
# 3. the class loss: cross-entropy over all queries of all images, target 0 for matched queries
#    and 1 ("no object") for the others, class weights `[1, 0.1]`;
# 4. the keypoint loss: your `keypoint_l1_loss` over the matched pairs of all images together,
#    `num_objects` the number of objects in the batch;
# 5. `loss = 2 * class_loss + 5 * keypoint_loss`.
#
# The grader builds the model, calls your `train_pose` on images of triangles (their three
# corners are the keypoints), runs the trained model itself, takes each image's most confident
# query and scores its keypoints against the truth with COCO's OKS (with your function's formula,
# computed on the grader's side).

# %%
class TinyPoseNet(nn.Module):
    """A DETR-style keypoint regressor for small images (given): CNN, transformer, class head, KeypointHead."""

    def __init__(self, num_keypoints=3, hidden_dim=64, num_queries=4):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(64, hidden_dim, 3, stride=2, padding=1))
        self.position = SinePositionEmbedding(hidden_dim // 2)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.transformer = nn.Transformer(hidden_dim, nhead=4, num_encoder_layers=1, num_decoder_layers=2,
                                          dim_feedforward=128, dropout=0.0, batch_first=True)
        self.class_embed = nn.Linear(hidden_dim, 2)
        self.keypoint_head = KeypointHead(hidden_dim, num_keypoints)

    def forward(self, images):
        features = self.backbone(images)
        b = features.shape[0]
        tokens = (features + self.position(features)).flatten(2).transpose(1, 2)
        queries = self.transformer(tokens, self.query_embed.weight.expand(b, -1, -1))
        return self.class_embed(queries), self.keypoint_head(queries)


def train_pose(model, images, keypoints, steps, lr):
    """Full-batch AdamW training with Hungarian-matched class and keypoint L1 losses; returns the step losses."""
    ### BEGIN SOLUTION
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    num_objects = sum(len(k) for k in keypoints)
    weight = torch.tensor([1.0, 0.1])
    model.train()
    losses = []
    for _ in range(steps):
        class_logits, points = model(images)
        class_targets = torch.ones(class_logits.shape[:2], dtype=torch.long)      # "no object"
        preds, targets = [], []
        for b in range(len(images)):
            target = keypoints[b]
            labelled = (target[:, :, 2] > 0).to(points.dtype)                     # [k, K]
            distance = (points[b, :, None].detach() - target[None, :, :, :2]).abs().sum(-1)  # [Q, k, K]
            cost = -class_logits[b].detach().softmax(-1)[:, :1] + 5 * (distance * labelled).sum(-1)
            q, t = hungarian_match(cost)
            class_targets[b, q] = 0
            preds.append(points[b, q])
            targets.append(target[t])
        class_loss = F.cross_entropy(class_logits.flatten(0, 1), class_targets.flatten(), weight=weight.to(class_logits.dtype))
        loss = 2 * class_loss + 5 * keypoint_l1_loss(torch.cat(preds), torch.cat(targets), num_objects)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
    ### END SOLUTION


# %% tags=["demo"]
check("m2w03", "pose_training")

# %% [markdown]
# Train the pose regressor on triangles and draw each image's most confident query's keypoints
# (crosses) on the true corners (circles), with the OKS your `keypoint_oks` gives it (σ = 0.1 for
# the three corners, the area of the triangle's mask).

# %% tags=["demo"]
tri = shapes(12, seed=1, size=24, objects=(1, 1), kinds=("triangle",), object_size=(8, 14))
tri_keypoints = [k / torch.tensor([24.0, 24.0, 1.0]) for k in tri.keypoints]
torch.manual_seed(0)
pose_net = TinyPoseNet()
pose_losses = train_pose(pose_net, tri.images, tri_keypoints, 200, 3e-3)
with torch.no_grad():
    pose_classes, pose_points = pose_net(tri.images)
best = pose_classes.softmax(-1)[..., 0].argmax(-1)
fig, axes = plt.subplots(1, 6, figsize=(12, 2.3))
for i, ax in enumerate(axes):
    pred = pose_points[i, best[i]] * 24
    truth = tri.keypoints[i][0]
    oks = keypoint_oks(pred[None].double(), truth[None].double(), tri.masks[i].sum()[None].double(),
                       torch.full((3,), 0.1, dtype=torch.float64))
    ax.imshow(tri.images[i].permute(1, 2, 0))
    ax.scatter(truth[:, 0] - 0.5, truth[:, 1] - 0.5, s=40, facecolors="none", edgecolors="cyan")
    ax.scatter(pred[:, 0] - 0.5, pred[:, 1] - 0.5, s=40, marker="x", color="red")
    ax.set_title(f"OKS {oks.item():.2f}", fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What to take away
#
# - A query is an object: give it a mask head (an MLP whose output is dotted with per-pixel
#   embeddings) or a keypoint head (an MLP with a sigmoid) and the same decoder segments or
#   estimates pose. One pixel map serves every query.
# - Masks are trained with two losses that fail in different ways: a focal (or plain) binary
#   cross-entropy per pixel, averaged per mask, and a dice loss per mask; both are summed over
#   masks and divided by the number of ground-truth masks.
# - The matching cost for masks reuses those losses for every query–target pair, written as
#   matrix products; the Hungarian matcher does not change.
# - Masks give boxes; mind the convention (inclusive indices or the pixel extent).
# - OKS is COCO's IoU for keypoints: $\exp(-d^2 / (2 s^2 (2\sigma)^2))$ averaged over the labelled
#   keypoints, with $s^2$ the object's area.
#
# Next week: the queries get a memory across frames — tracking.
