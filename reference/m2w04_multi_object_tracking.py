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
# # Week 4 — Multi-object tracking with queries
#
# A detector answers *what is where* in one image. A **tracker** must also say *who is who*
# from one frame to the next: every object keeps one identity for as long as it is visible,
# new objects get new identities, and objects that leave stop being reported.
#
# The classic recipe, *tracking by detection*, runs a detector on every frame and links the
# boxes afterwards with motion models and appearance features. DETR's queries suggest
# something simpler: a query that found an object in frame $t$ can be **carried to frame
# $t+1$** and asked again, "where is *your* object now?". The identity then lives in the
# query itself.
#
# | paper | what it adds |
# | --- | --- |
# | **TrackFormer** (Meinhardt et al., CVPR 2022) | *track queries*: the output embeddings of frame $t$'s detections become extra queries of frame $t+1$; trained on pairs of frames |
# | **MOTR** (Zeng et al., ECCV 2022) | *tracklet-aware label assignment* (TALA), a query life cycle with enter and exit thresholds, and the *collective average loss* over whole clips |
# | **MOTRv2** (Zhang et al., CVPR 2023) | detection queries initialised from a separate detector's proposals (YOLOX boxes and scores), so that MOTR need not learn to detect and to track at once |
# | **SAM** (Kirillov et al., ICCV 2023) | a *prompt encoder*: points and boxes become tokens through random Fourier features; SAM 2 carries such prompts and memories through videos |
#
# This week you write the pieces that make a query-based tracker work and the numbers that
# say how well it tracks:
#
# 1. **TALA**: which ground-truth object each query must predict in a training frame;
# 2. **the query life cycle**: when a detection becomes a track, when a track dies, and which
#    identity it carries;
# 3. **the collective average loss** over a clip;
# 4. **MOTRv2's proposal queries** built from a detector's boxes and scores;
# 5. **SAM's prompt encoding** of points and boxes;
# 6. **a step tracker** trained on moving squares, TrackFormer-style, on pairs of frames;
# 7. **MOTA and IDF1**, the two numbers every tracking paper reports.
#
# Everything runs on a CPU in seconds, on synthetic videos of moving squares.
#
# **What you may use.** Any tensor operation, `torch.nn`, `torch.nn.functional`,
# `torch.optim`, and the given DETR blocks below (`hungarian_match` uses
# `scipy.optimize.linear_sum_assignment`, which you may use too). **What you may not use**
# (outside cells tagged `demo`): `torchvision`, `segment_anything`, `motmetrics`,
# `transformers` and `pycocotools` — the grader uses them as trusted references.

# %% [markdown] boilerplate="how_this_notebook_works"
# (the build writes this cell from autograder/pipeline/templates/how_this_notebook_works.md)

# %% [markdown]
# ## The contract with the grader
#
# | part | function | what must hold |
# | --- | --- | --- |
# | tala | `tracklet_aware_assignment` | one entry per query, track queries first; a ground-truth *index* (not an id) or `-1` |
# | track_update | `update_tracks` | misses reset at `score >= exit_threshold`; death at `misses >= miss_tolerance`; birth at `score >= enter_threshold`; survivors first, in order, then newborns in query order |
# | clip_loss | `clip_loss` | sigmoid focal loss over all queries, L1 and $1 - \mathrm{GIoU}$ over matched queries, all **summed** over the clip and divided once by the number of ground-truth boxes in the clip |
# | proposals | `sine_embedding`, `proposal_queries` | sines and cosines alternate, frequency $T^{2\lfloor f/2 \rfloor / F}$, values times $2\pi$; learned queries before proposals |
# | prompt_encoding | `fourier_encode`, `dense_encoding`, `encode_points`, `encode_boxes` | SAM's layout: coordinates $(x, y)$, $[\sin, \cos]$ in that order, $+0.5$ pixel centres, $x$ divided by the width |
# | tracker | `tracking_pairs`, `train_tracker` | pairs ordered by video, frame, object; boxes normalised $(x_0, y_0, x_1, y_1)$; one loss per step |
# | metrics | `clear_mot`, `id_f1` | motmetrics' rules: a match needs IoU $\ge$ the threshold; CLEAR-MOT keeps last frame's matches first; IDF1 matches whole trajectories once |

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn

# %% tags=["demo"]
from autograder.kit import setup
from autograder.selfcheck import check

_ = setup(seed=0)  # seeds and one thread; it returns a generator, which a cell would display

# %% [markdown]
# ## DETR's blocks from week m2w01 (given)
#
# Box conversions, (generalised) IoU, the Hungarian matcher and DETR's position encoding, as
# you wrote them in m2w01. Boxes are $(c_x, c_y, w, h)$ for predictions and $(x_0, y_0, x_1, y_1)$
# for the IoU functions. `box_iou(a, b)` returns the IoU matrix **and** the union;
# `hungarian_match(cost)` returns the matched row indices (ascending) and their columns.

# %% given="detr_blocks"
# filled in by the build from reference/given/detr_blocks.py


