"""Finding forbidden APIs in student source, on the trusted side.

The check reads the source, so nothing the submission does at run time can switch it
off. It follows import aliases (`import torch.nn.functional as F`, `from torch.nn
import MultiheadAttention as M`), attribute chains, and names passed as strings to
getattr, __import__, importlib or eval. A top-level definition that uses a forbidden
API, or relies on one that does, is a forbidden part: tests that need it earn nothing.
The worker's runtime guard backs this up for uses that no reading of the source finds.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

DYNAMIC_CALLS = {"getattr", "hasattr", "__import__", "import_module", "eval", "exec", "compile",
                 "find_spec", "reload"}


@dataclass(frozen=True)
class Finding:
    api: str
    line: int
    owner: str  # the top-level name that contains it, or "<module>"


def find_forbidden(source: str, forbidden: list[str]) -> list[Finding]:
    """Every place in `source` that reaches one of the dotted names in `forbidden`."""
    if not forbidden:
        return []
    tree = ast.parse(source)
    aliases = _aliases(tree)
    findings: list[Finding] = []
    for statement in tree.body:
        owners = _bound_names(statement) or ["<module>"]
        for node in ast.walk(statement):
            api = _match(node, aliases, forbidden)
            if api:
                findings.extend(Finding(api, getattr(node, "lineno", statement.lineno), o) for o in owners)
    return _unique(findings)


def forbidden_parts(source: str, forbidden: list[str], week: str = "this week") -> dict[str, str]:
    """Top-level names that use a forbidden API or rely on one, each with the reason in words."""
    findings = [f for f in find_forbidden(source, forbidden) if f.owner != "<module>"]
    if not findings:
        return {}
    tree = ast.parse(source)
    references = {name: refs for statement in tree.body
                  for name, refs in _references(statement).items()}
    apis = {f.owner: f"{f.api} (line {f.line})" for f in reversed(findings)}
    reasons = {name: f"`{name}` uses {api}, which {week} does not allow: write it yourself with tensor operations"
               for name, api in apis.items()}
    changed = True
    while changed:
        changed = False
        for name, refs in references.items():
            if name in reasons:
                continue
            culprit = next((r for r in sorted(refs) if r in reasons and r != name), None)
            if culprit:
                apis[name] = apis[culprit]
                reasons[name] = (f"`{name}` relies on `{culprit}`, which uses {apis[culprit]}: "
                                 f"not allowed in {week}")
                changed = True
    return reasons


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> the dotted name it was imported as, anywhere in the file."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _match(node: ast.AST, aliases: dict[str, str], forbidden: list[str]) -> str | None:
    candidates: list[str] = []
    if isinstance(node, (ast.Attribute, ast.Name)) and isinstance(getattr(node, "ctx", None), ast.Load):
        dotted = _dotted(node, aliases)
        if dotted:
            candidates.append(dotted)
    elif isinstance(node, ast.Import):
        candidates += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
        candidates += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    elif isinstance(node, ast.Call) and _call_name(node.func) in DYNAMIC_CALLS:
        for arg in node.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                hit = _string_hit(arg.value, forbidden)
                if hit:
                    return hit
    for dotted in candidates:
        for name in forbidden:
            if _same_api(dotted, name):
                return name
    return None


def _same_api(dotted: str, name: str) -> bool:
    if dotted == name or dotted.startswith(name + "."):
        return True
    if "." in name:  # torch re-exports: torch.nn.modules.activation.MultiheadAttention, torch._C._nn...
        leaf = name.rsplit(".", 1)[1]
        root = name.split(".")[0]
        return dotted.split(".")[0] == root and dotted.rsplit(".", 1)[-1] == leaf
    return False


def _string_hit(text: str, forbidden: list[str]) -> str | None:
    for name in forbidden:
        leaf = name.rsplit(".", 1)[-1]
        if leaf in text or text == name or text.startswith(name + "."):
            return name
    return None


def _call_name(func: ast.AST) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _bound_names(statement: ast.stmt) -> list[str]:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [statement.name]
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in statement.names]
    if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


def _references(statement: ast.stmt) -> dict[str, set[str]]:
    used = {n.id for n in ast.walk(statement) if isinstance(n, ast.Name)}
    used |= {n.value.id for n in ast.walk(statement)
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    return {name: used for name in _bound_names(statement)}


def _unique(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out
