"""Constructs that hide, from a reading of the source, what the code reaches.

A week that forbids APIs checks a submission by reading it (`forbidden.py`), which works
only if every name the code reaches is written in it. Import machinery, attribute names
computed at run time, namespace dictionaries, code and frame objects, torch's operator
registry and its private names let code reach any function through a string built
while it runs, and put back what the worker's guard took away. In such a week these
constructs are refused: inside a top-level function or method, that part (and what
relies on it) earns nothing; anywhere that runs when the notebook is loaded, the whole
submission does, since it may change what every part sees.

This check runs on the trusted side, so nothing the submission does can switch it off.
Weeks that forbid only whole packages do not run it: those packages are absent from the
worker's sandbox, which no code can reach around.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TypeVar

MODULE_LEVEL = "<module>"

# Names that, called or merely passed around, reach objects by strings or replace namespaces.
OPAQUE_NAMES = {
    "__import__": "__import__", "eval": "eval", "exec": "exec", "compile": "compile",
    "globals": "globals()", "vars": "vars()", "locals": "locals()", "__builtins__": "__builtins__",
    "breakpoint": "breakpoint()",
}
# Attributes that expose namespaces, code, frames or the class tree.
OPAQUE_ATTRIBUTES = {
    "__dict__", "__getattribute__", "__getattr__", "__setattr__", "__delattr__", "__subclasses__",
    "__globals__", "__code__", "__closure__", "__builtins__", "__reduce__", "__reduce_ex__",
    "__loader__", "__spec__", "__import__", "f_globals", "f_locals", "f_back", "f_builtins",
    "gi_frame", "cr_frame", "tb_frame", "tb_next", "__defaults__", "__kwdefaults__", "__annotations__",
}
# Modules (or their members) whose job is reaching code by name.
OPAQUE_MODULES = {
    "importlib", "imp", "pkgutil", "runpy", "zipimport", "builtins", "gc", "ctypes", "_ctypes",
    "pickle", "_pickle", "copyreg", "marshal", "shelve", "dill", "cloudpickle", "code", "codeop",
    "sys.modules", "sys.meta_path", "sys.path_hooks", "sys.path", "sys.path_importer_cache",
    "sys._getframe", "sys.settrace", "sys.setprofile", "sys.addaudithook",
    "inspect.getmembers", "inspect.getattr_static", "inspect.currentframe", "inspect.stack",
    "inspect.get_annotations", "typing.get_type_hints", "typing.ForwardRef", "pydoc", "string.Formatter",
    "unittest.mock", "logging.config", "pkg_resources",
    "operator.attrgetter", "operator.methodcaller",
    "types.FunctionType", "types.CodeType", "types.ModuleType", "types.LambdaType",
    "torch.ops", "torch._ops", "torch._C", "torch.library", "torch._library", "torch.utils.cpp_extension",
    "torch.hub", "torch.package", "torch.load", "torch.jit.load", "torch.jit.CompilationUnit",
}
# Calls whose attribute name is an argument: fine with a literal, opaque with anything else.
NAMED_ACCESS = {"getattr": 1, "setattr": 1, "delattr": 1, "hasattr": 1}


@dataclass(frozen=True)
class Opaque:
    construct: str  # in words, as a student would recognise it
    line: int
    owner: str      # the top-level name whose body holds it, or MODULE_LEVEL


def find_opaque(source: str, aliases: dict[str, str]) -> list[Opaque]:
    """Every construct in `source` that hides what it reaches; `aliases` maps local names to
    the dotted names they were imported or assigned as."""
    tree = link_parents(ast.parse(source))
    rebinds = rebinds_self(tree)
    found = []
    for statement in tree.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)) and not any(a.name == "*" for a in statement.names):
            for alias in statement.names:  # a top-level import only binds a name: its users are judged
                single = type(statement)(**{**vars(statement), "names": [alias]})
                construct = _construct(single, aliases, rebinds)
                if construct:
                    found.append(Opaque(construct, statement.lineno, (alias.asname or alias.name).split(".")[0]))
            continue
        for node, owner in _nodes_with_owner(statement):
            construct = _construct(node, aliases, rebinds)
            if construct:
                found.append(Opaque(construct, getattr(node, "lineno", statement.lineno), owner))
    return found


def rebinds_self(tree: ast.AST) -> bool:
    """Whether the code assigns to `self` or `cls`, which then no longer name the student's own object."""
    return any(isinstance(n, ast.Name) and n.id in ("self", "cls") and isinstance(n.ctx, (ast.Store, ast.Del))
               for n in ast.walk(tree))


def _nodes_with_owner(statement: ast.stmt):
    """Each node of a top-level statement, with the part it belongs to: code in a function's
    body runs only when that part is used; everything else runs when the notebook loads."""
    name = getattr(statement, "name", None)

    def visit(node: ast.AST, owner: str):
        yield node, owner
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            body = node.body if isinstance(node.body, list) else [node.body]
            for child in ast.iter_child_nodes(node):
                inside = any(child is b for b in body)
                yield from visit(child, name if inside and name else owner)
        else:
            for child in ast.iter_child_nodes(node):
                yield from visit(child, owner)

    yield from visit(statement, MODULE_LEVEL)


def _construct(node: ast.AST, aliases: dict[str, str], self_rebound: bool) -> str | None:
    if isinstance(node, ast.Name) and node.id in OPAQUE_NAMES and node.id not in aliases:
        return OPAQUE_NAMES[node.id]
    if isinstance(node, ast.Attribute) and node.attr in OPAQUE_ATTRIBUTES:
        return f".{node.attr}"
    if isinstance(node, ast.Name) and node.id in NAMED_ACCESS and not _is_call_target(node):
        return f"{node.id} passed as a value"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in NAMED_ACCESS:
        index = NAMED_ACCESS[node.func.id]
        name = node.args[index] if len(node.args) > index else None
        literal = isinstance(name, ast.Constant) and isinstance(name.value, str)
        on_self = (node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls")
                   and not self_rebound)
        if not literal and not on_self:
            return f"{node.func.id}() with a computed name"
    dotted = _resolved(node, aliases)
    if dotted:
        for module in OPAQUE_MODULES:
            if dotted == module or dotted.startswith(module + "."):
                return module
        parts = dotted.split(".")
        if parts[0] == "torch" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:]):
            return f"torch's private name {dotted}"
    if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
        return f"from {node.module} import *"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [
            f"{node.module}.{a.name}" if node.module else a.name for a in node.names]
        for module in modules:  # `import sys` is fine: `sys.modules` is what is refused
            hit = next((o for o in OPAQUE_MODULES if module == o or module.startswith(o + ".")), None)
            if hit:
                return hit
    return None


def _is_call_target(node: ast.Name) -> bool:
    parent = getattr(node, "_parent", None)
    return isinstance(parent, ast.Call) and parent.func is node


def _resolved(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The dotted name an outermost attribute chain or name reads, through aliases."""
    if not isinstance(node, (ast.Attribute, ast.Name)):
        return None
    if isinstance(getattr(node, "_parent", None), ast.Attribute):
        return None  # judged once, at the outermost link of the chain
    return dotted_name(node, aliases)


def dotted_name(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """`F.softmax` as `torch.nn.functional.softmax`: an attribute chain on a name that an import
    (or an assignment from one) bound, through aliases. A chain on any other name is None: a
    variable called `code` or `transformers` is not the module of that name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    parts.append(aliases[node.id])
    return ".".join(reversed(parts))


Tree = TypeVar("Tree", bound=ast.AST)


def link_parents(tree: Tree) -> Tree:
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            child._parent = parent  # type: ignore[attr-defined]
    return tree