# %% [markdown]
# ## Part 1 — Tracklet-aware label assignment (TALA)
#
# In DETR, every training image is a fresh set-prediction problem: the Hungarian algorithm
# decides which query predicts which object. In a video, that would be wrong for the **track
# queries**: a track query carries an identity from the previous frame, and its whole point is to
# predict *that* object again. If the matcher were free to give it another object, identities
# would be shuffled from frame to frame and nothing would teach the query to follow its object.
#
# MOTR's *tracklet-aware label assignment* splits the queries in two:
#
# - a **track query** carrying object id $k$ is assigned to the ground-truth object with id $k$
#   if that object is in the frame, and to nothing ("no object", it should disappear) if it has
#   left;
# - the **detection queries** are matched with the Hungarian algorithm, exactly as in DETR, but
#   only to the **newborn** objects: those that no track query carries.
#
# $$
# \hat\omega_i^{\text{track}} = \{\, j : \mathrm{id}_j = \mathrm{id}(q_i) \,\},
# \qquad
# \hat\omega^{\text{det}} = \operatorname*{arg\,min}_{\omega \in \Omega_{\text{new}}} \sum_{i} \mathcal{C}\big(q_i^{\text{det}}, y_{\omega(i)}\big),
# $$
#
# where $\Omega_{\text{new}}$ are the one-to-one assignments of detection queries to newborn
# objects. (In training, MOTR builds the track queries of frame $t+1$ from the queries matched in
# frame $t$, so their ids are the ground-truth ids they were matched to.) TrackFormer does the same.
#
# Write `tracklet_aware_assignment(track_ids, gt_ids, det_cost)`:
#
# - `track_ids`: long `[M]`, the object id each track query carries ($M \ge 0$, ids distinct);
# - `gt_ids`: long `[N]`, the ids of this frame's ground-truth objects (distinct);
# - `det_cost`: `[D, N]`, the matching cost of each detection query against **every** ground-truth
#   object (the columns of objects that are not newborn must be ignored);
# - returns long `[M + D]`: for each query, **track queries first**, then detection queries, the
#   **index** $j \in \{0, \dots, N-1\}$ of its ground-truth object, or `-1` for no object.
#
# Detection queries left over (more queries than newborns) get `-1`. Use `hungarian_match` on the
# newborn columns and translate the matched column indices back to indices into `gt_ids`.

# %%
def tracklet_aware_assignment(track_ids, gt_ids, det_cost):
    """MOTR's TALA for one frame.

    Args:
        track_ids: long [M], the object id carried by each track query.
        gt_ids: long [N], the ids of the frame's ground-truth objects.
        det_cost: [D, N] matching cost of the detection queries against all ground-truth objects.

    Returns:
        long [M + D]: for the track queries, then the detection queries, the index into gt_ids of
        the object each one must predict, or -1.
    """
    ### BEGIN SOLUTION
    M, (D, N) = len(track_ids), det_cost.shape
    assignment = torch.full((M + D,), -1, dtype=torch.long)
    same = track_ids[:, None] == gt_ids[None, :]                     # [M, N]: query m carries object j
    index = (same.long() * torch.arange(N)).sum(dim=1)               # ids are distinct: at most one j per row
    assignment[:M] = torch.where(same.any(dim=1), index, -1)
    newborn = (~same.any(dim=0)).nonzero().flatten()                 # objects no track query carries
    if D > 0 and len(newborn) > 0:
        queries, columns = hungarian_match(det_cost[:, newborn])
        assignment[M + queries] = newborn[columns]                   # back to indices into gt_ids
    return assignment
    ### END SOLUTION


# %% tags=["demo"]
check("m2w04", "tala")

# %% [markdown]
# A frame with three objects (ids 7, 3, 9). Two track queries carry ids 3 and 5: object 3 is
# still there, object 5 has left. Object 7 and 9 are newborn; three detection queries compete for
# them. The track query of id 3 gets object index 1 whatever the costs say.

# %% tags=["demo"]
cost = torch.tensor([[0.9, 0.0, 0.2],      # column 1 (object 3) is the cheapest for every detection
                     [0.1, 0.0, 0.8],      # query, but a track query carries it: it is not theirs
                     [0.7, 0.0, 0.3]])
print(tracklet_aware_assignment(torch.tensor([3, 5]), torch.tensor([7, 3, 9]), cost).tolist())

# %% [markdown]
# ## Part 2 — The life cycle of a track query
#
# At inference there is no ground truth: the scores decide. MOTR's *query interaction module*
# and TrackFormer's inference follow the same rules, frame by frame:
#
# - **birth**: a detection query whose score is at least $\tau_{\text{en}}$ (`enter_threshold`)
#   starts a new track with a fresh identity; identities are handed out in increasing order,
#   `next_id`, `next_id + 1`, …, in the order of the detection queries;
# - **survival**: a track query whose score falls below $\tau_{\text{ex}}$ (`exit_threshold`) is
#   not killed at once — objects get occluded for a frame or two — but counts a *miss*; a score
#   at or above $\tau_{\text{ex}}$ resets its count to zero;
# - **death**: a track that has missed `miss_tolerance` **consecutive** frames (its count
#   reaches `miss_tolerance` in this frame) is removed for good, and its identity is never reused.
#
# MOTRv2's code (`RuntimeTrackerBase` in `models/motr.py`) defaults to $\tau_{\text{en}} = 0.6$,
# $\tau_{\text{ex}} = 0.5$ and a tolerance of 10 frames, and resets the miss count only at scores of at
# least $\tau_{\text{en}}$; our defaults are 0.7, 0.6 and 5, with the simpler reset rule above.
#
# Write `update_tracks` for one frame. It returns the tracks that enter the next frame:
#
# - `ids`: long `[M']`, survivors first, in their previous order, then the newborns;
# - `misses`: long `[M']`, the updated miss counts (0 for newborns);
# - `source`: long `[M']`, which of this frame's queries each track comes from: `m` for track
#   query `m` (0..M-1), `M + d` for detection query `d` — the caller gathers the query
#   embeddings with it;
# - `next_id`: an `int`, the identity the next newborn will get.

