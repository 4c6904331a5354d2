"""Shared data and trusted models for m1w02's hidden suite (the trusted side only).

Fixture names start with `m1w02_` so that they cannot clash with other weeks' fixtures.
"""

from __future__ import annotations

import types
from functools import partial

import pytest
import torch

from autograder.kit.data import digits


@pytest.fixture(scope="session")
def m1w02_timm() -> types.SimpleNamespace:
    """timm's modules, built with the constructor arguments of the notebook's contract."""
    from timm.layers.pos_embed_rel import RelPosBias
    from timm.models import deit, maxxvit
    from timm.models import swin_transformer as swin

    def build_timm_window_attention(**kw):
        module = swin.WindowAttention(**kw)
        module.fused_attn = False  # the explicit path: its matrix products are what FlopCounterMode counts
        return module

    def build_timm_swin_classifier(depth, num_heads, **kw):
        return swin.SwinTransformer(depths=(depth,), num_heads=(num_heads,), **kw)

    def build_timm_mbconv(in_chs, out_chs, stride=1, expand_ratio=4.0, se_ratio=0.25):
        # CoAtNet-0's settings; timm rounds the expanded width to a multiple of 8 (the suite's widths already are)
        cfg = maxxvit.MaxxVitConvCfg(expand_ratio=expand_ratio, attn_ratio=se_ratio)
        return maxxvit.MbConvBlock(in_chs, out_chs, stride, cfg=cfg)

    def build_timm_relative_attention(dim, feat_size, dim_head, bias=True):
        return maxxvit.Attention2d(dim, dim, dim_head=dim_head, bias=bias,
                                   rel_pos_cls=partial(RelPosBias, window_size=feat_size))

    return types.SimpleNamespace(
        window_partition=swin.window_partition,
        window_reverse=swin.window_reverse,
        relative_position_index=swin.get_relative_position_index,
        WindowAttention=build_timm_window_attention,
        SwinTransformerBlock=lambda **kw: swin.SwinTransformerBlock(**kw),
        SwinClassifier=build_timm_swin_classifier,
        MBConv=build_timm_mbconv,
        RelativeAttention2d=build_timm_relative_attention,
        DistilledVisionTransformer=lambda **kw: deit.VisionTransformerDistilled(**kw),
    )


@pytest.fixture(scope="session")
def m1w02_digits() -> dict[str, torch.Tensor]:
    """scikit-learn's 8x8 digits in [0, 1], [n, 1, 8, 8]; a fixed split of 1297 train / 500 test."""
    return digits().as_dict()
