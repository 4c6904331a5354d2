"""From a submitted notebook (untrusted input) to one Python module, or a NotebookError a student can act on."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

from autograder.submission import notebook
from autograder.submission.notebook import NotebookError, extract_module, strip_magics


def write_notebook(path: Path, cells) -> Path:
    nb = new_notebook()
    nb.cells = list(cells)
    nbformat.write(nb, str(path))
    return path


def run(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<submission>", "exec"), namespace)
    return namespace


# -- what ends up in the module -----------------------------------------------------------------

def test_code_cells_are_joined_in_order(tmp_path):
    path = write_notebook(tmp_path / "s.ipynb", [
        new_code_cell("order = ['first']\nx = 1"),
        new_code_cell("order.append('second')\nx = x * 10"),
        new_code_cell("order.append('third')\nx = x + 2"),
    ])
    module = extract_module(path)
    assert module.code_cells == 3 and module.skipped_cells == 0
    assert module.source.index("'first'") < module.source.index("'second'") < module.source.index("'third'")
    ns = run(module.source)
    assert ns["order"] == ["first", "second", "third"]
    assert ns["x"] == 12


def test_markdown_and_raw_cells_are_ignored(tmp_path):
    path = write_notebook(tmp_path / "s.ipynb", [
        new_markdown_cell("# Title\n\nmarkdown_value = 999\n\nthis is not (python"),
        new_code_cell("y = 1"),
        new_raw_cell("raw_value = 5"),
        new_markdown_cell("More *prose*"),
    ])
    module = extract_module(path)
    assert module.code_cells == 1
    assert "markdown_value" not in module.source and "raw_value" not in module.source
    assert "Title" not in module.source
    ns = run(module.source)
    assert ns["y"] == 1 and "markdown_value" not in ns


@pytest.mark.parametrize("tag", ["demo", "skip-grading"])
def test_cells_tagged_demo_are_skipped(tmp_path, tag):
    path = write_notebook(tmp_path / "s.ipynb", [
        new_code_cell("def model():\n    return 3"),
        new_code_cell("raise RuntimeError('a long training run')\ndemo_value = 1",
                      metadata={"tags": [tag, "other"]}),
        new_code_cell("after = model() + 1"),
    ])
    module = extract_module(path)
    assert module.code_cells == 2 and module.skipped_cells == 1
    assert "demo_value" not in module.source and "training run" not in module.source
    ns = run(module.source)
    assert ns["after"] == 4


def test_other_tags_do_not_skip(tmp_path):
    path = write_notebook(tmp_path / "s.ipynb", [new_code_cell("kept = True", metadata={"tags": ["solution"]})])
    module = extract_module(path)
    assert module.skipped_cells == 0 and run(module.source)["kept"] is True


def test_ipython_lines_are_neutralised(tmp_path):
    path = write_notebook(tmp_path / "s.ipynb", [
        new_code_cell("%matplotlib inline\nimport math\n!pip install x\n%load_ext autoreload"),
        new_code_cell("def area(r):\n    return math.pi * r * r\narea?\nmath?"),
        new_code_cell("if True:\n    %time value = area(1)\n    value = area(2)\n    !ls -la"),
    ])
    module = extract_module(path)
    for ipython_only in ("%matplotlib", "!pip", "%load_ext", "area?", "math?", "%time", "!ls"):
        assert ipython_only not in module.source
    ns = run(module.source)
    assert ns["value"] == pytest.approx(4 * 3.141592653589793)
    assert callable(ns["area"])


def test_line_numbers_survive_magic_removal():
    code = "%matplotlib inline\nx = 1\n!pip install y\ny = 2\n"
    stripped = strip_magics(code)
    assert stripped.splitlines()[1] == "x = 1" and stripped.splitlines()[3] == "y = 2"
    assert len(stripped.splitlines()) == len(code.splitlines())


def test_ordinary_python_is_left_alone():
    code = "a = 10 % 3\nb = not a != 1\nc = 'what?'\nd = {'q': '%d' % 5}\n# comment?\nprint(a)"
    assert strip_magics(code) == code


@pytest.mark.parametrize("magic", ["%%writefile helper.py", "  %%bash", "%%html"])
def test_cell_magic_cells_are_dropped(tmp_path, magic):
    path = write_notebook(tmp_path / "s.ipynb", [
        new_code_cell("kept = 1"),
        new_code_cell(f"{magic}\ndropped = 2\nraise RuntimeError('never runs')"),
    ])
    module = extract_module(path)
    assert "dropped" not in module.source and "never runs" not in module.source
    assert module.code_cells == 1
    ns = run(module.source)
    assert ns["kept"] == 1 and "dropped" not in ns


@pytest.mark.parametrize("magic", ["%%time", "%%capture out"])
def test_timing_and_capture_cells_keep_their_code(tmp_path, magic):
    """In Jupyter these cells run their code; graded, they must too."""
    path = write_notebook(tmp_path / "s.ipynb", [new_code_cell(f"{magic}\nkept = 2")])
    ns = run(extract_module(path).source)
    assert ns["kept"] == 2


def test_whole_module_compiles_and_runs_with_expected_names(tmp_path):
    path = write_notebook(tmp_path / "vit.ipynb", [
        new_markdown_cell("# Week 1"),
        new_code_cell("%matplotlib inline\nimport torch\nfrom torch import nn"),
        new_code_cell("class Patchify(nn.Module):\n    def __init__(self, p):\n        super().__init__()\n"
                      "        self.p = p\n\n    def forward(self, x):\n"
                      "        b, c, h, w = x.shape\n        return x.reshape(b, c, h // self.p, self.p, w // self.p,"
                      " self.p)"),
        new_code_cell("def attention(q, k, v):\n    w = (q @ k.transpose(-2, -1)).softmax(-1)\n    return w @ v"),
        new_code_cell("x = torch.randn(2, 3, 8, 8)\nPatchify(4)(x).shape", metadata={"tags": ["demo"]}),
        new_code_cell("%%time\ntime_cell_ran = True"),
        new_code_cell("PATCH = 4\nPatchify?"),
    ])
    module = extract_module(path)
    compile(module.source, "vit.ipynb", "exec")
    ns = run(module.source)
    assert {"Patchify", "attention", "PATCH", "nn", "torch"} <= set(ns)
    assert "x" not in ns and ns["time_cell_ran"] is True
    import torch

    q = torch.randn(2, 5, 4)
    assert ns["attention"](q, q, q).shape == (2, 5, 4)


def test_empty_notebook_gives_an_empty_module(tmp_path):
    module = extract_module(write_notebook(tmp_path / "s.ipynb", []))
    assert module.code_cells == 0 and module.source.strip() == ""


def test_older_notebook_format_is_converted(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [new_code_cell("old = 3")]
    path = tmp_path / "s.ipynb"
    path.write_text(nbformat.writes(nbformat.convert(nb, 3), version=3))
    assert run(extract_module(path).source)["old"] == 3


def test_python_files_pass_through(tmp_path):
    text = "%not magic in a .py file? no: this line is a syntax error if parsed as a magic\n"
    path = tmp_path / "s.py"
    path.write_text("import math\n\n\ndef f(x):\n    return math.floor(x)  # ünïcödé\n")
    module = extract_module(path)
    assert module.source == path.read_text()
    assert module.code_cells == 1 and module.skipped_cells == 0
    assert run(module.source)["f"](2.7) == 2
    bad = tmp_path / "bad.py"
    bad.write_text(text)
    with pytest.raises(NotebookError, match="syntax error"):
        extract_module(bad)


# -- what a student is told -----------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(NotebookError, match="does not exist") as info:
        extract_module(tmp_path / "week1.ipynb")
    assert "week1.ipynb" in str(info.value)


def test_directory_is_not_a_submission(tmp_path):
    (tmp_path / "week1.ipynb").mkdir()
    with pytest.raises(NotebookError, match="does not exist"):
        extract_module(tmp_path / "week1.ipynb")


@pytest.mark.parametrize("content", [b"", b"   \n\t\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "week1.ipynb"
    path.write_bytes(content)
    with pytest.raises(NotebookError) as info:
        extract_module(path)
    assert "week1.ipynb" in str(info.value) and "empty" in str(info.value)


@pytest.mark.parametrize("content", ["hello", "{\"cells\": [", "{'single': 'quotes'}", "<html></html>"])
def test_not_json(tmp_path, content):
    path = tmp_path / "week1.ipynb"
    path.write_text(content)
    with pytest.raises(NotebookError) as info:
        extract_module(path)
    message = str(info.value)
    assert "week1.ipynb" in message and "JSON" in message and "line 1" in message


def test_not_json_reports_the_line(tmp_path):
    path = tmp_path / "week1.ipynb"
    path.write_text('{\n  "cells": [],\n  "metadata": {}\n  "nbformat": 4\n}')
    with pytest.raises(NotebookError, match="JSON.*line 4"):
        extract_module(path)


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2, 3]", '"a string"', "42", "null"])
def test_json_that_is_not_a_notebook(tmp_path, content):
    path = tmp_path / "week1.ipynb"
    path.write_text(content)
    with pytest.raises(NotebookError) as info:
        extract_module(path)
    assert "week1.ipynb" in str(info.value) and "not a valid Jupyter notebook" in str(info.value)


@pytest.mark.filterwarnings("ignore:Cell is missing an id field")
@pytest.mark.parametrize("cells", [
    "nope",
    [{"cell_type": "code"}],
    [{"cell_type": "bogus", "source": "", "metadata": {}}],
    [{"cell_type": "code", "source": 5, "metadata": {}, "outputs": [], "execution_count": None}],
])
def test_invalid_notebook_structure(tmp_path, cells):
    path = tmp_path / "week1.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
    with pytest.raises(NotebookError) as info:
        extract_module(path)
    message = str(info.value)
    assert "week1.ipynb" in message and "not a valid Jupyter notebook" in message
    assert "\n" not in message  # one sentence, never a traceback or a schema dump


def test_too_large(tmp_path, monkeypatch):
    monkeypatch.setattr(notebook, "MAX_NOTEBOOK_BYTES", 1 << 20)
    path = write_notebook(tmp_path / "week1.ipynb", [new_code_cell("x = 1\n" + "# padding\n" * 80_000)])
    assert path.stat().st_size > 1.2 * 2**20
    with pytest.raises(NotebookError) as info:
        extract_module(path)
    message = str(info.value)
    size = f"{path.stat().st_size / 2**20:.1f} MiB"
    assert "week1.ipynb" in message and size in message and "limit of 1 MiB" in message


def test_just_under_the_limit_is_fine(tmp_path, monkeypatch):
    path = write_notebook(tmp_path / "week1.ipynb", [new_code_cell("x = 1")])
    monkeypatch.setattr(notebook, "MAX_NOTEBOOK_BYTES", path.stat().st_size)
    assert run(extract_module(path).source)["x"] == 1


@pytest.mark.parametrize("suffix", [".ipynb", ".py"])
def test_not_utf8(tmp_path, suffix):
    path = tmp_path / f"week1{suffix}"
    path.write_bytes('{"cells": "café"}'.encode("latin-1") if suffix == ".ipynb" else b"x = '\xff\xfe'\n")
    with pytest.raises(NotebookError) as info:
        extract_module(path)
    assert f"week1{suffix}" in str(info.value) and "UTF-8" in str(info.value)


def test_syntax_error_names_cell_and_line(tmp_path):
    path = write_notebook(tmp_path / "week1.ipynb", [
        new_code_cell("a = 1"),
        new_code_cell("b = 2\nc = 3\ndef broken(x:\n    return x"),
    ])
    with pytest.raises(NotebookError) as info:
        extract_module(path)
    message = str(info.value)
    assert "code cell 2" in message and "line 3" in message and "syntax error" in message
    assert "def broken(x:" in message


def test_syntax_error_line_counts_lines_removed_as_magics(tmp_path):
    path = write_notebook(tmp_path / "week1.ipynb", [new_code_cell("%matplotlib inline\n!pip install q\nx = )")])
    with pytest.raises(NotebookError, match=r"code cell 1 .*line 3"):
        extract_module(path)


def test_syntax_error_in_a_demo_cell_is_ignored(tmp_path):
    path = write_notebook(tmp_path / "week1.ipynb", [
        new_code_cell("ok = 1"), new_code_cell("this is ( not python", metadata={"tags": ["demo"]})])
    assert run(extract_module(path).source)["ok"] == 1


# -- bugs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("code, name, expected", [
    ('msg = ("loss %.2f"\n       % 0.5)', "msg", "loss 0.50"),
    ("same = (1 + 1\n        != 2)", "same", False),
])
def test_continuation_lines_starting_with_an_operator(tmp_path, code, name, expected):
    path = write_notebook(tmp_path / "week1.ipynb", [new_code_cell(code)])
    assert run(extract_module(path).source)[name] == expected


@pytest.mark.parametrize("query", ["math.sqrt?", "math??", "?math", "torch.nn.Linear?"])
def test_other_help_query_forms(tmp_path, query):
    path = write_notebook(tmp_path / "week1.ipynb", [new_code_cell(f"import math\n{query}\nafter = 1")])
    assert run(extract_module(path).source)["after"] == 1


def test_multiline_string_content_is_kept(tmp_path):
    code = 'TEMPLATE = """\n%(name)s scored\n!important\n"""'
    path = write_notebook(tmp_path / "week1.ipynb", [new_code_cell(code)])
    assert run(extract_module(path).source)["TEMPLATE"] == "\n%(name)s scored\n!important\n"


def test_json_with_a_huge_integer(tmp_path):
    path = tmp_path / "week1.ipynb"
    path.write_text('{"nbformat": ' + "4" * 5000 + "}")
    with pytest.raises(NotebookError):
        extract_module(path)


def test_json_nested_too_deeply(tmp_path):
    path = tmp_path / "week1.ipynb"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(NotebookError):
        extract_module(path)
