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


# -- constructs that hide what code reaches (issue 10, item 1) ---------------------------------------

A28 = src('''
    import sys
    import importlib
    import torch

    def attention(q, k, v):
        return (q @ k.transpose(-2, -1)).softmax(-1) @ v

    sys.meta_path[:] = [f for f in sys.meta_path if "Forbidden" not in type(f).__name__]
    namespace = globals()
    namespace["vi" + "t"] = importlib.import_module("ti" + "mm")
    setattr(torch.nn.functional, "scaled_dot_" + "product_attention", torch.ops.aten.scaled_dot_product_attention)

    class Block(vit.models.vision_transformer.Block):
        pass
    ''')


def test_the_red_team_attack_forbids_the_whole_submission():
    parts = forbidden_parts(A28, FORBIDDEN, week="m1w01")
    assert set(parts) == {"*"}
    assert "runs when the notebook loads" in parts["*"] and "line 8 uses sys.meta_path" in parts["*"]


HIDING_IN_A_PART = [
    ('import torch\n\ndef f(q):\n    return getattr(torch.nn.functional, "scaled_dot_" + "product_attention")(q, q, q)',
     "getattr() with a computed name"),
    ("import torch\n\ndef f(q):\n    return torch.ops.aten.scaled_dot_product_attention(q, q, q)", "torch.ops"),
    ("import torch\n\ndef f(q):\n    return torch._scaled_dot_product_flash_attention_for_cpu(q, q, q)",
     "torch's private name"),
    ("import torch.nn.functional as F\n\ndef f(q):\n    return F.__dict__['scaled_dot' + '_product_attention']",
     ".__dict__"),
    ("import torch\n\ndef f(q):\n    return vars(torch.nn.functional)['x']", "vars()"),
    ("import operator, torch\n\ndef f(q):\n    return operator.attrgetter('nn.x')(torch)", "operator.attrgetter"),
    ("import functools, torch\n\ndef f(q):\n    return functools.reduce(getattr, ['nn', 'x'], torch)",
     "getattr passed as a value"),
    ("def f(q):\n    return __import__('ti' + 'mm')", "__import__"),
    ("def f(q):\n    import importlib\n    return importlib.import_module('ti' + 'mm')", "importlib"),
    ("import sys\n\ndef f(q):\n    return sys.modules['ti' + 'mm']", "sys.modules"),
    ("import inspect, torch\n\ndef f(q):\n    return dict(inspect.getmembers(torch))['x']", "inspect.getmembers"),
    ("import pickle\n\ndef f(q):\n    return pickle.loads(q)", "pickle"),
    ("def f(q):\n    return eval('q')", "eval"),
    ("def f(q):\n    return f.__globals__['torch']", ".__globals__"),
    ("def f(q):\n    return object.__getattribute__(q, 'x' + 'y')", ".__getattribute__"),
    ("import gc\n\ndef f(q):\n    return gc.get_objects()", "gc"),
    ("import ctypes\n\ndef f(q):\n    return ctypes.pythonapi", "ctypes"),
    ("def f(q):\n    from torch.nn.functional import *\n    return q", "from torch.nn.functional import *"),
    ("import torch\n\ndef f(q):\n    return torch.library.Library('aten', 'IMPL')", "torch.library"),
    ("import torch\n\ndef f(q):\n    return torch.jit.CompilationUnit('def g(q): return torch.ops.aten.x(q)')",
     "torch.jit.CompilationUnit"),
    ("import typing\n\ndef f(q):\n    return typing.get_type_hints(q)['q']", "typing.get_type_hints"),
    ("import pydoc\n\ndef f(q):\n    return pydoc.locate('torch.' + 'nn')", "pydoc"),
    ("import string, torch\n\ndef f(q):\n    return string.Formatter().get_field('0.nn', [torch], {})",
     "string.Formatter"),
]


@pytest.mark.parametrize("source, construct", HIDING_IN_A_PART, ids=[h[1] for h in HIDING_IN_A_PART])
def test_hiding_inside_a_function_forbids_that_part_and_its_users(source, construct):
    source = src(source) + "\n\ndef g(q):\n    return f(q) + 1\n\n\ndef h(q):\n    return q\n"
    parts = forbidden_parts(source, FORBIDDEN, week="m1w01")
    assert {"f", "g"} <= set(parts) and "h" not in parts and "*" not in parts, parts
    assert construct in parts["f"] and "hides what the code reaches" in parts["f"]
    assert "relies on `f`" in parts["g"]


