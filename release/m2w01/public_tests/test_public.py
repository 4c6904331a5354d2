"""m2w01 public self-checks: run them in the notebook with `check("m2w01")` or `check("m2w01", "<part>")`.

Parts: boxes, matcher, criterion, position, detr, train. These check shapes, small hand-computed
cases and properties stated in the notebook; the hidden suite that grades the notebook checks much
more (other sizes and arguments, torchvision's and transformers' values and gradients, a training
run).
"""

from __future__ import annotations

import math

import pytest
import torch

from autograder.kit import assert_close, assert_shape

pytestmark = [pytest.mark.visibility("visible")]

D = torch.float64
EXACT = {"atol": 1e-9, "rtol": 1e-7}  # float64 hand-computed cases


def t(values):
    return torch.tensor(values, dtype=D)


# -- boxes ------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_boxes_convert_hand_case(sub):
    """(cx, cy, w, h) = (0.5, 0.5, 0.2, 0.4) is the corner box (0.4, 0.3, 0.6, 0.7), and back."""
    assert_close(sub.box_cxcywh_to_xyxy(t([[0.5, 0.5, 0.2, 0.4]])), t([[0.4, 0.3, 0.6, 0.7]]),
                 what="box_cxcywh_to_xyxy([0.5, 0.5, 0.2, 0.4])", **EXACT)
    assert_close(sub.box_xyxy_to_cxcywh(t([[0.4, 0.3, 0.6, 0.7]])), t([[0.5, 0.5, 0.2, 0.4]]),
                 what="box_xyxy_to_cxcywh([0.4, 0.3, 0.6, 0.7])", **EXACT)
    assert_shape(sub.box_cxcywh_to_xyxy(torch.rand(2, 3, 4, dtype=D)), (2, 3, 4),
                 what="box_cxcywh_to_xyxy of a [2, 3, 4] batch")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_boxes_iou_and_giou_hand_cases(sub):
    """Unit squares: identical (IoU 1, union 1), half overlapping (1/3, union 3), side by side (GIoU -1/3),
    diagonal neighbours (IoU 0 and GIoU -7/9: clamp each side of the intersection before multiplying)."""
    a = t([[0.0, 0.0, 1.0, 1.0]])
    b = t([[0.0, 0.0, 1.0, 1.0], [0.5, 0.0, 1.5, 1.0], [2.0, 0.0, 3.0, 1.0], [2.0, 2.0, 3.0, 3.0]])
    iou, union = sub.box_iou(a, b)
    assert_shape(iou, (1, 4), what="box_iou's iou for 1 and 4 boxes")
    assert_close(iou, t([[1.0, 0.5 / 1.5, 0.0, 0.0]]), what="box_iou's iou", **EXACT)
    assert_close(union, t([[1.0, 1.5, 2.0, 2.0]]), what="box_iou's union", **EXACT)
    assert_close(sub.generalized_box_iou(a, b), t([[1.0, 0.5 / 1.5, -1 / 3, -7 / 9]]), what="generalized_box_iou",
                 **EXACT)


# -- matcher ----------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_matcher_cost_hand_case(sub):
    """Two queries, one object of class 0: query 0 has its exact box, query 1 a box shifted by 0.1 in x.

    Logits [ln 3, 0, 0] give p(class 0) = 0.6; the cost is -w_c p + w_L1 L1 - w_g GIoU."""
    logits = t([[math.log(3), 0.0, 0.0], [0.0, 0.0, 0.0]])
    boxes = t([[0.5, 0.5, 0.2, 0.2], [0.6, 0.5, 0.2, 0.2]])
    labels, target = torch.tensor([0]), t([[0.5, 0.5, 0.2, 0.2]])
    # query 1: L1 = 0.1; IoU = 0.02 / 0.06 = 1/3, the enclosing box equals the union: GIoU = 1/3.
    expected = t([[-0.6 + 0 - 2.0], [-1 / 3 + 5 * 0.1 - 2 / 3]])
    assert_close(sub.matching_cost(logits, boxes, labels, target), expected, what="matching_cost with the default "
                 "weights (1, 5, 2)", **EXACT)
    expected = t([[-0.3 * 0.6 - 0.7], [-0.3 / 3 + 2 * 0.1 - 0.7 / 3]])
    assert_close(sub.matching_cost(logits, boxes, labels, target, class_weight=0.3, l1_weight=2.0, giou_weight=0.7),
                 expected, what="matching_cost with class_weight=0.3, l1_weight=2, giou_weight=0.7", **EXACT)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_matcher_least_total_cost(sub):
    """The least total cost, not the greedy choice: [[1, 2], [1.1, 9], [5, 5]] pairs query 0 with target 1 and
    query 1 with target 0 (total 3.1)."""
    rows, cols = sub.hungarian_match(t([[1.0, 2.0], [1.1, 9.0], [5.0, 5.0]]))
    assert rows.dtype == torch.int64 and cols.dtype == torch.int64, "hungarian_match should return int64 tensors"
    assert (rows.tolist(), cols.tolist()) == ([0, 1], [1, 0]), (
        f"hungarian_match gave queries {rows.tolist()} -> targets {cols.tolist()}; expected [0, 1] -> [1, 0]")


