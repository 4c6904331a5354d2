"""m2w02 public self-checks: run them in the notebook with `check("m2w02")` or `check("m2w02", "<part>")`.

Parts: deformable_core, deformable_module, ia_bce, group_detr, speed. These check shapes, small
hand-computed cases and properties stated in the notebook; the hidden suite that grades the notebook
checks much more (values and gradients against trusted implementations, other sizes, a training run).
"""

from __future__ import annotations

import math

import pytest
import torch

from autograder.kit import assert_close, assert_shape

pytestmark = [pytest.mark.visibility("visible")]


def randn(*shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# -- deformable_core ----------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_deformable_core_shape(sub):
    """ms_deform_attn: value [B, S, H, D] and locations [B, Q, H, L, P, 2] give [B, Q, H*D]."""
    spatial_shapes = torch.tensor([[3, 4], [2, 2]])
    out = sub.ms_deform_attn(randn(2, 16, 3, 5, seed=0), spatial_shapes, torch.rand(2, 7, 3, 2, 4, 2, dtype=torch.float64),
                             torch.rand(2, 7, 3, 2, 4, dtype=torch.float64))
    assert_shape(out, (2, 7, 15), what="ms_deform_attn for B=2, Q=7, 3 heads of 5 channels")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_deformable_core_pixel_centre_and_midpoint(sub):
    """One 2 x 3 level: at the centre of pixel (row 1, col 2) the sample is that pixel; halfway between the first
    two pixels of row 0 it is their mean; a whole pixel outside the map it is zero."""
    values = torch.arange(6.0, dtype=torch.float64).reshape(1, 6, 1, 1)          # pixel (i, j) holds 3 i + j
    points = torch.tensor([[2.5 / 3, 1.5 / 2], [1.0 / 3, 0.5 / 2], [2.5 / 3, -0.5 / 2]],
                          dtype=torch.float64).reshape(1, 3, 1, 1, 1, 2)
    out = sub.ms_deform_attn(values, torch.tensor([[2, 3]]), points, torch.ones(1, 3, 1, 1, 1, dtype=torch.float64))
    assert_close(out.flatten(), torch.tensor([5.0, 0.5, 0.0], dtype=torch.float64),
                 what="samples at a pixel centre, a midpoint and outside the map (grid = 2*location - 1, "
                      "align_corners=False, x first, zero padding)", atol=1e-9, rtol=0)  # exact bilinear weights


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_deformable_core_heads_and_weights(sub):
    """Two heads of two channels read their own values; their outputs sit side by side (head 0's channels first),
    each a weighted sum of its points."""
    values = torch.zeros(1, 4, 2, 2, dtype=torch.float64)                   # one 2 x 2 level, channel 1 stays 0
    values[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])                 # head 0
    values[0, :, 1, 0] = torch.tensor([10.0, 20.0, 30.0, 40.0])             # head 1
    centres = torch.tensor([[0.25, 0.25], [0.75, 0.75]], dtype=torch.float64)   # pixels (0, 0) and (1, 1)
    loc = centres.reshape(1, 1, 1, 1, 2, 2).expand(1, 1, 2, 1, 2, 2)
    w = torch.tensor([[0.5, 0.5], [0.1, 0.9]], dtype=torch.float64).reshape(1, 1, 2, 1, 2)
    out = sub.ms_deform_attn(values, torch.tensor([[2, 2]]), loc, w)
    assert_close(out, torch.tensor([[[2.5, 0.0, 37.0, 0.0]]], dtype=torch.float64),
                 what="two heads, two points each (head 0: 0.5*1 + 0.5*4 in channel 0; head 1: 0.1*10 + 0.9*40 in "
                      "channel 2 = 1 * D + 0)", atol=1e-9, rtol=0)


