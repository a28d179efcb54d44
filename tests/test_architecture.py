"""The house's shape, read from the code: which package may import which, and no cycles.

Every ``import`` and ``from ... import`` in ``sandbox/``, ``policies/``, ``jobs/`` and
``connectors/`` is read with :mod:`ast`, function-level ones included (an import
inside a function still ties the two modules together). The rules are those of the
README's layout section:

- ``policies`` imports nothing of ours; ``jobs`` only ``policies``; ``connectors``
  only ``policies``;
- inside ``sandbox``, the adapters (``api``, ``cli``, ``client``, ``console``) and the ``demo``
  are imported by nothing but adapters and the demo;
- ``sandbox.core`` imports nothing else of ``sandbox``;
- no import cycle, between modules or between packages.

``KNOWN_*`` list what is still against the rules, so a new violation fails at
once; each entry that is gone must be taken off (the test says so), so the lists
only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOPS = ("sandbox", "policies", "jobs", "connectors")
ADAPTERS = {"sandbox.api", "sandbox.cli", "sandbox.client", "sandbox.console", "sandbox.demo"}
PURE = {"policies": set(), "jobs": {"policies"}, "connectors": {"policies"}}
ROOT_MODULES = {"__init__.py", "__main__.py"}
PACKAGES = {"api", "cli", "client", "console", "core", "data", "demo", "guard", "he", "psi", "run"}
PACKAGES |= {"models", "registry", "verification", "workflow"}

# Imports against the direction that are still to be removed: (importer, imported) packages.
KNOWN_AGAINST: set[tuple[str, str]] = set()
# Import cycles still to be broken, each as the sorted modules of one strongly connected set.
KNOWN_CYCLES: set[tuple[str, ...]] = set()
# The same between packages.
KNOWN_PACKAGE_CYCLES: set[tuple[str, ...]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name inside one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found |= {owner for name in names if (owner := _owner(name)) and owner != module}
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def package_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "sandbox" and len(parts) > 1 and parts[1] in PACKAGES:
        return f"sandbox.{parts[1]}"
    return parts[0]


def _cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Strongly connected sets of more than one node (Tarjan, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.add(tuple(sorted(group)))
    return found


def _against() -> set[tuple[str, str]]:
    wrong = set()
    for module, targets in GRAPH.items():
        mine = package_of(module)
        for target in targets:
            theirs = package_of(target)
            if mine == theirs:
                continue
            if mine in PURE:
                if theirs not in PURE[mine]:
                    wrong.add((mine, theirs))
            elif theirs in ADAPTERS and mine not in ADAPTERS and mine != "sandbox":
                wrong.add((mine, theirs))
            elif mine == "sandbox.core" and theirs.startswith("sandbox"):
                wrong.add((mine, theirs))
    return wrong


def test_the_graph_sees_the_packages():
    assert "sandbox.core.ledger" in MODULES and "policies.errors" in MODULES
    assert "sandbox.core.ledger" in GRAPH["sandbox.run.execution"]


def test_the_rule_finds_a_wrong_import():
    """The checks can fail: a core module importing the CLI, a cycle of two."""
    GRAPH["sandbox.core.keys"].add("sandbox.cli.common")
    try:
        assert ("sandbox.core", "sandbox.cli") in _against()
    finally:
        GRAPH["sandbox.core.keys"].discard("sandbox.cli.common")
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == {("a", "b")}


def test_imports_point_one_way():
    wrong = _against()
    new = sorted(wrong - KNOWN_AGAINST)
    assert not new, f"imports against the layout's direction: {new}"
    gone = sorted(KNOWN_AGAINST - wrong)
    assert not gone, f"fixed, take them off KNOWN_AGAINST: {gone}"


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    new = sorted(cycles - KNOWN_CYCLES)
    assert not new, f"new import cycles: {new}"
    gone = sorted(KNOWN_CYCLES - cycles)
    assert not gone, f"broken, take them off KNOWN_CYCLES: {gone}"


def test_the_packages_have_no_cycle_between_them():
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        mine = package_of(module)
        packages.setdefault(mine, set()).update(
            theirs for t in targets if (theirs := package_of(t)) != mine
        )
    cycles = _cycles(packages)
    new = sorted(cycles - KNOWN_PACKAGE_CYCLES)
    assert not new, f"packages importing each other: {new}"
    gone = sorted(KNOWN_PACKAGE_CYCLES - cycles)
    assert not gone, f"broken, take them off KNOWN_PACKAGE_CYCLES: {gone}"


def test_sandbox_root_holds_only_packages():
    root = ROOT / "sandbox"
    files = {p.name for p in root.glob("*.py")}
    assert files <= ROOT_MODULES, f"modules at the root of sandbox/: {sorted(files - ROOT_MODULES)}"
    folders = {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == PACKAGES


def test_no_module_swaps_itself_through_sys_modules():
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        assert 'sys.modules.get("__main__")' not in text, module
        assert "sys.modules[" not in text or module.startswith("tests"), module


def test_the_store_knows_every_features_tables():
    """Core imports no feature: the store names the feature table modules it creates.
    A feature with a ``tables.py`` missing from that list would lose its tables."""
    from sandbox.core.store import FEATURE_TABLES

    found = {m for m in MODULES if m.startswith("sandbox.") and m.endswith(".tables")}
    assert set(FEATURE_TABLES) == found


MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _too_long(tree: ast.AST) -> list[tuple[str, int]]:
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_module_over_500_lines_and_no_function_over_80():
    """A module past 500 lines wants splitting into named parts; a function past 80
    into named steps."""
    long_modules, long_functions = [], []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n") + 1
        if lines > MAX_MODULE_LINES:
            long_modules.append((module, lines))
        long_functions += [(module, *f) for f in _too_long(ast.parse(text))]
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def test_the_size_rule_sees_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert _too_long(ast.parse(f"def f():\n{body}\n")) == [("f", MAX_FUNCTION_LINES + 1)]
    assert _too_long(ast.parse("def g():\n    return 1\n")) == []


# Private names still imported from another module: (importer, module, name). Only shrinks.
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()


def _private_imports() -> set[tuple[str, str, str]]:
    found = set()
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] not in TOPS:
                continue  # a library's own private module (the PSI library's) is its affair
            found |= {
                (module, base, alias.name)
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            }
    return found


def test_no_private_name_is_imported_from_another_module():
    """A name another module needs is public: ``_name`` says no one else relies on it."""
    found = _private_imports()
    assert not found - KNOWN_PRIVATE_IMPORTS, sorted(found - KNOWN_PRIVATE_IMPORTS)
    gone = sorted(KNOWN_PRIVATE_IMPORTS - found)
    assert not gone, f"made public, take them off KNOWN_PRIVATE_IMPORTS: {gone}"


# The README's stack: each package imports only those before it.
STACK = ("sandbox.core", "sandbox.registry", "sandbox.guard", "sandbox.data", "sandbox.run")
STACK += ("sandbox.workflow",)


def test_the_stacked_packages_import_only_those_below():
    wrong = set()
    for module, targets in GRAPH.items():
        mine = package_of(module)
        if mine not in STACK:
            continue
        for target in targets:
            theirs = package_of(target)
            if theirs in STACK and STACK.index(theirs) > STACK.index(mine):
                wrong.add((mine, theirs))
    assert not wrong, f"a package imports one above it in the stack: {sorted(wrong)}"
