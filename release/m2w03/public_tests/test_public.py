"""m2w03 public self-checks: run them in the notebook with `check("m2w03")` or `check("m2w03", "<part>")`.

Parts: mask_head, mask_losses, mask_matching, boxes_from_masks, pose, segmenter, pose_training. These check shapes,
small hand-computed cases and properties stated in the notebook; the hidden suite that grades the
notebook checks much more (other sizes, the trusted libraries' values, gradients, a training run).
"""

from __future__ import annotations

import math

import pytest
import torch

from autograder.kit import assert_close, assert_shape

pytestmark = [pytest.mark.visibility("visible")]

EXACT64 = dict(atol=1e-12, rtol=1e-10)  # float64 hand-computed values: only rounding differs


def randn(*shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# -- mask_head -----------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mask_head_logits_hand_computed(sub):
    """mask_logits: query embedding (1, 2) against pixels whose embeddings are (1, 0), (0, 1), (1, 1) in a 1 x 3 row."""
    m = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)                       # [B=1, Q=1, C=2]
    e = torch.tensor([[[[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]]], dtype=torch.float64)  # [1, C=2, H=1, W=3]
    out = sub.mask_logits(m, e)
    assert_shape(out, (1, 1, 1, 3), what="mask_logits of [1, 1, 2] queries and [1, 2, 1, 3] pixels")
    assert_close(out, torch.tensor([[[[1.0, 2.0, 3.0]]]], dtype=torch.float64),
                 what="the dot products of the query with each pixel", **EXACT64)


@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_mask_head_module_layout(sub):
    """MaskHead(16, 3, 8) holds decoder_norm, class_embed (4 outputs) and a 3-layer mask_embed MLP, and returns
    class logits [B, Q, 4] and mask logits [B, Q, H, W] for H != W."""
    head = sub.MaskHead(16, 3, 8)
    names = sorted(head.state_dict())
    expected = sorted(["decoder_norm.weight", "decoder_norm.bias", "class_embed.weight", "class_embed.bias"]
                      + [f"mask_embed.layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")])
    assert names == expected, f"MaskHead's parameters should be named {expected}, not {names}"
    two = sorted(k for k in sub.MaskHead(16, 3, 8, num_layers=2).state_dict() if k.startswith("mask_embed"))
    assert two == sorted(f"mask_embed.layers.{i}.{p}" for i in range(2) for p in ("weight", "bias")), \
        f"MaskHead(16, 3, 8, num_layers=2) should have a 2-layer mask_embed, not {two}"
    classes, masks = head(torch.randn(2, 5, 16), torch.randn(2, 8, 6, 4))
    assert_shape(classes, (2, 5, 4), what="MaskHead's class logits (num_classes + 1 columns)")
    assert_shape(masks, (2, 5, 6, 4), what="MaskHead's mask logits for 6 x 4 pixel embeddings")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mask_head_normalises_the_queries(sub):
    """decoder_norm comes first: adding a constant to every feature of a query, or scaling it, changes nothing."""
    head = sub.MaskHead(8, 2, 4)
    head.double()
    q, e = randn(1, 3, 8, seed=0), randn(1, 4, 2, 2, seed=1)
    c1, m1 = head(q, e)
    c2, m2 = head(3.0 * q + 1.5, e)
    # LayerNorm's eps (1e-5) against a variance of ~9: the outputs move by ~1e-6.
    assert_close(c2, c1, what="class logits of shifted and scaled queries", atol=1e-4, rtol=1e-4)
    assert_close(m2, m1, what="mask logits of shifted and scaled queries", atol=1e-4, rtol=1e-4)


