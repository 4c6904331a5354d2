"""The static check for forbidden APIs in a student's source, and which top-level parts it taints."""

from __future__ import annotations

import textwrap

import pytest

from autograder.submission.forbidden import Finding, find_forbidden, forbidden_parts

FORBIDDEN = ["timm", "torch.nn.MultiheadAttention", "torch.nn.TransformerEncoderLayer",
             "torch.nn.functional.scaled_dot_product_attention"]
MHA, SDPA, TIMM, TEL = FORBIDDEN[1], FORBIDDEN[3], FORBIDDEN[0], FORBIDDEN[2]


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_of(source: str, needle: str, occurrence: int = 1) -> int:
    hits = [i for i, line in enumerate(source.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


# -- detection ---------------------------------------------------------------------------------

DETECTED = [
    ("import timm", TIMM, "import timm"),
    ("import torch\nimport timm.models as tm\nm = tm.create_model('vit')", TIMM, "import timm.models"),
    ("from timm.models.vision_transformer import Attention", TIMM, "from timm"),
    ("""
     from torch import nn

     class Attn(nn.Module):
         def __init__(self):
             super().__init__()
             self.m = nn.MultiheadAttention(8, 2)
     """, MHA, "nn.MultiheadAttention"),
    ("import torch\n\nlayer = torch.nn.MultiheadAttention(8, 2)", MHA, "torch.nn.MultiheadAttention"),
    ("import torch.nn as tnn\n\n\ndef make():\n    return tnn.MultiheadAttention(8, 2)", MHA, "tnn.Multi"),
    ("from torch.nn import MultiheadAttention as MHA", MHA, "import MultiheadAttention"),
    ("from torch import nn\nlayer = nn.TransformerEncoderLayer(64, 4)", TEL, "TransformerEncoderLayer("),
    ("""
     import torch
     import torch.nn.functional as F

     def attention(q, k, v):
         scale = q.shape[-1] ** -0.5
         return F.scaled_dot_product_attention(q, k, v)
     """, SDPA, "F.scaled"),
    ("from torch.nn.functional import scaled_dot_product_attention as sdpa", SDPA, "import scaled"),
    ("import torch\n\ndef f(q, k, v):\n    return torch._C._nn.scaled_dot_product_attention(q, k, v)", SDPA,
     "torch._C._nn"),
    ("import torch\nlayer = torch.nn.modules.activation.MultiheadAttention(8, 2)", MHA, "activation"),
    ('import torch.nn.functional as F\n\nfn = getattr(F, "scaled_dot_product_attention")', SDPA, "getattr"),
    ('import torch\nfn = getattr(torch.nn.functional, "scaled_dot_product_attention")', SDPA, "getattr"),
    ('vit = __import__("timm")', TIMM, "__import__"),
    ('import importlib\n\n\nvit = importlib.import_module("timm")', TIMM, "import_module"),
    ('from importlib import import_module\nvit = import_module("timm.models")', TIMM, "import_module("),
    ('import torch\nx = eval("torch.nn.MultiheadAttention")(8, 2)', MHA, "eval"),
    ('from torch import nn\nm = eval("nn.MultiheadAttention(8, 2)")', MHA, "eval"),
]


@pytest.mark.parametrize("source, api, marker", DETECTED, ids=[d[2] for d in DETECTED])
def test_detects(source, api, marker):
    source = src(source)
    findings = find_forbidden(source, FORBIDDEN)
    assert findings, "nothing found"
    assert {f.api for f in findings} == {api}
    assert line_of(source, marker) in {f.line for f in findings}


def test_use_through_an_imported_alias_is_found_where_it_is_used():
    source = src("""
        from torch.nn import MultiheadAttention as MHA


        class Block:
            def __init__(self):
                self.attn = MHA(8, 2)
        """)
    findings = find_forbidden(source, FORBIDDEN)
    assert Finding(MHA, 1, "MHA") in findings
    assert Finding(MHA, line_of(source, "MHA(8, 2)"), "Block") in findings


def test_sdpa_alias_use_inside_a_function():
    source = src("""
        from torch.nn.functional import scaled_dot_product_attention as sdpa

        def attention(q, k, v):
            return sdpa(q, k, v)
        """)
    assert Finding(SDPA, 4, "attention") in find_forbidden(source, FORBIDDEN)


NOT_FLAGGED = [
    ("from torch import nn\nlayer = nn.Linear(8, 8)\nnorm = nn.LayerNorm(8)", "nn.Linear"),
    ("import torch.nn.functional as F\n\ndef f(x):\n    return F.softmax(x, -1) @ x", "F.softmax"),
    ('''
     import torch

     class Attention(torch.nn.Module):
         """Like torch.nn.MultiheadAttention and timm's Attention, but written by hand.

         Do not use F.scaled_dot_product_attention here.
         """
         def forward(self, x):
             return x
     ''', "docstring"),
    ("timm_like = {'depth': 12}\nprint(timm_like['depth'])", "timm_like"),
    ("import torch\nnot_timm = torch.zeros(1)\nmy_timm_model = None", "names containing timm"),
    ('''
     import torch
     from torch import nn

     class MultiheadAttention(nn.Module):
         def forward(self, x):
             return x

     def scaled_dot_product_attention(q, k, v):
         return (q @ k.transpose(-2, -1)).softmax(-1) @ v

     class Block(nn.Module):
         def __init__(self):
             super().__init__()
             self.attn = MultiheadAttention()

         def forward(self, q):
             return scaled_dot_product_attention(q, q, q)
     ''', "own classes with the same names"),
    ("import torch\nlayer = torch.nn.TransformerDecoderLayer(8, 2)", "a different torch layer"),
    ('x = {"attention": 1}\ny = getattr(x, "get")', "getattr of an innocent name"),
]


@pytest.mark.parametrize("source, label", NOT_FLAGGED, ids=[n[1] for n in NOT_FLAGGED])
def test_does_not_flag(source, label):
    assert find_forbidden(src(source), FORBIDDEN) == []


def test_nothing_forbidden_finds_nothing():
    assert find_forbidden("import timm\nimport torch.nn.MultiheadAttention", []) == []
    assert forbidden_parts("import timm\nclass A(timm.X): pass", []) == {}


def test_findings_are_unique_and_in_source_order():
    source = src("""
        from torch import nn

        class A(nn.Module):
            def __init__(self):
                self.a = nn.MultiheadAttention(8, 2)
                self.b = nn.MultiheadAttention(8, 2)
        """)
    findings = find_forbidden(source, FORBIDDEN)
    assert findings == [Finding(MHA, 5, "A"), Finding(MHA, 6, "A")]


# -- forbidden parts --------------------------------------------------------------------------------

CHAIN = src("""
    import torch
    from torch import nn
    import torch.nn.functional as F

    PATCH = 4


    def helper(x):
        return F.softmax(x, -1)


    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim)
            self.mha = nn.MultiheadAttention(dim, 2)


    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.attn = Attention(dim)
            self.mlp = nn.Linear(dim, dim)


    class ViT(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.blocks = nn.ModuleList([Block(dim) for _ in range(2)])


    def attention(q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


    def uses_helper(x):
        return helper(x) * PATCH
    """)


def test_class_using_a_forbidden_api_is_a_forbidden_part():
    parts = forbidden_parts(CHAIN, FORBIDDEN, week="m1w01")
    reason = parts["Attention"]
    assert "`Attention` uses torch.nn.MultiheadAttention" in reason
    assert f"(line {line_of(CHAIN, 'nn.MultiheadAttention(')})" in reason
    assert "m1w01" in reason


def test_function_using_a_forbidden_api_is_a_forbidden_part():
    parts = forbidden_parts(CHAIN, FORBIDDEN, week="m1w01")
    assert "`attention` uses torch.nn.functional.scaled_dot_product_attention" in parts["attention"]
    assert f"(line {line_of(CHAIN, 'F.scaled_dot')})" in parts["attention"]


def test_parts_relying_on_a_forbidden_part_are_forbidden_transitively():
    parts = forbidden_parts(CHAIN, FORBIDDEN, week="m1w01")
    assert "`Block` relies on `Attention`" in parts["Block"]
    assert "torch.nn.MultiheadAttention" in parts["Block"] and "m1w01" in parts["Block"]
    assert "`ViT` relies on `Block`" in parts["ViT"]
    assert "torch.nn.MultiheadAttention" in parts["ViT"]


def test_unrelated_parts_are_not_forbidden():
    parts = forbidden_parts(CHAIN, FORBIDDEN, week="m1w01")
    assert set(parts) == {"Attention", "Block", "ViT", "attention"}


def test_owner_line_numbers():
    findings = [f for f in find_forbidden(CHAIN, FORBIDDEN) if f.owner != "<module>"]
    assert findings == [Finding(MHA, 16, "Attention"), Finding(SDPA, 33, "attention")]
    assert CHAIN.splitlines()[15].strip() == "self.mha = nn.MultiheadAttention(dim, 2)"
    assert CHAIN.splitlines()[32].strip() == "return F.scaled_dot_product_attention(q, k, v)"


def test_reason_names_the_first_use():
    source = src("""
        from torch import nn

        class A(nn.Module):
            def __init__(self):
                self.a = nn.TransformerEncoderLayer(8, 2)
                self.b = nn.MultiheadAttention(8, 2)
        """)
    assert "uses torch.nn.TransformerEncoderLayer (line 5)" in forbidden_parts(source, FORBIDDEN)["A"]


def test_no_findings_means_no_forbidden_parts():
    clean = CHAIN.replace("self.mha = nn.MultiheadAttention(dim, 2)", "self.mha = None").replace(
        "F.scaled_dot_product_attention(q, k, v)", "(q @ k.transpose(-2, -1)).softmax(-1) @ v")
    assert find_forbidden(clean, FORBIDDEN) == []
    assert forbidden_parts(clean, FORBIDDEN) == {}


def test_forbidden_import_taints_what_uses_the_imported_name():
    source = src("""
        import timm


        def backbone():
            return timm.create_model("vit_tiny_patch16_224")


        def head(x):
            return x
        """)
    parts = forbidden_parts(source, FORBIDDEN)
    assert "backbone" in parts and "head" not in parts
    assert "uses timm (line 5)" in parts["backbone"]


def test_transitive_reason_reads_once():
    # two levels up (ViT -> Block -> Attention), the reason once said "not allowed in m1w01" twice
    parts = forbidden_parts(CHAIN, FORBIDDEN, week="m1w01")
    for name in ("Block", "ViT"):
        assert parts[name].count("m1w01") == 1, parts[name]
        assert parts[name].count("torch.nn.MultiheadAttention") == 1, parts[name]