# -- criterion --------------------------------------------------------------------------------
def one_object():
    """One image, two queries, one object of class 0 whose box query 0 predicts exactly."""
    target = [{"labels": torch.tensor([0]), "boxes": t([[0.3, 0.4, 0.2, 0.2]])}]
    boxes = t([[[0.3, 0.4, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]])
    return target, boxes


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_criterion_weighted_cross_entropy(sub):
    """Query 0 is matched (class 0), query 1 is "no object" (the last column): loss_ce is the weighted mean
    (CE_0 + eos_coef * CE_1) / (1 + eos_coef); the exact box gives zero box losses."""
    targets, boxes = one_object()
    logits = t([[[2.0, 0.0], [0.0, 1.0]]])
    ce0, ce1 = math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1))
    for eos in (0.1, 0.5):
        got = sub.set_criterion(logits, boxes, targets, eos_coef=eos)
        assert_close(got["loss_ce"], t((ce0 + eos * ce1) / (1 + eos)), what=f"loss_ce with eos_coef={eos}", **EXACT)
        assert_close(got["loss_bbox"], t(0.0), what="loss_bbox of an exact box", atol=1e-12, rtol=0)
        assert_close(got["loss_giou"], t(0.0), what="loss_giou of an exact box", atol=1e-12, rtol=0)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_criterion_box_losses_and_total(sub):
    """A box off by 0.05 in cx: L1 0.05, GIoU 0.15/0.25 = 0.6 (enclosing box = union), divided by 1 box; the total
    is class_weight * loss_ce + l1_weight * loss_bbox + giou_weight * loss_giou."""
    targets, boxes = one_object()
    boxes[0, 0, 0] += 0.05
    logits = torch.zeros(1, 2, 2, dtype=D)
    got = sub.set_criterion(logits, boxes, targets, class_weight=2.0, l1_weight=3.0, giou_weight=4.0)
    assert_close(got["loss_bbox"], t(0.05), what="loss_bbox", **EXACT)
    assert_close(got["loss_giou"], t(1 - 0.6), what="loss_giou", **EXACT)
    assert_close(got["loss"], t(2 * math.log(2) + 3 * 0.05 + 4 * 0.4), what="the weighted total 'loss'", **EXACT)


# -- position ---------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_position_hand_case(sub):
    """num_pos_feats=2, normalize=False, a 2 x 1 map: channels sin(y), cos(y), sin(x), cos(x) with y = 1, 2 and x = 1."""
    out = sub.SinePositionEmbedding(num_pos_feats=2, normalize=False)(torch.zeros(1, 5, 2, 1))
    assert_shape(out, (1, 4, 2, 1), what="SinePositionEmbedding(2) of a [1, 5, 2, 1] map")
    s1, s2, c1, c2 = math.sin(1), math.sin(2), math.cos(1), math.cos(2)
    expected = torch.tensor([[[s1], [s2]], [[c1], [c2]], [[s1], [s1]], [[c1], [c1]]])
    assert_close(out[0], expected, what="the 4 channels (y's sin and cos, then x's)", atol=1e-5, rtol=0)


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_position_normalised_defaults(sub):
    """Defaults: 128 channels; normalised, the last row's y is 2 pi * H / (H + 1e-6), so channel 0 is sin(2 pi) ~ 0
    there and sin(2 pi / H) in the first row; channel 1 is cos."""
    out = sub.SinePositionEmbedding()(torch.zeros(2, 3, 4, 5))
    assert_shape(out, (2, 128, 4, 5), what="SinePositionEmbedding() of a [2, 3, 4, 5] map")
    assert_close(out[0, 0, :, 0], torch.tensor([math.sin(2 * math.pi * k / 4) for k in range(1, 5)]),
                 what="channel 0 (sin of y) down the first column", atol=1e-5, rtol=0)
    assert_close(out[1, 65, 0, :], torch.tensor([math.cos(2 * math.pi * k / 5) for k in range(1, 6)]),
                 what="channel 65 (cos of x) along the first row", atol=1e-5, rtol=0)


