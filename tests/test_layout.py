"""The layout's rules, read from the source (no imports run): one-way imports, no cycles, no patching.

- reasoning_sft's subpackages import only the ones before them in LAYERS; the shared top-level
  modules import only each other and data (reasoning_sft/__init__.py says the same);
- no import cycle in the package or among the benchmarks, counting imports inside functions;
- no sys.path edit anywhere but tests/conftest.py;
- the package, the scripts and the benchmarks never assign to another module's attributes
  (a benchmark observes the trainer through its callbacks, it does not replace its functions).
"""

import ast

import pytest
from conftest import REPO_ROOT as REPO

PACKAGE = REPO / "reasoning_sft"
LAYERS = ("data", "train", "serve", "eval", "demo")
SHARED = ("errors", "progress", "digests", "artifacts", "plots")


def py_files(*dirs, recursive=True):
    for d in dirs:
        yield from sorted((REPO / d).rglob("*.py") if recursive else (REPO / d).glob("*.py"))


def module_name(path):
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


PACKAGE_MODULES = {module_name(p) for p in py_files("reasoning_sft")}


def imported_modules(path):
    """Every module of reasoning_sft that PATH imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: relative import (the package uses absolute imports)")
    return {m for m in found if m in PACKAGE_MODULES}


def layer(module):
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] in LAYERS:
        return parts[1]
    assert parts[1] in SHARED, f"{module}: a top-level module that is neither shared nor in a layer"
    return "shared"


def graph(modules_and_paths):
    return {name: imported_modules(path) - {name} for name, path in modules_and_paths}


def find_cycle(edges):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def package_graph():
    return graph((module_name(p), p) for p in py_files("reasoning_sft"))


def test_subpackages_import_only_the_layers_before_them():
    wrong = []
    for module, imports in package_graph().items():
        here = layer(module)
        for other in imports:
            there = layer(other)
            if here == "shared":
                ok = there in ("shared", "data")
            elif here in LAYERS:
                ok = there in ("shared", "package") or LAYERS.index(there) <= LAYERS.index(here)
            else:
                ok = True
            if not ok:
                wrong.append(f"{module} ({here}) imports {other} ({there})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_in_the_package():
    assert find_cycle(package_graph()) is None


def test_no_import_cycle_among_the_benchmarks():
    paths = {p.stem: p for p in py_files("benchmarks", recursive=False)}
    edges = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        edges[name] = {n for n in names if n in paths and n != name}
    assert find_cycle(edges) is None


def code_files():
    yield from py_files("reasoning_sft", "benchmarks", "training")
    yield from py_files(".", recursive=False)


def test_no_sys_path_edit_outside_conftest():
    edits = []
    for path in [*code_files(), *py_files("tests")]:
        if path == REPO / "tests" / "conftest.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                edits.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not edits, "sys.path used outside tests/conftest.py: " + ", ".join(edits)


def imported_module_names(tree):
    """Local names bound to a module: `import x.y as z`, `import x`, `from reasoning_sft.a import b` (b a module)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(alias.asname or alias.name for alias in node.names
                         if f"{node.module}.{alias.name}" in PACKAGE_MODULES)
    return names


@pytest.mark.parametrize("path", list(code_files()), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_attribute_is_replaced(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = imported_module_names(tree) - {"os"}  # os.environ[...] = ... is an item, not an attribute
    patched = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and getattr(target.value, "id", None) in modules:
                patched.append(f"line {node.lineno}: {target.value.id}.{target.attr} = ...")
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and node.args
                and getattr(node.args[0], "id", None) in modules):
            patched.append(f"line {node.lineno}: setattr({node.args[0].id}, ...)")
    assert not patched, "\n".join(patched)
