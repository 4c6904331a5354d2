"""Trusted implementations and data for m2w04's hidden suite (the trusted side only).

Fixture names start with `m2w04_` so that they cannot clash with other weeks' fixtures. The
trusted libraries (torchvision.ops, segment_anything, motmetrics) are imported lazily, once.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from autograder.kit.data.moving import moving_objects


# -- the collective average loss, from torchvision.ops ----------------------------------------
def trusted_clip_loss(logits, boxes, assignment, target_boxes, target_present, class_weight=2.0, l1_weight=5.0,
                      giou_weight=2.0, alpha=0.25, gamma=2.0):
    """MOTR's loss, written from torchvision.ops' sigmoid_focal_loss and generalized_box_iou.

    (Not generalized_box_iou_loss: it adds eps = 1e-7 to the union and the enclosing area, which
    moves the loss by ~1e-7 relative, far above float64's agreement between valid solutions.)"""
    from torchvision.ops import box_convert, generalized_box_iou, sigmoid_focal_loss

    total = torch.zeros((), dtype=logits.dtype)
    for t in range(logits.shape[0]):
        matched = assignment[t] >= 0
        target = matched.to(logits.dtype)
        total = total + class_weight * sigmoid_focal_loss(logits[t], target, alpha=alpha, gamma=gamma,
                                                          reduction="sum")
        src, tgt = boxes[t][matched], target_boxes[t][assignment[t][matched]]
        total = total + l1_weight * torch.nn.functional.l1_loss(src, tgt, reduction="sum")
        giou = generalized_box_iou(box_convert(src, "cxcywh", "xyxy"), box_convert(tgt, "cxcywh", "xyxy"))
        total = total + giou_weight * (1 - giou.diagonal()).sum()
    return total / max(int(target_present.sum()), 1)


# -- SAM's prompt encoder -----------------------------------------------------------------------
def sam_prompt_encoder(embed_dim, image_size, scale, seed):
    """segment_anything's PromptEncoder (no weights to download: it is built, not loaded) with a
    Gaussian matrix of the given scale and random learned embeddings, in float32."""
    from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom, PromptEncoder

    torch.manual_seed(seed)
    encoder = PromptEncoder(embed_dim=embed_dim, image_embedding_size=(image_size[0] // 4, image_size[1] // 4),
                            input_image_size=image_size, mask_in_chans=4)
    encoder.pe_layer = PositionEmbeddingRandom(embed_dim // 2, scale=scale)
    return encoder.eval()


def sam_weights(encoder):
    """The tensors the notebook's functions take, read from a PromptEncoder."""
    return types.SimpleNamespace(
        gaussian=encoder.pe_layer.positional_encoding_gaussian_matrix.detach().clone(),
        labels=torch.cat([encoder.point_embeddings[0].weight, encoder.point_embeddings[1].weight]).detach().clone(),
        not_a_point=encoder.not_a_point_embed.weight[0].detach().clone(),
        corners=torch.cat([encoder.point_embeddings[2].weight, encoder.point_embeddings[3].weight]).detach().clone())


# -- motmetrics -----------------------------------------------------------------------------------
def motmetrics_summary(gt_ids, gt_boxes, hyp_ids, hyp_boxes, iou_threshold=0.5):
    """motmetrics' MOTA and IDF1 counts on the same data: IoU distance, pairs allowed at IoU >= threshold."""
    import motmetrics as mm

    from torchvision.ops import box_iou

    acc = mm.MOTAccumulator(auto_id=True)
    for g_ids, g_boxes, h_ids, h_boxes in zip(gt_ids, gt_boxes, hyp_ids, hyp_boxes):
        # motmetrics' own iou_matrix calls np.asfarray, which NumPy 2 removed: the same distances
        # (1 - IoU, NaN where a pair is not allowed) from torchvision's box_iou.
        iou = box_iou(g_boxes.double().reshape(-1, 4), h_boxes.double().reshape(-1, 4)).numpy()
        dists = np.where(iou >= iou_threshold, 1 - iou, np.nan)
        acc.update(g_ids.tolist(), h_ids.tolist(), dists)
    names = ["num_objects", "num_misses", "num_false_positives", "num_switches", "mota", "idtp", "idfp", "idfn",
             "idf1"]
    row = mm.metrics.create().compute(acc, metrics=names, name="seq")
    return {name: float(row[name].iloc[0]) for name in names}


def tracker_output(seed, n=6, frames=10, objects=4, size=48, drop=0.15, false_positives=0.3, swaps=2,
                   jitter=1.0, decoys=True):
    """A ground truth of moving squares and a tracker's output with every kind of error: boxes
    jittered by up to `jitter` pixels, detections dropped, false positives, identity swaps between
    two tracks from a random frame on, a track that is re-identified under a new id, and (`decoys`) every
    third frame a duplicate box with a fresh id that fits object 0 better than its own track does (CLEAR-MOT
    keeps the earlier match; Hungarian alone would switch to the duplicate). Returns
    (gt_ids, gt_boxes, hyp_ids, hyp_boxes) as lists over frames, for one video of `n`'s first."""
    g = torch.Generator().manual_seed(seed)
    data = moving_objects(1, seed=seed, frames=frames, size=size, objects=objects, object_size=(6, 12),
                          max_speed=3)
    boxes, ids = data.boxes[0].double(), data.ids[0]
    hyp_of = {int(i): 100 + int(i) for i in ids}
    swap_frames = {int(torch.randint(1, frames, (), generator=g)) for _ in range(swaps)}
    gt_ids, gt_boxes, hyp_ids, hyp_boxes = [], [], [], []
    for t in range(frames):
        present = torch.rand(objects, generator=g) > 0.1 if t else torch.ones(objects, dtype=torch.bool)
        gt_ids.append(ids[present])
        gt_boxes.append(boxes[t][present])
        if t in swap_frames:   # two hypotheses exchange their objects from here on
            a, b = torch.randperm(objects, generator=g)[:2].tolist()
            ka, kb = int(ids[a]), int(ids[b])
            hyp_of[ka], hyp_of[kb] = hyp_of[kb], hyp_of[ka]
        if t == frames // 2:   # one object re-identified under a fresh id
            hyp_of[int(ids[0])] = 500 + t
        keep = present & (torch.rand(objects, generator=g) > drop)
        hb = boxes[t][keep] + jitter * (2 * torch.rand(int(keep.sum()), 4, generator=g, dtype=torch.float64) - 1)
        hi = torch.tensor([hyp_of[int(i)] for i in ids[keep]], dtype=torch.long)
        if decoys and t % 3 == 2 and bool(keep[0]):  # a duplicate that fits object 0 better than its own track
            hb = torch.cat([hb, boxes[t][0:1]])
            hi = torch.cat([hi, torch.tensor([700 + t])])
        extra = int(torch.rand((), generator=g) < false_positives)
        if extra:
            corner = torch.randint(0, size - 8, (2,), generator=g).double()
            hb = torch.cat([hb, torch.cat([corner, corner + 7]).unsqueeze(0)])
            hi = torch.cat([hi, torch.tensor([900 + t])])
        order = torch.randperm(len(hi), generator=g)
        hyp_ids.append(hi[order])
        hyp_boxes.append(hb[order])
    return gt_ids, gt_boxes, hyp_ids, hyp_boxes


# -- the tracker's data -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def m2w04_moving() -> dict:
    """Moving squares (16x16, 2 objects, 4 frames): 512 videos to train on, 100 held out; boxes
    normalised by the frame size."""
    train, test = moving_objects(512, seed=1), moving_objects(100, seed=99)
    size = train.video.shape[-1]
    return {"train_video": train.video, "train_boxes": train.boxes / size,
            "test_video": test.video, "test_boxes": test.boxes / size, "size": size}


@pytest.fixture(scope="session")
def m2w04_ref() -> types.SimpleNamespace:
    return types.SimpleNamespace(clip_loss=trusted_clip_loss, sam=sam_prompt_encoder, sam_weights=sam_weights,
                                 motmetrics=motmetrics_summary, tracker_output=tracker_output)