# -- detr -------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("shape")
def test_detr_outputs_and_names(sub):
    """DETR(num_classes=3, num_queries=5): logits [B, 5, 4], boxes [B, 5, 4] inside (0, 1), and the part-5 names."""
    model = sub.DETR(num_classes=3, num_queries=5)
    out = model(torch.rand(2, 3, 32, 32))
    assert_shape(out["pred_logits"], (2, 5, 4), what="pred_logits")
    assert_shape(out["pred_boxes"], (2, 5, 4), what="pred_boxes")
    assert bool(((out["pred_boxes"] > 0) & (out["pred_boxes"] < 1)).all()), "pred_boxes should go through a sigmoid"
    state = model.state_dict()
    for name, shape in [("input_proj.weight", (64, 64, 1, 1)), ("query_embed.weight", (5, 64)),
                        ("class_embed.weight", (4, 64)), ("bbox_embed.layers.2.weight", (4, 64)),
                        ("transformer.encoder.layers.0.linear1.weight", (128, 64))]:
        assert name in state, f"your DETR has no parameter `{name}` (see the names in part 5)"
        assert_shape(state[name], shape, what=f"`{name}`")


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_detr_mlp_hand_case(sub):
    """MLP(1, 2, 1, 2) with weights [1, -1], zero biases and output weights [1, 1]: ReLU between layers only, so
    x -> relu(x) + relu(-x) = |x|; and num_layers Linear layers in `layers`."""
    mlp = sub.MLP(1, 2, 1, 2)
    mlp.load_state_dict({"layers.0.weight": torch.tensor([[1.0], [-1.0]]), "layers.0.bias": torch.zeros(2),
                         "layers.1.weight": torch.tensor([[1.0, 1.0]]), "layers.1.bias": torch.tensor([-0.5])})
    assert_close(mlp(torch.tensor([[2.0], [-3.0]])), torch.tensor([[1.5], [2.5]]), what="MLP on [2, -3]",
                 atol=1e-6, rtol=0)
    assert len(sub.MLP(3, 4, 2, 5).state_dict()) == 10, "MLP(3, 4, 2, num_layers=5) should hold 5 Linear layers"


# -- train ------------------------------------------------------------------------------------
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_train_first_step_moves_weights_by_lr(sub):
    """One AdamW step without weight decay moves every weight by at most lr, and most by almost exactly lr."""
    torch.manual_seed(0)
    model = sub.DETR(num_classes=2, num_queries=4, hidden_dim=32, nheads=2, dim_feedforward=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(2, 3, 16, 16)
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2]])},
               {"labels": torch.tensor([1, 0]), "boxes": torch.tensor([[0.7, 0.6, 0.3, 0.2], [0.2, 0.7, 0.2, 0.3]])}]
    losses = sub.train_detr(model, images, targets, steps=1, lr=0.01, weight_decay=0.0)
    assert isinstance(losses, (list, tuple)) and len(losses) == 1, f"steps=1 should give 1 loss, got {losses!r:.100}"
    moves = torch.cat([(v - before[k]).abs().flatten() for k, v in model.state_dict().items()])
    assert moves.max() <= 0.0101, f"a weight moved by {moves.max():.4f} > lr = 0.01 in one step (lr, steps?)"
    assert moves.median() >= 0.009, f"the median weight moved by {moves.median():.5f}, not ~lr = 0.01 (AdamW, lr?)"
