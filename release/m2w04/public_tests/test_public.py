"""m2w04 public self-checks: run them in the notebook with `check("m2w04")` or `check("m2w04", "<part>")`.

Parts: tala, track_update, clip_loss, proposals, prompt_encoding, tracker, metrics. These check shapes, small
hand-computed cases and properties stated in the notebook; the hidden suite that grades the notebook
checks much more.
"""

from __future__ import annotations

import math

import pytest
import torch

from autograder.kit import assert_close, assert_shape

pytestmark = [pytest.mark.visibility("visible")]


def randn(*shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def as_list(x):
    return [int(v) for v in torch.as_tensor(x).reshape(-1).tolist()]


# -- tala ---------------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_tala_small_frame(sub):
    """Track queries keep their own object (or -1 if it left); detection queries take only the newborn objects."""
    # Objects with ids 5, 2, 9. Tracks carry 2 and 7 (7 has left). Newborn: ids 5 and 9 (indices 0 and 2).
    cost = torch.tensor([[0.0, -1.0, 0.5],       # the cheapest column is object 2's, which a track carries
                         [0.4, -1.0, 0.1]])
    got = sub.tracklet_aware_assignment(torch.tensor([2, 7]), torch.tensor([5, 2, 9]), cost)
    assert_shape(got, (4,), what="the assignment of 2 track queries and 2 detection queries")
    assert as_list(got) == [1, -1, 0, 2], (
        f"got {as_list(got)}: the track query with id 2 predicts object index 1, the one with id 7 nothing (-1), and "
        "the detection queries are matched to the newborn objects only, as indices into gt_ids")


# -- track_update ----------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_track_update_one_frame(sub):
    """One frame by hand: a low score counts a miss, a good one resets it, a high detection is born with next_id."""
    ids, misses, source, next_id = sub.update_tracks(torch.tensor([0, 1]), torch.tensor([3, 2]),
                                                     torch.tensor([0.5, 0.62]), torch.tensor([0.1, 0.95]), 2)
    got = (as_list(ids), as_list(misses), as_list(source), int(next_id))
    assert got == ([0, 1, 2], [4, 0, 0], [0, 1, 3], 3), (
        f"(ids, misses, source, next_id) = {got}: track 0 misses a fourth time (0.5 < 0.6), track 1 resets "
        "(0.62 >= 0.6), detection 1 (0.95 >= 0.7) becomes track 2 from query M + 1 = 3")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_track_update_tolerance(sub):
    """A track dies when its misses reach miss_tolerance, with the tolerance you pass."""
    ids, misses, _, _ = sub.update_tracks(torch.tensor([4, 6]), torch.tensor([1, 0]), torch.tensor([0.2, 0.2]),
                                          torch.zeros(0), 7, miss_tolerance=2)
    assert (as_list(ids), as_list(misses)) == ([6], [1]), (
        f"with miss_tolerance=2, got ids {as_list(ids)} and misses {as_list(misses)}: track 4 reaches 2 misses and "
        "dies, track 6 has 1")


# -- clip_loss ----------------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_clip_loss_perfect_boxes(sub):
    """Perfect boxes and logits of 0: only the focal terms remain, alpha_t (1/2)^gamma ln 2 per query, divided by all objects."""
    target = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]]], dtype=torch.float64).repeat(2, 1, 1)
    boxes = target[:, :1].repeat(1, 3, 1)                       # 3 queries per frame, all on object 0's box
    assignment = torch.tensor([[0, -1, -1], [-1, -1, -1]])     # frame 0: query 0 finds object 0
    present = torch.tensor([[True, False], [True, True]])      # 3 objects in the clip
    loss = sub.clip_loss(torch.zeros(2, 3, dtype=torch.float64), boxes, assignment, target, present)
    assert_shape(loss, (), what="the clip loss")
    focal = (1 * 0.25 + 5 * 0.75) * 0.25 * math.log(2)
    assert_close(loss, torch.tensor(2.0 * focal / 3, dtype=torch.float64), atol=1e-9, rtol=1e-9,
                 what="clip_loss of zero logits and perfect boxes (sum over frames / 3 objects)")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_clip_loss_box_terms(sub):
    """One matched query with a shifted box: 5 * L1 + 2 * (1 - GIoU) plus the focal terms, over 1 object."""
    target = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]], dtype=torch.float64)
    boxes = torch.tensor([[[0.6, 0.5, 0.2, 0.2]]], dtype=torch.float64)       # shifted right by half its width
    loss = sub.clip_loss(torch.full((1, 1), 50.0, dtype=torch.float64), boxes, torch.tensor([[0]]), target,
                         torch.tensor([[True]]))
    # IoU = 0.02 / 0.06 = 1/3, the enclosing box is 0.3 x 0.2 = 0.06 = the union: GIoU = 1/3. The focal term of
    # a logit of 50 for a positive is ~1e-44.
    expected = 5 * 0.1 + 2 * (1 - 1 / 3)
    assert_close(loss, torch.tensor(expected, dtype=torch.float64), atol=1e-9, rtol=1e-9,
                 what="clip_loss of one matched query shifted by half its width (L1 in cx, cy, w, h; GIoU in xyxy)")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_clip_loss_weights(sub):
    """clip_loss uses the weights and the focal parameters you pass."""
    target = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]], dtype=torch.float64)
    boxes = torch.tensor([[[0.6, 0.5, 0.2, 0.2]]], dtype=torch.float64)
    args = (torch.zeros(1, 1, dtype=torch.float64), boxes, torch.tensor([[0]]), target, torch.tensor([[True]]))
    loss = sub.clip_loss(*args, class_weight=1.0, l1_weight=1.0, giou_weight=1.0, alpha=0.5, gamma=1.0)
    expected = 0.5 * 0.5 * math.log(2) + 0.1 + (1 - 1 / 3)
    assert_close(loss, torch.tensor(expected, dtype=torch.float64), atol=1e-9, rtol=1e-9,
                 what="clip_loss with all weights 1, alpha 0.5, gamma 1")