# %%
def update_tracks(ids, misses, track_scores, det_scores, next_id, enter_threshold=0.7, exit_threshold=0.6,
                  miss_tolerance=5):
    """One frame of the track-query life cycle.

    Args:
        ids: long [M], the identities of the current track queries.
        misses: long [M], how many consecutive frames each has scored below exit_threshold so far.
        track_scores: [M], this frame's scores of the track queries.
        det_scores: [D], this frame's scores of the detection queries.
        next_id: int, the identity the next new track gets.
        enter_threshold, exit_threshold, miss_tolerance: the life-cycle rules above.

    Returns:
        (ids [M'], misses [M'], source [M'], next_id): the tracks of the next frame (survivors in
        order, then newborns), where each comes from (m, or M + d), and the next free identity.
    """
    ### BEGIN SOLUTION
    M = len(ids)
    misses = torch.where(track_scores < exit_threshold, misses + 1, torch.zeros_like(misses))
    alive = misses < miss_tolerance
    born = (det_scores >= enter_threshold).nonzero().flatten()
    new_ids = next_id + torch.arange(len(born), dtype=torch.long)
    return (torch.cat([ids[alive], new_ids]),
            torch.cat([misses[alive], torch.zeros(len(born), dtype=torch.long)]),
            torch.cat([alive.nonzero().flatten(), M + born]),
            next_id + len(born))
    ### END SOLUTION


# %% tags=["demo"]
check("m2w04", "track_update")

# %% [markdown]
# Four frames of one object that is occluded in frames 1 and 2 (its score drops), with a
# tolerance of 2: it dies in frame 2. A second detection in frame 3 is a new identity.

# %% tags=["demo"]
state = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 0)
frames = [(torch.tensor([]), torch.tensor([0.9, 0.1])), (torch.tensor([0.3]), torch.tensor([0.2, 0.1])),
          (torch.tensor([0.4]), torch.tensor([0.1, 0.2])), (torch.tensor([]), torch.tensor([0.1, 0.8]))]
for t, (track_scores, det_scores) in enumerate(frames):
    ids, misses, source, next_id = update_tracks(state[0], state[1], track_scores, det_scores, state[2],
                                                 miss_tolerance=2)
    state = (ids, misses, next_id)
    print(f"frame {t}: tracks {ids.tolist()} misses {misses.tolist()} from queries {source.tolist()}")

# %% [markdown]
# ## Part 3 — The collective average loss
#
# DETR normalises its loss by the number of objects in the image. MOTR trains on **clips** of
# several frames and argues that the right normaliser is the number of objects in the *whole
# clip*: the frame losses are summed and divided once,
#
# $$
# \mathcal{L}_{\text{clip}} = \frac{\sum_{t=1}^{T} \Big( \lambda_{\text{cls}} \mathcal{L}_{\text{cls}}^{(t)} + \lambda_{\ell_1} \mathcal{L}_{\ell_1}^{(t)} + \lambda_{\text{giou}} \mathcal{L}_{\text{giou}}^{(t)} \Big)}{\sum_{t=1}^{T} n_t},
# $$
#
# with $n_t$ the number of ground-truth objects in frame $t$. Averaging frame by frame instead
# would give a frame with one object as much weight as a frame with ten. In frame $t$, with the
# assignment from TALA:
#
# - $\mathcal{L}_{\text{cls}}^{(t)}$: the **sigmoid focal loss** (one "object" logit per query,
#   as Deformable DETR and MOTR use), **summed over all queries**, target 1 for assigned queries
#   and 0 for the others. With $p = \sigma(x)$, target $y$, $p_t = p$ if $y = 1$ else $1 - p$, and
#   $\alpha_t = \alpha$ if $y = 1$ else $1 - \alpha$:
#   $\; \mathrm{FL} = -\alpha_t (1 - p_t)^{\gamma} \log p_t$ (compute $-\log p_t$ as
#   `F.binary_cross_entropy_with_logits`, which is stable);
# - $\mathcal{L}_{\ell_1}^{(t)}$: $\sum |b - \hat b|$ over the matched queries and the four
#   $(c_x, c_y, w, h)$ coordinates;
# - $\mathcal{L}_{\text{giou}}^{(t)}$: $\sum (1 - \mathrm{GIoU}(b, \hat b))$ over the matched pairs
#   (convert to $(x_0, y_0, x_1, y_1)$ first).
#
# MOTR's weights are $\lambda_{\text{cls}} = 2$, $\lambda_{\ell_1} = 5$, $\lambda_{\text{giou}} = 2$,
# with $\alpha = 0.25$, $\gamma = 2$. The tensors are padded to fixed sizes:
#
# - `logits` `[T, Q]`, `boxes` `[T, Q, 4]` (cx, cy, w, h), `assignment` long `[T, Q]` (index into
#   that frame's targets, or `-1`);
# - `target_boxes` `[T, N, 4]` and `target_present` bool `[T, N]`: which target slots hold an
#   object in that frame. The normaliser is `target_present.sum()` (at least 1) — objects that no
#   query found count too. Assigned queries only ever point to present targets.

