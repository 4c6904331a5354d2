"""Finding forbidden APIs in student source, on the trusted side.

The check reads the source, so nothing the submission does at run time can switch it
off. It follows import aliases (`import torch.nn.functional as F`, `from torch.nn
import MultiheadAttention as M`) and plain assignments (`fn = torch.nn.functional`),
attribute chains, any attribute with a forbidden function's own name whatever it is
read from, writes as well as reads, and names passed as strings to getattr,
__import__, importlib or eval. Constructs that would hide what code reaches are refused
by `opaque.py`. A top-level definition that uses a forbidden API, or relies on one that
does, is a forbidden part: tests that need it earn nothing. A use in code that runs when
the notebook loads makes the whole submission forbidden. The worker's runtime guard is
a convenience that turns honest mistakes into clear errors early, not the boundary.
"""

from __future__ import annotations

import ast
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from autograder.submission.locate import describe_line
from autograder.submission.opaque import MODULE_LEVEL, dotted_name, find_opaque, link_parents

WHOLE_SUBMISSION = "*"  # the key of forbidden_parts that forbids every part

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
    tree = link_parents(ast.parse(source))
    aliases = _aliases(tree)
    own = _own_names(tree)
    findings: list[Finding] = []
    for statement in tree.body:
        owners = _bound_names(statement) or [MODULE_LEVEL]
        for node in ast.walk(statement):
            api = _match(node, aliases, forbidden, own)
            if api:
                findings.extend(Finding(api, getattr(node, "lineno", statement.lineno), o) for o in owners)
    return _unique(findings)


def forbidden_parts(source: str, forbidden: list[str], week: str = "this week") -> dict[str, str]:
    """Top-level names that use a forbidden API, hide what they reach, or rely on one that does,
    each with the reason in words; {WHOLE_SUBMISSION: reason} when code that runs on loading does."""
    if not forbidden:
        return {}
    tree = link_parents(ast.parse(source))
    hidden = find_opaque(source, _aliases(tree)) if needs_source_check(forbidden) else []
    at_load = [h for h in hidden if h.owner == MODULE_LEVEL]
    if at_load:
        h = at_load[0]
        return {WHOLE_SUBMISSION: f"{describe_line(source, h.line)} uses {h.construct} in code that runs when "
                                  "the notebook loads; "
                                  f"{week} forbids some APIs, so code that reaches things by computed names or "
                                  "through the import machinery cannot be graded: remove it"}
    findings = find_forbidden(source, forbidden)
    loading = [f for f in findings if f.owner == MODULE_LEVEL]
    if loading:
        f = loading[0]
        return {WHOLE_SUBMISSION: f"{describe_line(source, f.line)} uses {f.api} in code that runs when the "
                                  "notebook loads, "
                                  f"which {week} does not allow: remove it"}
    references = {name: refs for statement in tree.body
                  for name, refs in _references(statement).items()}
    apis = {f.owner: f"{f.api} ({describe_line(source, f.line)})" for f in reversed(findings)}
    reasons = {name: f"`{name}` uses {api}, which {week} does not allow: write it yourself with tensor operations"
               for name, api in apis.items()}
    for h in reversed(hidden):
        apis[h.owner] = f"{h.construct} ({describe_line(source, h.line)})"
        reasons[h.owner] = (f"`{h.owner}` uses {h.construct} ({describe_line(source, h.line)}), which hides what "
                            "the code reaches; "
                            f"{week} forbids some APIs, so it cannot be graded: write it with plain attribute names")
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


def needs_source_check(forbidden: list[str]) -> bool:
    """A forbidden package is absent from the worker's sandbox, which is enforcement enough; a
    forbidden name inside a package the week allows (a torch function) can be put back by code
    that hides what it reaches, so only such weeks refuse those constructs."""
    return any("." in name for name in forbidden)


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
    for _ in range(3):  # `f = torch.nn.functional`, then `g = f.scaled_dot_product_attention`
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                dotted = dotted_name(node.value, aliases)
                if not dotted:
                    continue
                root = dotted.split(".")[0]
                if root in {a.split(".")[0] for a in aliases.values()}:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        if isinstance(target, ast.Name) and target.id != root:
                            aliases[target.id] = dotted
    return aliases


def _own_names(tree: ast.AST) -> set[str]:
    """Names the student's code defines itself: functions, classes, methods, assigned names and attributes."""
    own = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
    return own


def _match(node: ast.AST, aliases: dict[str, str], forbidden: list[str],
           own: AbstractSet[str] = frozenset()) -> str | None:
    candidates: list[str] = []
    if isinstance(node, (ast.Attribute, ast.Name)):
        dotted = dotted_name(node, aliases)
        if dotted:
            candidates.append(dotted)
        leaf_hit = _leaf_hit(node, forbidden, own, aliases)
        if leaf_hit:
            return leaf_hit
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


def _leaf_hit(node: ast.AST, forbidden: list[str], own: AbstractSet[str], aliases: dict[str, str]) -> str | None:
    """A forbidden function's or class's own name, read or written on anything (torch re-exports
    it in several places, and an object can hold any module), unless the student's code defines
    something of that name itself (then a use on a chain from torch is still found by `_same_api`;
    the original stays out of reach without the constructs `opaque.py` refuses)."""
    for name in forbidden:
        if "." not in name:
            continue
        leaf = name.rsplit(".", 1)[1]
        if leaf in own:
            continue
        if isinstance(node, ast.Attribute) and node.attr == leaf:
            return name
        if isinstance(node, ast.Name) and node.id == leaf and node.id not in aliases:
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
        if all(_binds_names_only(t) for t in targets):
            return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        return []  # `F.x = ...` or `d[k] = ...` changes something else: it runs on loading, for everyone
    return []


def _binds_names_only(target: ast.AST) -> bool:
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(_binds_names_only(e) for e in target.elts)
    if isinstance(target, ast.Starred):
        return _binds_names_only(target.value)
    return isinstance(target, ast.Name)


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