# -- proposals ------------------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_proposals_small_case(sub):
    """sine_embedding alternates sin and cos; proposal_queries puts the learned queries first, then the proposals."""
    # F = 2: both features share d = 1, so the value 1/4 gives (sin(pi/2), cos(pi/2)) = (1, 0).
    emb = sub.sine_embedding(torch.tensor([[0.25, 0.0]], dtype=torch.float64), 2)
    assert_close(emb, torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=torch.float64), atol=1e-6, rtol=0,
                 what="sine_embedding of (1/4, 0) with 2 features: (sin, cos) of 2 pi v, value after value")
    proposals = torch.tensor([[0.5, 0.5, 0.2, 0.2, 0.25]], dtype=torch.float64)
    anchors, query_embed = torch.zeros(2, 4, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64)
    ref, pos = sub.proposal_queries(proposals, anchors, query_embed, torch.tensor([10.0, 20.0], dtype=torch.float64))
    assert_shape(ref, (3, 4), what="ref_pts of 2 learned queries and 1 proposal")
    assert_close(ref[2], proposals[0, :4], atol=0, rtol=0, what="the proposal's reference box (after the learned ones)")
    assert_close(pos[2], torch.tensor([11.0, 20.0], dtype=torch.float64), atol=1e-6, rtol=0,
                 what="the proposal's query: sine embedding of its score 1/4, (1, 0), plus score_embed (10, 20)")


# -- prompt_encoding ------------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_prompt_encoding_hand_computed(sub):
    """The centre (1/2, 1/2) maps to 0: sines 0, cosines 1; (1, 1/2) with G = [[1/4], [0]]: sin(pi/2) = 1."""
    G = torch.tensor([[0.25, 1.0], [0.0, 2.0]], dtype=torch.float64)
    got = sub.fourier_encode(torch.tensor([[0.5, 0.5], [1.0, 0.5]], dtype=torch.float64), G)
    # (2c - 1) = (0, 0) and (1, 0); times G: (0, 0) and (0.25, 1); times 2 pi: (0, 0) and (pi/2, 2 pi).
    expected = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    assert_close(got, expected, atol=1e-12, rtol=0, what="fourier_encode of (0.5, 0.5) and (1, 0.5): [sin, cos]")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_prompt_encoding_points_and_boxes(sub):
    """Pixel centres (+0.5), x / W and y / H, labels: a padding point is replaced by not_a_point; a box is two corners."""
    G = randn(2, 3, seed=0)
    emb, nap = randn(2, 6, seed=1), randn(6, seed=2)
    points = torch.tensor([[[3.5, 1.5], [0.0, 0.0], [7.5, 3.5]]], dtype=torch.float64)   # image H = 4, W = 8
    got = sub.encode_points(points, torch.tensor([[1, -1, 0]]), (4, 8), G, emb, nap)
    centres = torch.tensor([[0.5, 0.5], [1.0, 1.0]], dtype=torch.float64)               # (3.5 + 0.5) / 8, ...
    enc = sub.fourier_encode(centres, G)
    assert_close(got[0, 0], enc[0] + emb[1], atol=1e-12, rtol=0, what="a foreground point at pixel (3.5, 1.5)")
    assert_close(got[0, 1], nap, atol=1e-12, rtol=0, what="a padding point (label -1)")
    assert_close(got[0, 2], enc[1] + emb[0], atol=1e-12, rtol=0, what="a background point at pixel (7.5, 3.5)")
    corners = randn(2, 6, seed=3)
    box = sub.encode_boxes(torch.tensor([[3.5, 1.5, 7.5, 3.5]], dtype=torch.float64), (4, 8), G, corners)
    assert_close(box[0], enc + corners, atol=1e-12, rtol=0, what="the box (3.5, 1.5, 7.5, 3.5)")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_prompt_encoding_dense_grid(sub):
    """dense_encoding(H, W)[:, i, j] is the encoding of the pixel centre ((j + 0.5) / W, (i + 0.5) / H)."""
    G = randn(2, 4, seed=4)
    dense = sub.dense_encoding(3, 5, G)
    assert_shape(dense, (8, 3, 5), what="dense_encoding(3, 5) with F = 4")
    point = sub.fourier_encode(torch.tensor([(4 + 0.5) / 5, (1 + 0.5) / 3], dtype=torch.float64), G)
    assert_close(dense[:, 1, 4], point, atol=1e-12, rtol=0, what="the dense encoding at row 1, column 4")