# %%
def clip_loss(logits, boxes, assignment, target_boxes, target_present, class_weight=2.0, l1_weight=5.0,
              giou_weight=2.0, alpha=0.25, gamma=2.0):
    """MOTR's collective average loss over a clip of T frames.

    Args:
        logits: [T, Q] object logits; boxes: [T, Q, 4] predicted (cx, cy, w, h).
        assignment: long [T, Q], each query's target index in its frame, or -1.
        target_boxes: [T, N, 4] (cx, cy, w, h); target_present: bool [T, N].
        class_weight, l1_weight, giou_weight: the lambdas; alpha, gamma: the focal loss's.

    Returns:
        A scalar: the weighted sum over all frames / max(number of present targets, 1).
    """
    ### BEGIN SOLUTION
    total = logits.new_zeros(())
    for t in range(logits.shape[0]):
        matched = assignment[t] >= 0
        target = matched.to(logits.dtype)
        p = logits[t].sigmoid()
        ce = F.binary_cross_entropy_with_logits(logits[t], target, reduction="none")
        p_t = p * target + (1 - p) * (1 - target)
        alpha_t = alpha * target + (1 - alpha) * (1 - target)
        focal = (alpha_t * (1 - p_t) ** gamma * ce).sum()
        src, tgt = boxes[t][matched], target_boxes[t][assignment[t][matched]]
        l1 = (src - tgt).abs().sum()
        giou = (1 - generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt)).diagonal()).sum()
        total = total + class_weight * focal + l1_weight * l1 + giou_weight * giou
    return total / target_present.sum().clamp(min=1)
    ### END SOLUTION


# %% tags=["demo"]
check("m2w04", "clip_loss")

# %% [markdown]
# ## Part 4 — MOTRv2's detector proposals as queries
#
# MOTR learns to detect and to track with the same queries, and its detection suffers: the
# newborn objects must be found by queries that are also busy following old ones. MOTRv2 hands
# detection to a separate, strong detector (YOLOX) and keeps MOTR for what it is good at —
# refining boxes and keeping identities. Each detector box becomes a **proposal query**:
#
# - its **reference point** (the box that deformable attention samples around, the "anchor") is
#   the detector's box $(c_x, c_y, w, h)$ itself;
# - its **positional query** is a sine embedding of the detector's **score** plus one shared
#   learned vector (`yolox_embed`): the decoder knows how confident the detector was.
#
# In MOTRv2's code (`models/motr.py`, `_generate_empty_tracks`) the proposals are appended after
# the model's own learned queries:
#
# ```python
# ref_pts   = torch.cat([self.position.weight, proposals[:, :4]])
# query_pos = torch.cat([self.query_embed.weight, pos2posemb(proposals[:, 4:], d_model) + self.yolox_embed.weight])
# ```
#
# and `pos2posemb` is the 1-D version of DETR's sine encoding. For a value $v \in [0, 1]$ and $F$
# features ($F$ even), with $d_f = T^{2 \lfloor f/2 \rfloor / F}$ and temperature $T = 10000$,
#
# $$
# \mathrm{PE}(v)_f = \begin{cases} \sin(2\pi v / d_f) & f \text{ even} \\ \cos(2\pi v / d_f) & f \text{ odd} \end{cases},
# \qquad f = 0, \dots, F - 1,
# $$
#
# so sines and cosines **alternate** (sin, cos, sin, cos, …), each pair sharing one frequency.
# A tensor of $k$ values per row, `[..., k]`, is encoded value by value and the $k$ encodings are
# concatenated in order: `[..., k F]` (MOTRv2 encodes the 4 box coordinates of its reference
# points the same way inside the decoder).
#
# Write `sine_embedding(values, num_feats=64, temperature=10000)` and
# `proposal_queries(proposals, anchors, query_embed, score_embed, temperature=10000)`:
#
# - `proposals`: `[P, 5]`, each $(c_x, c_y, w, h, s)$ normalised, $s$ the detector's score;
# - `anchors`: `[Q, 4]` learned reference boxes; `query_embed`: `[Q, D]` learned positional queries;
#   `score_embed`: `[D]`, the shared vector added to every proposal's score embedding;
# - returns `(ref_pts [Q + P, 4], query_pos [Q + P, D])`, learned queries first, the score
#   embedding computed with `num_feats = D`.

