"""The package's layers: every module imports, no import circle, no layer imports one above it.

Imports are read from each module's source (module-level and inside functions alike), so a lazy
import that would close a circle or reach upwards is caught as well as a top-level one.
"""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

LIMIT = 400  # lines per file: past that a module usually holds two concepts
FUNCTION_LIMIT = 60  # lines per function, def to last line: past that it holds steps worth naming


# The top-level folders are installed as sub-packages of deepfusion from their own places
# (pyproject's package-dir), so each one is walked from its own path.
ROOTS = ("deepfusion", "deepfusion.model", "deepfusion.theory", "deepfusion.experiments", "deepfusion.paper_figures")


def _modules() -> dict[str, Path]:
    out = {}
    for root in ROOTS:
        package = importlib.import_module(root)
        out[root] = Path(package.__file__)
        for info in pkgutil.walk_packages(package.__path__, root + "."):
            if info.name == "deepfusion.__main__":  # running it is the command line itself
                continue
            out[info.name] = Path(importlib.util.find_spec(info.name).origin)
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The deepfusion modules ``name`` imports (a ``from package import module`` counts as the module)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_walk_finds_every_room():
    for room in (
        "deepfusion.commands",
        "deepfusion.model.network",
        "deepfusion.model.data",
        "deepfusion.model.runs",
        "deepfusion.theory",
        "deepfusion.experiments",
        "deepfusion.paper_figures",
    ):
        assert any(m.startswith(room + ".") for m in MODULES), room


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports(name):
    importlib.import_module(name)


def test_no_import_circle():
    # packages' __init__ are left out: importing a submodule always runs its package first
    graph = {
        m: {d for d in deps if MODULES[d].name != "__init__.py"}
        for m, deps in GRAPH.items()
        if MODULES[m].name != "__init__.py"
    }
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                cycle = stack[stack.index(d) :] + [d]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


# room -> rooms it must never import
FORBIDDEN = {
    "deepfusion.theory": (
        "deepfusion.model",
        "deepfusion.experiments",
        "deepfusion.paper_figures",
        "deepfusion.commands",
    ),
    "deepfusion.model.network": (
        "deepfusion.model.runs",
        "deepfusion.model.data",
        "deepfusion.experiments",
        "deepfusion.paper_figures",
        "deepfusion.commands",
    ),
    "deepfusion.model.data": (
        "deepfusion.model.runs",
        "deepfusion.experiments",
        "deepfusion.paper_figures",
        "deepfusion.commands",
    ),
    "deepfusion.model.runs": ("deepfusion.experiments", "deepfusion.paper_figures", "deepfusion.commands"),
    "deepfusion.experiments": ("deepfusion.paper_figures", "deepfusion.commands"),
    "deepfusion.paper_figures": ("deepfusion.commands",),
}


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_no_room_imports_a_room_above_it(room):
    bad = [
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        if m == room or m.startswith(room + ".")
        for d in deps
        for above in FORBIDDEN[room]
        if d == above or d.startswith(above + ".")
    ]
    assert not bad, "; ".join(bad)


def test_only_the_command_line_imports_command_modules():
    bad = [
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        for d in deps
        if d.startswith("deepfusion.commands.") and not (m.startswith("deepfusion.commands") or m == "deepfusion.cli")
    ]
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_file_stays_under_the_line_limit(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= LIMIT, f"{MODULES[name]} has {lines} lines; split it by concept"


def long_functions(source: str) -> list[str]:
    """The functions (methods and nested ones included) of ``source`` longer than FUNCTION_LIMIT lines."""
    return [
        f"{node.name} (line {node.lineno}, {node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > FUNCTION_LIMIT
    ]


def test_the_function_limit_sees_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LIMIT))
    assert long_functions(f"def f():\n{body}\n") == [f"f (line 1, {FUNCTION_LIMIT + 1} lines)"]
    assert long_functions(f"def f():\n{body}\n".replace("    x0 = 0\n", "")) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_functions_stay_under_the_line_limit(name):
    long = long_functions(MODULES[name].read_text())
    assert not long, f"{MODULES[name]}: {', '.join(long)}; split into named steps"