# -- tracker -----------------------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_tracker_pairs_first_rows(sub):
    """tracking_pairs: the first rows are video 0, frames 0 -> 1, objects 0 and 1; then frames 1 -> 2."""
    videos, boxes = torch.rand(2, 3, 1, 4, 4), torch.rand(2, 3, 2, 4)
    prev, cur, prev_boxes, targets = sub.tracking_pairs(videos, boxes)
    assert_shape(prev_boxes, (8, 4), what="previous boxes of 2 videos x 2 frame pairs x 2 objects")
    assert torch.equal(prev[1], videos[0, 0]) and torch.equal(cur[1], videos[0, 1]), \
        "row 1 should hold video 0's frames 0 (previous) and 1 (current)"
    assert torch.equal(prev_boxes[1], boxes[0, 0, 1]) and torch.equal(targets[2], boxes[0, 2, 0]), \
        "row 1 should be object 1's box in frame 0, row 2 object 0's in frame 2 (order: video, frame, object)"


@pytest.mark.points(1)
@pytest.mark.kind("convergence")
def test_tracker_loss_falls(sub):
    """A few train_tracker steps on a small set: one finite loss per step, the loss falls, eval mode after."""
    from autograder.kit.data.moving import moving_objects

    data = moving_objects(64, seed=3)
    torch.manual_seed(0)
    model = sub.StepTracker(size=16)
    losses = sub.train_tracker(model, data.video, data.boxes / 16, steps=40, lr=3e-3, seed=0)
    assert isinstance(losses, list) and len(losses) == 40, "train_tracker should return a list of 40 losses"
    assert all(math.isfinite(v) for v in losses), "the losses should be finite"
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), \
        f"the loss went from {sum(losses[:5]) / 5:.3f} to {sum(losses[-5:]) / 5:.3f} in 40 steps: it should fall"
    assert model.training is False, "train_tracker should leave the model in eval mode (model.eval())"


# -- metrics ------------------------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_metrics_small_sequence(sub):
    """Three frames: one miss, one false positive, one identity switch; the IoU threshold matters."""
    box, far, half = [0.0, 0.0, 4.0, 4.0], [10.0, 10.0, 14.0, 14.0], [0.0, 0.0, 4.0, 2.0]
    gt_ids = [torch.tensor([1])] * 3
    gt_boxes = [torch.tensor([box])] * 3
    hyp_ids = [torch.tensor([5]), torch.tensor([5]), torch.tensor([6])]
    hyp_boxes = [torch.tensor([box]), torch.tensor([far]), torch.tensor([half])]   # frame 2: IoU 0.5
    mot = sub.clear_mot(gt_ids, gt_boxes, hyp_ids, hyp_boxes)
    got = {k: int(mot[k]) for k in ("gt", "fn", "fp", "idsw")}
    assert got == {"gt": 3, "fn": 1, "fp": 1, "idsw": 1}, (
        f"clear_mot counted {got}: frame 1's hypothesis is far (a miss and a false positive), frame 2's has IoU 0.5 "
        ">= 0.5 and a new id (a switch)")
    assert abs(mot["mota"] - 0.0) < 1e-12, f"MOTA = 1 - 3/3 = 0, got {mot['mota']}"
    strict = sub.clear_mot(gt_ids, gt_boxes, hyp_ids, hyp_boxes, iou_threshold=0.6)
    assert int(strict["idsw"]) == 0 and int(strict["fn"]) == 2, \
        "with iou_threshold=0.6 frame 2's pair (IoU 0.5) may not match: 2 misses, no switch"
    idf = sub.id_f1(gt_ids, gt_boxes, hyp_ids, hyp_boxes)
    assert {k: int(idf[k]) for k in ("idtp", "idfp", "idfn")} == {"idtp": 1, "idfp": 2, "idfn": 2}, \
        f"id_f1 counted {idf}: object 1 is followed by hypothesis 5 in one frame, by 6 in another: IDTP 1"
    assert abs(idf["idf1"] - 2 / 6) < 1e-12, f"IDF1 = 2 / (2 + 2 + 2), got {idf['idf1']}"
