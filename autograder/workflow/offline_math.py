"""Math in feedback pages that renders with no network: TeX becomes inline SVG.

nbgrader's feedback template typesets `$...$` with MathJax from a CDN, so a page opened
offline shows raw TeX. Before the page is rendered, each formula of a markdown cell is drawn
by matplotlib's mathtext into an SVG image inside the page (its alt text is the TeX). What
mathtext cannot draw stays as TeX in a code span. The markdown may be a student's (a written
answer), so formulas are bounded in length and in number.
"""

from __future__ import annotations

import base64
import html
import io
import re

MATH = re.compile(r"\$\$(?P<display>.+?)\$\$|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?!\d)", re.S)
MAX_TEX_CHARS = 400      # a longer formula is left as TeX
MAX_FORMULAS = 300       # per notebook: a page stays small whatever a submission holds
FONT_SIZE = 13


def render_math(notebook) -> int:
    """Replace the formulas of every markdown cell in place; returns how many were drawn."""
    budget = [MAX_FORMULAS]
    drawn = 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and "$" in cell.source:
            cell.source, count = _render_cell(cell.source, budget)
            drawn += count
    return drawn


def _render_cell(source: str, budget: list[int]) -> tuple[str, int]:
    drawn = 0

    def replace(match: re.Match) -> str:
        nonlocal drawn
        display = match.group("display") is not None
        tex = (match.group("display") if display else match.group("inline")).strip()
        image = _svg(tex) if budget[0] > 0 and len(tex) <= MAX_TEX_CHARS else None
        if image is None:
            return f"<code>{html.escape(match.group(0))}</code>"
        budget[0] -= 1
        drawn += 1
        tag = (f'<img class="tex" alt="{html.escape(tex, quote=True)}" style="vertical-align: middle" '
               f'src="data:image/svg+xml;base64,{image}">')
        return f'<div style="text-align: center">{tag}</div>' if display else tag

    return MATH.sub(replace, source), drawn


def _svg(tex: str) -> str | None:
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    buffer = io.BytesIO()
    try:
        mathtext.math_to_image(f"${tex}$", buffer, prop=FontProperties(size=FONT_SIZE), format="svg")
    except Exception:  # TeX that mathtext does not know (environments, macros): shown as TeX
        return None
    return base64.b64encode(buffer.getvalue()).decode("ascii")