@pytest.mark.parametrize("source, construct", HIDING_IN_A_PART, ids=[h[1] for h in HIDING_IN_A_PART])
def test_hiding_at_load_forbids_everything(source, construct):
    body = src(source).replace("def f(q):\n    ", "q = 1\nif True:\n    ")
    parts = forbidden_parts(body + "\n\ndef h(q):\n    return q\n", FORBIDDEN, week="m1w01")
    assert set(parts) == {"*"}, parts


FORBIDDEN_REACHED_OTHERWISE = [
    ("import torch\n\ndef f(q):\n    fn = torch.nn.functional\n    return fn.scaled_dot_product_attention(q, q, q)",
     SDPA, "an assigned alias"),
    ("import torch\n\ndef f(q):\n    return [torch.nn.functional][0].scaled_dot_product_attention(q, q, q)",
     SDPA, "an attribute of any expression"),
    ("import torch\n\ndef f(q):\n    return torch._C._nn.scaled_dot_product_attention(q, q, q)", SDPA, "torch._C"),
    ("import torch\n\ndef f(q):\n    torch.nn.functional.scaled_dot_product_attention = q\n    return q", SDPA,
     "a write"),
]


@pytest.mark.parametrize("source, api, how", FORBIDDEN_REACHED_OTHERWISE, ids=[h[2] for h in FORBIDDEN_REACHED_OTHERWISE])
def test_forbidden_api_reached_without_its_import_name(source, api, how):
    parts = forbidden_parts(src(source), FORBIDDEN, week="m1w01")
    assert set(parts) == {"f"}
    assert api in parts["f"] or "hides" in parts["f"]


def test_restoring_a_forbidden_function_at_load_forbids_everything():
    source = "import torch\nimport torch.nn.functional as F\nF.scaled_dot_product_attention = torch.softmax\n"
    assert set(forbidden_parts(source + "\ndef h(q):\n    return q\n", FORBIDDEN)) == {"*"}


HONEST_DYNAMIC = [
    ('import torch\n\nclass M(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n'
     '        for i in range(2):\n            setattr(self, f"block{i}", torch.nn.Linear(2, 2))\n\n'
     '    def forward(self, x):\n        return getattr(self, "block" + "0")(x)\n', "setattr on self"),
    ("import sys\nimport math\n\ndef f(x):\n    print(sys.version, file=sys.stderr)\n    return math.sqrt(x)",
     "sys.version and sys.stderr"),
    ("import torch\n\ndef f(x):\n    return getattr(x, 'shape')", "getattr with a literal name"),
    ("import torch\n\nact = lambda x: x * torch.sigmoid(x)\n\ndef f(x):\n    return (lambda y: y + 1)(act(x))",
     "lambdas"),
    ("import torch\n\nclass A(torch.nn.Module):\n    def scaled_dot_product_attention(self, q):\n        return q\n\n"
     "    def forward(self, q):\n        return self.scaled_dot_product_attention(q)\n", "an own method of that name"),
    ("import torch\n\ndef f(x):\n    return type(x).__name__ + x.__class__.__name__", "__name__ and __class__"),
    ("import torch\n\ndef f(x):\n    code = torch.cat([x, x])\n    gc, pickle = code.sum(), code.mean()\n"
     "    return code.to(x.dtype) + gc + pickle", "variables named like modules that reach code"),
    ("import torch\n\ndef f(x):\n    timm = [torch.nn.Linear(2, 2)]\n    return timm[0](x)",
     "a variable named like a forbidden package"),
]


@pytest.mark.parametrize("source, label", HONEST_DYNAMIC, ids=[h[1] for h in HONEST_DYNAMIC])
def test_honest_code_is_not_refused(source, label):
    assert forbidden_parts(src(source), FORBIDDEN) == {}


def test_weeks_that_forbid_nothing_refuse_nothing():
    assert forbidden_parts(A28, []) == {}


def test_weeks_that_forbid_only_packages_leave_the_source_check_to_the_sandbox():
    # the package is absent from the worker's sandbox; ctypes or importlib cannot bring it back
    assert forbidden_parts("import ctypes\n\ndef f():\n    return ctypes.CDLL(None)\n", ["timm"]) == {}