# -- mask_losses ---------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mask_losses_dice_hand_computed(sub):
    """Dice of logits 0 (p = 1/2 everywhere) on a 4-pixel mask with 2 foreground pixels: 1 - (2 + 1) / (2 + 2 + 1)."""
    logits = torch.zeros(1, 2, 2, dtype=torch.float64)
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]], dtype=torch.float64)
    assert_close(sub.dice_loss(logits, target, 1), torch.tensor(1 - 3 / 5, dtype=torch.float64),
                 what="dice_loss at logits 0 (sigmoid first, +1 smoothing)", **EXACT64)
    two = torch.cat([target, target])
    assert_close(sub.dice_loss(torch.zeros(2, 2, 2, dtype=torch.float64), two, 4), torch.tensor(2 * 0.4 / 4,
                 dtype=torch.float64), what="dice_loss of two such masks with num_masks=4 (per mask, summed, / 4)",
                 **EXACT64)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mask_losses_focal_at_logit_zero(sub):
    """Focal loss of logit 0 on a foreground pixel: alpha (1/2)^gamma ln 2; on a background pixel: (1 - alpha) ..."""
    logits = torch.zeros(1, 2, dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    expected = (0.25 + 0.75) * 0.25 * math.log(2) / 2                           # the mean over the mask's 2 pixels
    assert_close(sub.sigmoid_focal_loss(logits, target, 1), torch.tensor(expected, dtype=torch.float64),
                 what="sigmoid_focal_loss with the defaults (alpha=0.25, gamma=2)", **EXACT64)
    assert_close(sub.sigmoid_focal_loss(logits, target, 2, alpha=-1, gamma=0.0),
                 torch.tensor(math.log(2) / 2, dtype=torch.float64),
                 what="sigmoid_focal_loss with alpha=-1, gamma=0 (the BCE) and num_masks=2", **EXACT64)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mask_losses_focal_alpha_and_gamma(sub):
    """Logit ln 3 (p = 3/4) on a foreground and a background pixel, alpha=0.75, gamma=1: p_t is 3/4 and 1/4, the
    weights 0.75 and 0.25, so the pixels cost 0.75 (1/4) ln(4/3) and 0.25 (3/4) ln 4."""
    logits = torch.full((1, 2), math.log(3.0), dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    expected = (0.75 * 0.25 * math.log(4 / 3) + 0.25 * 0.75 * math.log(4)) / 2
    assert_close(sub.sigmoid_focal_loss(logits, target, 1, alpha=0.75, gamma=1.0),
                 torch.tensor(expected, dtype=torch.float64),
                 what="sigmoid_focal_loss with alpha=0.75 (on the foreground), gamma=1 (the power of 1 - p_t)", **EXACT64)


# -- mask_matching -------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mask_matching_pairwise_hand_computed(sub):
    """Pairwise losses at logits 0: the BCE of every pair is ln 2; the dice of a 2-pixel query against a target
    with k of 2 pixels set is 1 - (k + 1) / (1 + k + 1)."""
    inputs = torch.zeros(3, 2, dtype=torch.float64)
    targets = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    ce = sub.pairwise_sigmoid_ce(inputs, targets)
    assert_close(ce, torch.full((3, 3), math.log(2), dtype=torch.float64), what="pairwise_sigmoid_ce at logits 0",
                 **EXACT64)
    dice = sub.pairwise_dice(inputs, targets)
    row = torch.tensor([1 - 1 / 2, 1 - 2 / 3, 1 - 3 / 4], dtype=torch.float64)
    assert_close(dice, row.expand(3, 3), what="pairwise_dice at logits 0 ([Q, T])", **EXACT64)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mask_matching_finds_the_right_query(sub):
    """Three queries, two targets: the query whose mask and class fit each target is matched to it."""
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2] = True
    masks[1, 2:] = True
    mask_logits = torch.full((3, 4, 4), -6.0, dtype=torch.float64)
    mask_logits[2, 2:] = 6.0                                                     # query 2 predicts target 1's mask
    mask_logits[0, :2] = 6.0                                                     # query 0 predicts target 0's mask
    class_logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 3.0, 0.0]], dtype=torch.float64)
    q, t = sub.match_masks(class_logits, mask_logits, torch.tensor([0, 1]), masks)
    pairs = sorted(zip(torch.as_tensor(q).tolist(), torch.as_tensor(t).tolist()))
    assert pairs == [(0, 0), (2, 1)], f"match_masks paired (query, target) {pairs}, expected [(0, 0), (2, 1)]"
    cost = sub.mask_matching_cost(class_logits, mask_logits, torch.tensor([0, 1]), masks, class_weight=0.0,
                                  mask_weight=0.0, dice_weight=1.0)
    assert_shape(cost, (3, 2), what="mask_matching_cost for 3 queries and 2 targets")
    assert float(cost[0, 0]) < 0.01 and float(cost[1, 0]) > 0.8, \
        "with only the dice term (class_weight=0, mask_weight=0), a perfect mask should cost ~0 and a missed one ~0.9"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_mask_matching_weights_decide(sub):
    """Query 0 draws the target's mask but gives its class little probability; query 1 the reverse. The default
    weights (mask terms dominate) pick query 0; class_weight=10 without mask terms picks query 1. With only the
    class term, the cost is minus the softmax probability of the target's class."""
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True
    mask_logits = torch.stack([torch.where(masks[0], 6.0, -6.0), torch.full((4, 4), -6.0)]).double()
    class_logits = torch.tensor([[0.0, 0.0, 2.0], [3.0, 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0])
    q, _ = sub.match_masks(class_logits, mask_logits, labels, masks)
    assert torch.as_tensor(q).tolist() == [0], f"with the default weights match_masks chose query {q}, not 0"
    q, _ = sub.match_masks(class_logits, mask_logits, labels, masks, class_weight=10.0, mask_weight=0.0,
                           dice_weight=0.0)
    assert torch.as_tensor(q).tolist() == [1], \
        f"with class_weight=10, mask_weight=0, dice_weight=0 match_masks chose query {q}, not 1 (pass the weights on)"
    cost = sub.mask_matching_cost(class_logits, mask_logits, labels, masks, class_weight=1.0, mask_weight=0.0,
                                  dice_weight=0.0)
    assert_close(cost, -class_logits.softmax(-1)[:, :1], what="the class term of the cost (-softmax probability)",
                 **EXACT64)


# -- boxes_from_masks ----------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_boxes_from_masks_rectangle(sub):
    """A rectangle over rows 1-2 and columns 3-5 of a 4 x 7 image: (3, 1, 5, 2) inclusive; the extent
    (3, 1, 6, 3) as (cx, cy, w, h) / (7, 4, 7, 4)."""
    masks = torch.zeros(1, 4, 7, dtype=torch.bool)
    masks[0, 1:3, 3:6] = True
    boxes = sub.masks_to_boxes(masks)
    assert_shape(boxes, (1, 4), what="masks_to_boxes of one mask")
    assert_close(boxes, torch.tensor([[3.0, 1.0, 5.0, 2.0]]), what="masks_to_boxes (inclusive pixel indices)",
                 atol=0, rtol=0)
    assert_close(sub.masks_to_normalized_boxes(masks), torch.tensor([[4.5 / 7, 2.0 / 4, 3.0 / 7, 2.0 / 4]]),
                 what="masks_to_normalized_boxes (the pixel extent, / (W, H, W, H))", atol=1e-6, rtol=0)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_boxes_from_masks_empty_is_zero(sub):
    """An empty mask gives the box (0, 0, 0, 0) in both conventions."""
    masks = torch.zeros(2, 3, 3, dtype=torch.bool)
    masks[1, 1, 1] = True
    assert_close(sub.masks_to_boxes(masks)[0], torch.zeros(4), what="masks_to_boxes of an empty mask", atol=0, rtol=0)
    assert_close(sub.masks_to_normalized_boxes(masks)[0], torch.zeros(4),
                 what="masks_to_normalized_boxes of an empty mask", atol=0, rtol=0)


# -- pose ----------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_pose_head_layout(sub):
    """KeypointHead(8, 3): a 3-layer keypoint_embed with 6 outputs; a zero last layer gives (0.5, 0.5) everywhere."""
    head = sub.KeypointHead(8, 3)
    names = sorted(head.state_dict())
    expected = sorted(f"keypoint_embed.layers.{i}.{p}" for i in range(3) for p in ("weight", "bias"))
    assert names == expected, f"KeypointHead's parameters should be named {expected}, not {names}"
    one = sorted(sub.KeypointHead(8, 3, num_layers=1).state_dict())
    assert one == ["keypoint_embed.layers.0.bias", "keypoint_embed.layers.0.weight"], \
        f"KeypointHead(8, 3, num_layers=1) should have a 1-layer keypoint_embed, not {one}"
    state = head.state_dict()
    state["keypoint_embed.layers.2.weight"] = torch.zeros_like(state["keypoint_embed.layers.2.weight"])
    state["keypoint_embed.layers.2.bias"] = torch.tensor([0.0, 0.0, math.log(3), 0.0, 0.0, -math.log(3)])
    head.load_state_dict(state)
    out = head(torch.randn(2, 4, 8))
    assert_shape(out, (2, 4, 3, 2), what="KeypointHead's keypoints")
    expected_xy = torch.tensor([[0.5, 0.5], [0.75, 0.5], [0.5, 0.25]])           # output 2k is x_k, 2k + 1 is y_k
    assert_close(out[0, 0], expected_xy, what="keypoints from the bias (0, 0, ln 3, 0, 0, -ln 3) through a sigmoid",
                 atol=1e-6, rtol=0)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_pose_oks_one_keypoint(sub):
    """OKS of one labelled keypoint at distance 1 (area 2, sigma 0.25): exp(-1 / (2 * 2 * 0.5^2)) = e^-1;
    a prediction on the truth: 1."""
    target = torch.tensor([[[3.0, 4.0, 2.0]]], dtype=torch.float64)
    pred = torch.tensor([[[3.0, 5.0]], [[3.0, 4.0]]], dtype=torch.float64)
    oks = sub.keypoint_oks(pred, target, torch.tensor([2.0], dtype=torch.float64), torch.tensor([0.25],
                           dtype=torch.float64))
    assert_shape(oks, (2, 1), what="keypoint_oks of 2 predictions and 1 ground truth")
    assert_close(oks, torch.tensor([[math.exp(-1)], [1.0]], dtype=torch.float64),
                 what="OKS (area is s^2, k = 2 sigma)", **EXACT64)
    unlabelled = torch.tensor([[[3.0, 4.0, 2.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    far = torch.tensor([[[3.0, 4.0], [50.0, 50.0]]], dtype=torch.float64)
    oks = sub.keypoint_oks(far, unlabelled, torch.tensor([2.0], dtype=torch.float64),
                           torch.tensor([0.25, 0.25], dtype=torch.float64))
    assert_close(oks, torch.ones(1, 1, dtype=torch.float64), what="OKS when the only wrong keypoint is unlabelled "
                 "(v = 0: it does not count)", **EXACT64)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_pose_l1_skips_unlabelled(sub):
    """keypoint_l1_loss counts only keypoints with v > 0 and divides by num_objects."""
    target = torch.tensor([[[0.5, 0.5, 2.0], [0.1, 0.1, 0.0]]], dtype=torch.float64)
    pred = torch.tensor([[[0.7, 0.4], [0.9, 0.9]]], dtype=torch.float64)
    assert_close(sub.keypoint_l1_loss(pred, target, 2), torch.tensor(0.3 / 2, dtype=torch.float64),
                 what="keypoint_l1_loss (|0.2| + |0.1| on the labelled keypoint, / 2)", **EXACT64)


# -- segmenter -----------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_segmenter_returns_losses_and_learns(sub):
    """train_segmenter returns one finite loss per step, leaves the model in eval mode, and lowers the loss on
    two images (10 steps)."""
    from autograder.kit.data import shapes

    data = shapes(2, seed=5, size=16, object_size=(4, 6), objects=(1, 2))
    torch.manual_seed(0)
    model = sub.TinySegmenter()
    losses = sub.train_segmenter(model, data.images, data.labels, data.masks, 10, 3e-3)
    assert len(losses) == 10, f"train_segmenter(steps=10) should return 10 losses, got {len(losses)}"
    assert all(math.isfinite(float(v)) for v in losses), f"the losses should be finite numbers: {losses}"
    assert model.training is False, "train_segmenter should leave the model in eval mode (model.eval())"
    assert float(losses[-1]) < float(losses[0]), f"the loss did not fall in 10 steps: {losses}"


# -- pose_training -------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_pose_training_returns_losses_and_learns(sub):
    """train_pose returns one finite loss per step, leaves the model in eval mode, and lowers the loss on two
    images (10 steps)."""
    from autograder.kit.data import shapes

    data = shapes(2, seed=5, size=16, object_size=(6, 9), objects=(1, 1), kinds=("triangle",))
    keypoints = [k / torch.tensor([16.0, 16.0, 1.0]) for k in data.keypoints]
    torch.manual_seed(0)
    model = sub.TinyPoseNet()
    losses = sub.train_pose(model, data.images, keypoints, 10, 3e-3)
    assert len(losses) == 10, f"train_pose(steps=10) should return 10 losses, got {len(losses)}"
    assert all(math.isfinite(float(v)) for v in losses), f"the losses should be finite numbers: {losses}"
    assert model.training is False, "train_pose should leave the model in eval mode (model.eval())"
    assert float(losses[-1]) < float(losses[0]), f"the loss did not fall in 10 steps: {losses}"