# %%
def sine_embedding(values, num_feats=64, temperature=10000):
    """MOTRv2's pos2posemb: each of the k values of [..., k] -> num_feats features, concatenated: [..., k * num_feats]."""
    ### BEGIN SOLUTION
    i = torch.arange(num_feats, dtype=values.dtype)
    dim_t = temperature ** (2 * (i // 2) / num_feats)
    x = values[..., None] * (2 * math.pi) / dim_t                             # [..., k, F]
    return torch.stack([x[..., 0::2].sin(), x[..., 1::2].cos()], dim=-1).flatten(-3)
    ### END SOLUTION


def proposal_queries(proposals, anchors, query_embed, score_embed, temperature=10000):
    """MOTRv2's queries: the learned ones, then one per detector proposal.

    Returns:
        (ref_pts [Q + P, 4], query_pos [Q + P, D]).
    """
    ### BEGIN SOLUTION
    d_model = query_embed.shape[-1]
    ref_pts = torch.cat([anchors, proposals[:, :4]])
    scores = sine_embedding(proposals[:, 4:], d_model, temperature) + score_embed
    return ref_pts, torch.cat([query_embed, scores])
    ### END SOLUTION


# %% tags=["demo"]
check("m2w04", "proposals")

# %% [markdown]
# Nearby scores get similar embeddings, and the lowest frequencies carry the coarse value: the
# cosine similarity of the embeddings of two scores falls off with their difference.

# %% tags=["demo"]
grid = torch.linspace(0, 1, 101)
emb = F.normalize(sine_embedding(grid[:, None], 64), dim=-1)
print("similarity of score 0.9 with 0.9, 0.8, 0.5, 0.1:",
      [round(float(emb[90] @ emb[j]), 3) for j in (90, 80, 50, 10)])

# %% [markdown]
# ## Part 5 — SAM's prompt encoding
#
# SAM turns a click or a box into a token that a transformer can attend to. A coordinate is a
# low-dimensional input, and MLPs and attention are notoriously bad at resolving fine
# differences in low-dimensional inputs (the *spectral bias*). Tancik et al. (2020, *Fourier
# Features Let Networks Learn High Frequency Functions*) fix this with **random Fourier
# features**, and SAM's `PositionEmbeddingRandom` uses them: with a fixed Gaussian matrix
# $G \in \mathbb{R}^{2 \times F}$ (entries $\mathcal{N}(0, s^2)$, drawn once, never trained),
#
# $$
# \gamma(c) = \big[\, \sin(2\pi\, (2c - 1)\, G),\ \cos(2\pi\, (2c - 1)\, G) \,\big] \in \mathbb{R}^{2F},
# $$
#
# for a point $c = (x, y)$ normalised to $[0, 1]^2$ and mapped to $[-1, 1]^2$ by $2c - 1$. The
# sines come first, then the cosines. The scale $s$ sets the frequencies: larger $s$ resolves
# finer position differences but makes distant points look unrelated.
#
# SAM's details, which the grader holds you to:
#
# - **dense** encoding of an $H \times W$ grid (the image embedding's positions): pixel centres
#   $x = (j + 0.5)/W$, $y = (i + 0.5)/H$, returned channels-first `[2F, H, W]`;
# - **points** in pixels `(x, y)`: shifted to the pixel centre ($+0.5$), then $x / W$ and $y / H$
#   with `image_size = (H, W)`; then $\gamma$; then a learned embedding by label: label 1
#   (foreground) adds `label_embeddings[1]`, label 0 (background) adds `label_embeddings[0]`,
#   and label $-1$ (a padding point) **replaces** the encoding by `not_a_point` (the encoding of
#   a padding point means nothing);
# - **boxes** `(x0, y0, x1, y1)` in pixels: two corner points, each shifted by $+0.5$ and
#   encoded, plus `corner_embeddings[0]` for the top-left and `corner_embeddings[1]` for the
#   bottom-right corner: `[B, 2, 2F]`.

# %%
def fourier_encode(coords, gaussian_matrix):
    """SAM's random Fourier features: [..., 2] coordinates (x, y) in [0, 1], G [2, F] -> [..., 2F]."""
    ### BEGIN SOLUTION
    projected = 2 * math.pi * ((2 * coords - 1) @ gaussian_matrix)
    return torch.cat([projected.sin(), projected.cos()], dim=-1)
    ### END SOLUTION


def dense_encoding(height, width, gaussian_matrix):
    """The encoding of every pixel centre of a height x width grid: [2F, height, width]."""
    ### BEGIN SOLUTION
    dtype = gaussian_matrix.dtype
    y = (torch.arange(height, dtype=dtype) + 0.5) / height
    x = (torch.arange(width, dtype=dtype) + 0.5) / width
    grid = torch.stack([x[None, :].expand(height, width), y[:, None].expand(height, width)], dim=-1)
    return fourier_encode(grid, gaussian_matrix).permute(2, 0, 1)
    ### END SOLUTION


def encode_points(points, labels, image_size, gaussian_matrix, label_embeddings, not_a_point):
    """SAM's point prompts.

    Args:
        points: [B, K, 2] pixel coordinates (x, y); labels: long [B, K] in {-1, 0, 1}.
        image_size: (H, W); gaussian_matrix: [2, F].
        label_embeddings: [2, 2F] (row 0: background, row 1: foreground); not_a_point: [2F].

    Returns:
        [B, K, 2F].
    """
    ### BEGIN SOLUTION
    height, width = image_size
    coords = (points + 0.5) / torch.tensor([width, height], dtype=points.dtype)
    encoding = fourier_encode(coords, gaussian_matrix)
    pad, lab = (labels == -1)[..., None], labels.clamp(min=0)
    with_label = encoding + label_embeddings[lab] * (~pad)
    return torch.where(pad, not_a_point.expand_as(encoding), with_label)
    ### END SOLUTION


def encode_boxes(boxes, image_size, gaussian_matrix, corner_embeddings):
    """SAM's box prompts: [B, 4] (x0, y0, x1, y1) pixels -> [B, 2, 2F] (top-left, bottom-right corner)."""
    ### BEGIN SOLUTION
    height, width = image_size
    corners = (boxes.reshape(-1, 2, 2) + 0.5) / torch.tensor([width, height], dtype=boxes.dtype)
    return fourier_encode(corners, gaussian_matrix) + corner_embeddings
    ### END SOLUTION


# %% tags=["demo"]
check("m2w04", "prompt_encoding")

# %% [markdown]
# How similar are the encodings of two points? The dot product of $\gamma(c)$ and $\gamma(c')$ is
# $\sum_f \cos(2\pi \cdot 2 (c - c') G_f)$: it depends only on the offset, and the scale $s$ of
# $G$ decides how fast it falls off. With SAM's 128 features:

# %% tags=["demo"]
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, scale in zip(axes, (0.25, 1.0, 4.0)):
    G = scale * torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    dense = dense_encoding(32, 32, G).flatten(1)                           # [128, 1024]
    centre = fourier_encode(torch.tensor([0.5, 0.5]), G)                  # [128]
    ax.imshow((centre @ dense).reshape(32, 32) / 64, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_title(f"similarity to the centre, s = {scale}")
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Part 6 — A step tracker, trained on pairs of frames
#
# TrackFormer trains on **pairs of frames**: the track queries of frame $t-1$ come from the
# ground truth (with some noise), and the loss asks each to find its object in frame $t$. At
# test time the tracker runs on its own predictions, frame after frame — an *autoregressive
# rollout* in which errors can accumulate.
#
# Our tracker is that idea at its smallest. A track "query" is a previous box
# $(x_0, y_0, x_1, y_1)$, normalised by the frame size. The `StepTracker` below (given) cuts a
# window around the box's centre from the previous and the current frame and predicts the
# correction to the box with an MLP. The data are the kit's moving squares: 16×16 frames, two
# squares of 3–5 pixels with their own brightness, moving up to 2 pixels per frame and bouncing
# off the borders, `boxes[i, t, k]` the box of object `k` (the same object in every frame).
#
# Write:
#
# - `tracking_pairs(videos, boxes)`: from `videos` `[n, T, 1, S, S]` and **normalised** boxes
#   `[n, T, K, 4]`, all the training examples (previous frame, current frame, previous box,
#   box): four tensors `[n (T-1) K, 1, S, S]`, `[n (T-1) K, 1, S, S]`, `[n (T-1) K, 4]`,
#   `[n (T-1) K, 4]`, ordered by video, then frame $t = 1, \dots, T-1$, then object;
# - `train_tracker(model, videos, boxes, steps=150, lr=3e-3, seed=0)`: `steps` steps of AdamW
#   (learning rate `lr`, PyTorch's other defaults) on minibatches of 256 pairs drawn at random
#   from a `torch.Generator` seeded with `seed` (with or without replacement: your choice), the
#   loss being the mean over the batch of $\|b - \hat b\|_1 + 1 - \mathrm{GIoU}(b, \hat b)$. Return
#   the list of the `steps` losses (floats), and leave the model in eval mode.

# %%
class StepTracker(nn.Module):
    """From the previous frame, the current frame and an object's previous box (normalised
    x0, y0, x1, y1), the object's box in the current frame: prev_box + MLP(two windows, prev_box)."""

    def __init__(self, size=16, window=11, hidden=128):
        super().__init__()
        self.size, self.window = size, window
        self.mlp = MLP(2 * window * window + 4, hidden, 4, 3)

    def crop(self, frames, centre):
        """The window x window patch of each [1, S, S] frame around a normalised (x, y) centre."""
        r = self.window // 2
        padded = F.pad(frames, (r, r, r, r))
        pixel = (centre * self.size).floor().long().clamp(0, self.size - 1)
        offsets = torch.arange(self.window)
        rows = (pixel[:, 1:2] + offsets)[:, :, None]
        cols = (pixel[:, 0:1] + offsets)[:, None, :]
        return padded[torch.arange(len(frames))[:, None, None], 0, rows, cols]

    def forward(self, prev_frame, frame, prev_box):
        centre = (prev_box[:, :2] + prev_box[:, 2:]) / 2
        x = torch.cat([self.crop(prev_frame, centre).flatten(1), self.crop(frame, centre).flatten(1), prev_box], 1)
        return prev_box + self.mlp(x)


# %%
def tracking_pairs(videos, boxes):
    """(previous frames, frames, previous boxes, boxes) of every object and every pair of consecutive frames.

    Args:
        videos: [n, T, 1, S, S]; boxes: [n, T, K, 4] normalised (x0, y0, x1, y1).

    Returns:
        Four tensors with n (T - 1) K rows, ordered by video, then frame 1..T-1, then object.
    """
    ### BEGIN SOLUTION
    n, T, K, _ = boxes.shape
    S = videos.shape[-1]
    prev = videos[:, :-1, None].expand(n, T - 1, K, 1, S, S).reshape(-1, 1, S, S)
    cur = videos[:, 1:, None].expand(n, T - 1, K, 1, S, S).reshape(-1, 1, S, S)
    return prev, cur, boxes[:, :-1].reshape(-1, 4), boxes[:, 1:].reshape(-1, 4)
    ### END SOLUTION


def train_tracker(model, videos, boxes, steps=150, lr=3e-3, seed=0):
    """Train a StepTracker on all pairs of consecutive frames (AdamW, batches of 256, L1 + 1 - GIoU).

    Returns:
        The list of the `steps` batch losses (floats); the model is left in eval mode.
    """
    ### BEGIN SOLUTION
    prev, cur, prev_boxes, targets = tracking_pairs(videos, boxes)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(targets), (256,), generator=generator)
        pred = model(prev[idx], cur[idx], prev_boxes[idx])
        giou = generalized_box_iou(pred, targets[idx]).diagonal()
        loss = ((pred - targets[idx]).abs().sum(-1) + 1 - giou).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
    ### END SOLUTION


# %% tags=["demo"]
check("m2w04", "tracker")

# %% [markdown]
# Train on 512 videos and roll the tracker out on new ones: from the first frame's true boxes,
# each step feeds the predicted boxes back in. The grader does the same with your
# `train_tracker` and measures the IoU of each object's rolled-out box with **its own** true box.
# Standing still (the first frame's boxes) scores about 0.2; a trained tracker about 0.7.

# %% tags=["demo"]
from autograder.kit.data.moving import moving_objects

train_set, test_set = moving_objects(512, seed=1), moving_objects(200, seed=99)
size = train_set.video.shape[-1]
torch.manual_seed(0)
tracker = StepTracker(size=size)
losses = train_tracker(tracker, train_set.video, train_set.boxes / size, steps=150)


def rollout(model, video, first_boxes):
    """[n, T, K, 4] boxes: the first frame's given, the others predicted one step at a time."""
    out = [first_boxes]
    with torch.no_grad():
        for t in range(1, video.shape[1]):
            out.append(torch.stack([model(video[:, t - 1], video[:, t], out[-1][:, k])
                                    for k in range(first_boxes.shape[1])], dim=1))
    return torch.stack(out, dim=1)


truth = test_set.boxes / size
tracks = rollout(tracker, test_set.video, truth[:, 0])
ious = box_iou(tracks[:, 1:].reshape(-1, 4), truth[:, 1:].reshape(-1, 4))[0].diagonal()
still = box_iou(truth[:, :1].expand(-1, 3, -1, -1).reshape(-1, 4), truth[:, 1:].reshape(-1, 4))[0].diagonal()
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; rollout mIoU {ious.mean():.3f} (still boxes {still.mean():.3f})")

fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for t, ax in enumerate(axes):
    ax.imshow(test_set.video[0, t, 0], cmap="gray", vmin=0, vmax=1)
    for k, colour in enumerate(("tab:red", "tab:cyan")):
        x0, y0, x1, y1 = (tracks[0, t, k] * size - 0.5).tolist()
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=colour, lw=2))
    ax.set_title(f"frame {t}")
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Part 7 — MOTA and IDF1
#
# Two numbers summarise a tracker, and they disagree on purpose.
#
# **CLEAR-MOT's MOTA** (Bernardin & Stiefelhagen, 2008) counts errors frame by frame. In each
# frame, ground-truth objects and hypotheses (the tracker's boxes) are matched, a pair being
# allowed only if their IoU is at least `iou_threshold`:
#
# 1. **keep**: a ground-truth object that was matched, in an earlier frame, to a hypothesis id
#    that is present now is matched to it again if the pair is allowed (this keeps identities
#    stable when another hypothesis would fit slightly better);
# 2. **match the rest**: the remaining objects and hypotheses are matched by the Hungarian
#    algorithm on the cost $1 - \mathrm{IoU}$, with pairs that are not allowed forbidden (a large
#    cost; drop them from the result);
# 3. an object matched in step 2 to a hypothesis id other than the one it was **last** matched to
#    (in any earlier frame) is an **identity switch** (IDSW);
# 4. objects left unmatched are misses (FN), hypotheses left unmatched are false positives (FP).
#
# $$
# \mathrm{MOTA} = 1 - \frac{\mathrm{FN} + \mathrm{FP} + \mathrm{IDSW}}{\mathrm{GT}},
# $$
#
# with GT the number of ground-truth boxes over all frames. MOTA can be negative.
#
# **IDF1** (Ristani et al., 2016) asks instead how long each object is followed by **one**
# hypothesis. For every pair (object id $g$, hypothesis id $h$), count the frames in which both
# are present and their IoU is at least the threshold. Match object ids to hypothesis ids
# one-to-one, **once for the whole sequence**, maximising the total count (Hungarian on the
# negated counts); that total is IDTP. Then IDFN = GT − IDTP, IDFP = (number of hypothesis
# boxes) − IDTP and
#
# $$
# \mathrm{IDF1} = \frac{2\, \mathrm{IDTP}}{2\, \mathrm{IDTP} + \mathrm{IDFP} + \mathrm{IDFN}} .
# $$
#
# A tracker that swaps two identities halfway loses one IDSW in MOTA but half its IDTP in IDF1.
# These are `motmetrics`' rules (`MOTAccumulator` with an IoU distance, `mota` and `idf1`), which
# the grader compares with.
#
# The inputs are lists with one entry per frame: `gt_ids[t]` long `[n_t]`, `gt_boxes[t]`
# `[n_t, 4]`, `hyp_ids[t]` long `[m_t]`, `hyp_boxes[t]` `[m_t, 4]`, boxes $(x_0, y_0, x_1, y_1)$.
# `clear_mot` returns a dict with int entries `"gt"`, `"fn"`, `"fp"`, `"idsw"` and the float
# `"mota"`; `id_f1` a dict with int entries `"idtp"`, `"idfp"`, `"idfn"` and the float `"idf1"`.