# -- deformable_module --------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_deformable_module_names_and_shapes(sub):
    """MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=3) has the four Linear layers with the right sizes."""
    module = sub.MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=3)
    state = module.state_dict()
    want = {"sampling_offsets.weight": (24, 16), "sampling_offsets.bias": (24,), "attention_weights.weight": (12, 16),
            "attention_weights.bias": (12,), "value_proj.weight": (16, 16), "value_proj.bias": (16,),
            "output_proj.weight": (16, 16), "output_proj.bias": (16,)}
    assert sorted(state) == sorted(want), f"MSDeformAttn's parameters should be {sorted(want)}, not {sorted(state)}"
    for name, shape in want.items():
        assert_shape(state[name], shape, what=f"MSDeformAttn's `{name}`")
    out = module(randn(2, 3, 16, seed=1, dtype=torch.float32), torch.rand(2, 3, 2, 2),
                 randn(2, 20, 16, seed=2, dtype=torch.float32), torch.tensor([[4, 4], [2, 2]]))
    assert_shape(out, (2, 3, 16), what="MSDeformAttn's output for 2 images and 3 queries")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_deformable_module_offsets_are_in_pixels_of_each_level(sub):
    """A hand-set module: value_proj doubles the values and output_proj halves them, the offset is one pixel to
    the right on every level, and the two levels share the weight equally."""
    module = sub.MSDeformAttn(d_model=1, n_levels=2, n_heads=1, n_points=1).double()
    zero = torch.zeros(1, dtype=torch.float64)
    module.load_state_dict({  # the weights travel as a state dict (in-place edits of a remote module's tensors are lost)
        "value_proj.weight": torch.full((1, 1), 2.0, dtype=torch.float64), "value_proj.bias": zero,   # values x 2
        "output_proj.weight": torch.full((1, 1), 0.5, dtype=torch.float64), "output_proj.bias": zero,  # output / 2
        "sampling_offsets.weight": torch.zeros(4, 1, dtype=torch.float64),
        "sampling_offsets.bias": torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64),   # (+1 px, 0) on each level
        "attention_weights.weight": torch.zeros(2, 1, dtype=torch.float64),
        "attention_weights.bias": torch.zeros(2, dtype=torch.float64)})                    # softmax -> 1/2, 1/2
    level0 = torch.arange(8.0, dtype=torch.float64)          # 2 x 4: pixel (i, j) holds 4 i + j
    level1 = torch.tensor([100.0, 200.0], dtype=torch.float64)   # 1 x 2
    value = torch.cat([level0, level1]).reshape(1, 10, 1)
    # reference: centre of level 0's pixel (0, 1) and of level 1's pixel (0, 0)
    ref = torch.tensor([[1.5 / 4, 0.5 / 2], [0.5 / 2, 0.5 / 1]], dtype=torch.float64).reshape(1, 1, 2, 2)
    out = module(torch.zeros(1, 1, 1, dtype=torch.float64), ref, value, torch.tensor([[2, 4], [1, 2]]))
    # one pixel to the right: level 0 reads pixel (0, 2) = 2, level 1 reads pixel (0, 1) = 200
    assert_close(out.flatten(), torch.tensor([0.5 * 2 + 0.5 * 200], dtype=torch.float64),
                 what="MSDeformAttn with a one-pixel offset on two levels (divide the offsets by each level's "
                      "(width, height); softmax over all levels and points of a head)", atol=1e-9, rtol=0)


# -- ia_bce -------------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_ia_bce_focal_hand_computed(sub):
    """One positive with p = 0.5 and one negative with p = 0.5: alpha weighs the positive, 1 - alpha the negative."""
    logits = torch.zeros(1, 2, dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    # each entry: -log(0.5) * 0.5**gamma; alpha 0.25 for the positive, 0.75 for the negative; divided by 2
    expected = (0.25 + 0.75) * math.log(2) * 0.25 / 2
    assert_close(sub.sigmoid_focal_loss(logits, targets, 2.0), torch.tensor(expected, dtype=torch.float64),
                 what="sigmoid_focal_loss of two entries at p = 0.5 with num_boxes=2", atol=1e-9, rtol=0)
    # one positive at p = 0.5 with alpha = 0.4, gamma = 1: 0.4 * 0.5 * log 2, divided by num_boxes = 2
    assert_close(sub.sigmoid_focal_loss(torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
                                        2.0, alpha=0.4, gamma=1.0),
                 torch.tensor(0.4 * 0.5 * math.log(2) / 2, dtype=torch.float64),
                 what="sigmoid_focal_loss of one positive at p = 0.5 with alpha=0.4, gamma=1, num_boxes=2",
                 atol=1e-9, rtol=0)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_ia_bce_hand_computed_iou_half(sub):
    """A matched query with p = 0.5 and IoU 0.5 (target t = 0.5) and an unmatched one with p = 0.5:
    log 2 + 0.25 log 2."""
    logits = torch.zeros(1, 2, 1, dtype=torch.float64)
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.2, 0.2, 0.1, 0.1]]], dtype=torch.float64)  # box 0: half the target
    targets = [torch.tensor([[0.5, 0.5, 0.4, 0.4]], dtype=torch.float64)]
    out = sub.ia_bce_loss(logits, boxes, [torch.tensor([0])], targets, [(torch.tensor([0]), torch.tensor([0]))], 1.0)
    assert_shape(out, (), what="ia_bce_loss (a scalar)")
    assert_close(out, torch.tensor(1.25 * math.log(2), dtype=torch.float64),
                 what="ia_bce_loss: t = p**0.25 * IoU**0.75 = 0.5 for the matched query, weight p**2 = 0.25 for the "
                      "other", atol=1e-9, rtol=0)
    out = sub.ia_bce_loss(logits, boxes, [torch.tensor([0])], targets, [(torch.tensor([0]), torch.tensor([0]))], 2.0,
                          gamma=1.0)
    assert_close(out, torch.tensor((1 + 0.5) * math.log(2) / 2, dtype=torch.float64),
                 what="ia_bce_loss with gamma=1 and num_boxes=2 (the unmatched query's weight is p**1 = 0.5)",
                 atol=1e-9, rtol=0)


