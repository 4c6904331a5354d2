"""Known-bug variants of a week's answer key, which its hidden suite must catch.

A mutant is a small YAML file in `assignments/<week>/mutants/`: the bug in words, the
hidden tests that should catch it, and text replacements applied to the answer key's
module. Being a patch, not a copy, it follows the reference as it changes, and a
replacement that no longer applies is reported instead of silently testing old code.

    bug: "attention() forgets the 1/sqrt(d) scale on the scores"
    catches: [test_attention_hand_computed, test_attention_matches_sdpa]
    replace:
      - find: "scores = (q * scale) @ k.transpose(-2, -1)"
        with: "scores = q @ k.transpose(-2, -1)"

A one-line `find` may be part of a line; a block of lines matches at any indentation.
`course verify` runs a mutant's catches cheapest kind first (shape, value, grad, convergence)
and, within a kind, in the order listed, until one fails: list the quicker tests first.
"""

from __future__ import annotations

import copy
import textwrap
from typing import Any
from dataclasses import dataclass
from pathlib import Path

import yaml


class MutantError(Exception):
    """A mutant file is malformed or no longer applies to the answer key."""


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str
    catches: list[str]
    replacements: list[tuple[str, str]]

    def apply(self, source: str) -> str:
        """The answer key's module with this bug in it."""
        for find, replacement in self.replacements:
            source = self._replace_once(source, find, replacement)
        return source

    def apply_to_notebook(self, notebook):
        """A copy of the answer key's notebook with this bug in it: each replacement must
        apply in exactly one code cell. (How a student's notebook with this bug would look.)"""
        notebook = copy.deepcopy(notebook)
        for find, replacement in self.replacements:
            hits = []
            for cell in (c for c in notebook.cells if c.cell_type == "code"):
                try:
                    hits.append((cell, self._replace_once(cell.source, find, replacement)))
                except MutantError:
                    continue
            if len(hits) != 1:
                raise MutantError(f"mutant {self.name} does not apply to exactly one cell of the answer key "
                                  f"(its text {textwrap.dedent(find).strip()[:80]!r} is in {len(hits)})")
            cell, source = hits[0]
            cell.source = source
        return notebook

    def _replace_once(self, source: str, find: str, replacement: str) -> str:
        """Replace `find` where it occurs exactly once. A one-line `find` matches anywhere in a
        line; a block matches whole lines at any indentation, and `with` takes that indentation."""
        find = textwrap.dedent(find).strip("\n")
        replacement = textwrap.dedent(replacement).strip("\n")
        lines = source.split("\n")
        block = find.split("\n")
        hits: list[tuple[int, Any]]  # (line, column) of a one-line `find`; (line, indent) of a block
        if len(block) == 1:
            hits = [(i, line.index(find)) for i, line in enumerate(lines) if find in line]
            count = sum(line.count(find) for line in lines)
        else:
            hits = [(i, _indent(lines[i])) for i in range(len(lines) - len(block) + 1)
                    if _block_matches(lines[i:i + len(block)], block)]
            count = len(hits)
        if count != 1:
            where = "is not in" if count == 0 else f"appears {count} times in"
            raise MutantError(f"mutant {self.name} no longer applies: its text {find[:80]!r} {where} the answer key")
        i, at = hits[0]
        if len(block) == 1:
            indent = _indent(lines[i])
            new = replacement.replace("\n", "\n" + indent)
            lines[i] = lines[i][:at] + new + lines[i][at + len(find):]
        else:
            indent = at
            lines[i:i + len(block)] = [indent + r if r else r for r in replacement.split("\n")]
        return "\n".join(lines)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _block_matches(lines: list[str], block: list[str]) -> bool:
    indent = _indent(lines[0])
    return all((line == indent + want) if want else not line.strip() for line, want in zip(lines, block))


def load_mutants(folder: Path) -> list[Mutant]:
    """Every `*.yaml` mutant in `folder`, validated."""
    return [_load(path) for path in sorted(Path(folder).glob("*.yaml"))]


def _load(path: Path) -> Mutant:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MutantError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"bug", "catches", "replace"}:
        raise MutantError(f"{path}: needs exactly the keys bug, catches and replace")
    replace = data["replace"]
    if (not isinstance(replace, list) or not replace
            or not all(isinstance(r, dict) and set(r) == {"find", "with"} for r in replace)):
        raise MutantError(f"{path}: replace must be a list of {{find, with}} items")
    catches = data["catches"]
    if not isinstance(catches, list) or not catches or not all(isinstance(c, str) for c in catches):
        raise MutantError(f"{path}: catches must list the hidden tests that should catch the bug")
    return Mutant(path.stem, str(data["bug"]), catches, [(str(r["find"]), str(r["with"])) for r in replace])