# %%
def clear_mot(gt_ids, gt_boxes, hyp_ids, hyp_boxes, iou_threshold=0.5):
    """CLEAR-MOT counts and MOTA over a sequence (motmetrics' matching rules).

    Returns:
        {"gt": int, "fn": int, "fp": int, "idsw": int, "mota": float}
    """
    ### BEGIN SOLUTION
    last = {}                                   # object id -> the hypothesis id it was last matched to
    counts = {"gt": 0, "fn": 0, "fp": 0, "idsw": 0}
    for g_ids, g_boxes, h_ids, h_boxes in zip(gt_ids, gt_boxes, hyp_ids, hyp_boxes):
        g_ids, h_ids = g_ids.tolist(), h_ids.tolist()
        iou = box_iou(g_boxes.double().reshape(-1, 4), h_boxes.double().reshape(-1, 4))[0]
        allowed = iou >= iou_threshold
        matched = {}                            # row -> column
        for i, g in enumerate(g_ids):           # 1. keep the earlier correspondences
            if g in last and last[g] in h_ids:
                j = h_ids.index(last[g])
                if allowed[i, j] and j not in matched.values():
                    matched[i] = j
        rows = [i for i in range(len(g_ids)) if i not in matched]
        cols = [j for j in range(len(h_ids)) if j not in matched.values()]
        if rows and cols:                       # 2. Hungarian on what is left
            sub = allowed[rows][:, cols]
            cost = torch.where(sub, 1 - iou[rows][:, cols], torch.full_like(sub, 1e6, dtype=iou.dtype))
            for r, c in zip(*hungarian_match(cost)):
                i, j = rows[r], cols[c]
                if sub[r, c]:
                    if g_ids[i] in last and last[g_ids[i]] != h_ids[j]:
                        counts["idsw"] += 1     # 3. a new partner
                    matched[i] = j
        for i, j in matched.items():
            last[g_ids[i]] = h_ids[j]
        counts["gt"] += len(g_ids)
        counts["fn"] += len(g_ids) - len(matched)
        counts["fp"] += len(h_ids) - len(matched)
    counts["mota"] = 1 - (counts["fn"] + counts["fp"] + counts["idsw"]) / max(counts["gt"], 1)
    return counts
    ### END SOLUTION


