"""The package layout (README, "Layout"): one folder per layer, each importing only from the
layers below it, no import cycles, few modules at the top, one reader of ``SOLO_SQSP_BASE``."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from solo_sqsp.config_lookup import REPO_ROOT

PACKAGE = REPO_ROOT / "solo_sqsp"
# Lowest first; a module may import from its own layer and the ones before it.
LAYERS = (
    {"untrusted", "compat", "config_lookup", "optim"},
    {"config"},
    {"metrics"},
    {"models", "losses", "augment", "data"},
    {"teachers"},
    {"synthetic"},
    {"methods"},
    {"training"},
    {"evaluation"},
    {"analysis"},
)
LEVEL = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (a submodule named in
    ``from package import submodule`` counts as the submodule)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                named = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t for t in named if t in modules]
                if len(targets) < len(named):
                    targets.append(node.module)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return {name: graph[name] for name in modules}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LEVEL.get(parts[1]) if len(parts) > 1 else None  # the package's __init__: none


def test_every_folder_and_top_module_has_a_layer() -> None:
    tops = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    folders = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert len(tops) <= 3, tops  # plus __init__.py: at most 4 modules at the top
    assert tops | folders <= set(LEVEL), (tops | folders) - set(LEVEL)


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = [
        (module, target)
        for module, targets in import_graph().items()
        for target in targets
        if layer(module) is not None and layer(target) is not None and layer(target) > layer(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            assert state.get(target) != 1, " -> ".join([*path, module, target])
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_only_compat_reads_the_base_switch() -> None:
    readers = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "environ" in path.read_text() and '"SOLO_SQSP_BASE"' in path.read_text()
    ]
    assert readers == ["compat.py"]