@pytest.mark.points(1)
@pytest.mark.kind("grad")
def test_ia_bce_target_is_detached(sub):
    """The gradient of IA-BCE for a matched query is p - t, as for BCE with a constant target (t detached)."""
    logit = torch.tensor([[[0.4], [-0.3]]], dtype=torch.float64, requires_grad=True)   # query 1 is unmatched
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.2, 0.2, 0.1, 0.1]]], dtype=torch.float64)
    targets = [torch.tensor([[0.5, 0.5, 0.4, 0.4]], dtype=torch.float64)]
    loss = sub.differentiable(sub.ia_bce_loss)(logit, boxes, [torch.tensor([0])], targets,
                                               [(torch.tensor([0]), torch.tensor([0]))], 1.0)
    loss.backward()
    p = torch.sigmoid(torch.tensor(0.4, dtype=torch.float64))
    t = p ** 0.25 * 0.5 ** 0.75
    assert_close(logit.grad.flatten()[0], p - t,
                 what="d ia_bce / d logit of a matched query (t must be detached)", atol=1e-9, rtol=0)
    x = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)     # unmatched: -p**2 log(1 - p), all of it differentiated
    (-(x.sigmoid() ** 2) * (1 - x.sigmoid()).log()).backward()
    assert_close(logit.grad.flatten()[1], x.grad,
                 what="d ia_bce / d logit of an unmatched query (the weight p**gamma is not detached)", atol=1e-9, rtol=0)