def id_f1(gt_ids, gt_boxes, hyp_ids, hyp_boxes, iou_threshold=0.5):
    """Identity-level precision and recall over a sequence (Ristani et al.'s global matching).

    Returns:
        {"idtp": int, "idfp": int, "idfn": int, "idf1": float}
    """
    ### BEGIN SOLUTION
    objects = sorted({g for ids in gt_ids for g in ids.tolist()})
    hyps = sorted({h for ids in hyp_ids for h in ids.tolist()})
    together = torch.zeros(len(objects), len(hyps))
    for g_ids, g_boxes, h_ids, h_boxes in zip(gt_ids, gt_boxes, hyp_ids, hyp_boxes):
        iou = box_iou(g_boxes.double().reshape(-1, 4), h_boxes.double().reshape(-1, 4))[0]
        for i, j in (iou >= iou_threshold).nonzero().tolist():
            together[objects.index(int(g_ids[i])), hyps.index(int(h_ids[j]))] += 1
    idtp = 0
    if objects and hyps:
        rows, cols = hungarian_match(-together)
        idtp = int(together[rows, cols].sum())
    num_gt, num_hyp = sum(len(ids) for ids in gt_ids), sum(len(ids) for ids in hyp_ids)
    idfp, idfn = num_hyp - idtp, num_gt - idtp
    return {"idtp": idtp, "idfp": idfp, "idfn": idfn, "idf1": 2 * idtp / max(2 * idtp + idfp + idfn, 1)}
    ### END SOLUTION