# -- group_detr ---------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_group_detr_mask_small(sub):
    """2 groups of 2 queries: True (blocked) between groups, False inside a group."""
    expected = torch.tensor([[False, False, True, True], [False, False, True, True],
                             [True, True, False, False], [True, True, False, False]])
    mask = sub.group_attention_mask(2, 2)
    assert mask.dtype == torch.bool and torch.equal(mask, expected), \
        f"group_attention_mask(2, 2) should be {expected.int().tolist()} (True = may not attend), not {mask.int().tolist()}"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_group_detr_matching_cost_perfect_box(sub):
    """A query whose box equals the target's costs only its class term: L1 = 0 and GIoU = 1."""
    logits = torch.zeros(1, 2, dtype=torch.float64)                      # p = 0.5 for both classes
    box = torch.tensor([[0.5, 0.5, 0.2, 0.2]], dtype=torch.float64)
    cost = sub.lw_detr_matching_cost(logits, box, torch.tensor([1]), box.clone())
    p = 0.5
    class_cost = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8) - 0.75 * p ** 2 * -math.log(1 - p + 1e-8)
    assert_close(cost, torch.tensor([[2.0 * class_cost - 2.0]], dtype=torch.float64),
                 what="the cost of a perfect box at p = 0.5 (2 * focal class cost + 5 * 0 - 2 * GIoU)", atol=1e-7, rtol=0)
    # a box shifted by 0.1 in x: L1 = 0.1, IoU = 0.02 / 0.06 = 1/3, the enclosing box is the union: GIoU = 1/3
    shifted = torch.tensor([[0.6, 0.5, 0.2, 0.2]], dtype=torch.float64)
    cost = sub.lw_detr_matching_cost(logits, shifted, torch.tensor([1]), box.clone(), class_weight=1.0, l1_weight=4.0,
                                     giou_weight=3.0, alpha=0.5, gamma=1.0)
    class_cost = 0.5 * (1 - p) * -math.log(p + 1e-8) - 0.5 * p * -math.log(1 - p + 1e-8)
    assert_close(cost, torch.tensor([[1.0 * class_cost + 4.0 * 0.1 - 3.0 / 3]], dtype=torch.float64),
                 what="the cost of a shifted box with class_weight=1, l1_weight=4, giou_weight=3, alpha=0.5, gamma=1",
                 atol=1e-7, rtol=0)  # the 1e-8 inside the logarithms moves the cost by < 1e-7


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_group_detr_match_shifts_queries(sub):
    """Two groups of two queries, one target: the cheapest query of each group, indices counted over all queries."""
    cost = torch.tensor([[3.0], [1.0], [0.5], [2.0]], dtype=torch.float64)
    q, t = sub.group_hungarian_match(cost, 2)
    assert torch.as_tensor(q).tolist() == [1, 2] and torch.as_tensor(t).tolist() == [0, 0], \
        (f"group_hungarian_match(cost, 2) should match query 1 (group 0) and query 2 (group 1) to target 0, not "
         f"queries {torch.as_tensor(q).tolist()}")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_group_detr_loss_perfect_boxes(sub):
    """Group 0 predicts both objects exactly, group 1 both shifted by 0.1 in x: loss_bbox = (0.1 + 0.1) / (2 groups x 2
    objects), and loss_giou comes from group 1 only."""
    target = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2]], dtype=torch.float64)
    junk = torch.tensor([0.5, 0.5, 0.1, 0.1], dtype=torch.float64)
    shift = torch.tensor([0.1, 0.0, 0.0, 0.0], dtype=torch.float64)
    boxes = torch.stack([target[0], target[1], junk, target[1] + shift, target[0] + shift, junk]).unsqueeze(0)  # 2 x 3
    logits = torch.full((1, 6, 2), -3.0, dtype=torch.float64)
    logits[0, [0, 4], 0] = 3.0
    logits[0, [1, 3], 1] = 3.0
    losses = sub.lw_detr_loss(logits, boxes, [torch.tensor([0, 1])], [target], num_groups=2)
    assert isinstance(losses, dict) and set(losses) == {"loss_ce", "loss_bbox", "loss_giou"}, \
        "lw_detr_loss should return a dict with the keys loss_ce, loss_bbox, loss_giou"
    assert_close(losses["loss_bbox"], torch.tensor(0.2 / 4, dtype=torch.float64),
                 what="loss_bbox: L1 summed over the matched pairs of both groups, divided by groups x objects = 4 "
                      "(each group is matched on its own)", atol=1e-9, rtol=0)
    assert float(losses["loss_giou"]) > 0 and float(losses["loss_ce"]) > 0


# -- speed --------------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_speed_counts_small(sub):
    """Counts for a tiny case, worked out in the notebook's formulas."""
    assert sub.pyramid_tokens(64, 64) == 64 + 16 + 4 + 1, "pyramid_tokens(64, 64): 8*8 + 4*4 + 2*2 + 1*1"
    assert sub.pyramid_tokens(72, 40) == 9 * 5 + 5 * 3 + 3 * 2 + 2 * 1, \
        "pyramid_tokens(72, 40): each level has ceil(72 / s) * ceil(40 / s) pixels (a partial pixel still counts)"
    assert sub.dense_attention_macs(10, 10, 4) == 4 * 10 * 16 + 2 * 100 * 4, \
        "dense_attention_macs(10, 10, 4) = 4 N d^2 + 2 N^2 d for self-attention"
    assert sub.dense_attention_macs(2, 5, 4) == 2 * 2 * 16 + 2 * 5 * 16 + 2 * 2 * 5 * 4, \
        "dense_attention_macs(2, 5, 4): 2 queries attend to 5 keys"
    assert sub.pyramid_tokens(64, 64, strides=(16,)) == 16, "pyramid_tokens(64, 64, strides=(16,)): one level of 4 x 4"
    # 10 queries and values, d = 8, 1 head, 1 level, 1 point: 2*10*64 + 3*10*8 + 5*10*8
    assert sub.deformable_attention_macs(10, 10, 8, n_heads=1, n_levels=1, n_points=1) == 1280 + 240 + 400, \
        "deformable_attention_macs(10, 10, 8, 1 head, 1 level, 1 point)"
    # 30 values: value_proj costs 30 * 64
    assert sub.deformable_attention_macs(10, 30, 8, n_heads=1, n_levels=1, n_points=1) == 1920 + 640 + 240 + 400, \
        "deformable_attention_macs(10, 30, 8, 1 head, 1 level, 1 point): value_proj runs on the 30 values"