# %% tags=["demo"]
check("m2w04", "metrics")

# %% [markdown]
# The same tracker output scored both ways: two objects tracked perfectly for 6 frames, except
# that the hypotheses swap identities after frame 2.

# %% tags=["demo"]
box_a, box_b = torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[8.0, 8.0, 12.0, 12.0]])
gt_i = [torch.tensor([1, 2])] * 6
gt_b = [torch.cat([box_a, box_b])] * 6
hyp_i = [torch.tensor([10, 20])] * 3 + [torch.tensor([20, 10])] * 3
print(clear_mot(gt_i, gt_b, hyp_i, gt_b))
print(id_f1(gt_i, gt_b, hyp_i, gt_b))

# %% [markdown]
# ## What to take away
#
# - A track query carries its identity: TALA assigns it its own object (or nothing), and only
#   the detection queries are Hungarian-matched, to newborn objects only.
# - Tracks are born above an enter threshold, survive short occlusions, and die after
#   `miss_tolerance` consecutive low scores; identities are never reused.
# - The collective average loss divides the clip's summed loss once, by all its objects.
# - MOTRv2 turns a detector's boxes into reference points and its scores into sine-embedded
#   positional queries, appended after the learned queries.
# - SAM encodes prompts with random Fourier features of coordinates in $[-1, 1]$: $[\sin, \cos]$
#   of $2\pi (2c - 1) G$, plus a learned embedding of the point's role.
# - MOTA counts per-frame errors (an identity switch costs one); IDF1 measures how long one
#   hypothesis follows one object.
