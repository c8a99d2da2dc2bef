"""The package's layers (CONTRIBUTING.md, "Layout"; docs/architecture.md): no import circles between modules, and
every import goes downward: formats → classifiers → agent / robustness → reports / hardening → service → entry
points. Read from the source (ast), so a function-level import counts as much as one at the top."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "backend" / "ecglens"
SERVICE = 5
# The first matching prefix gives a module's layer (docs/architecture.md, "Layers and what may import what").
LAYERS: tuple[tuple[str, int], ...] = (
    ("ecglens.cli", 6),
    ("ecglens.service", SERVICE),
    ("ecglens.migrations", SERVICE),
    ("ecglens.hardening", 4),
    ("ecglens.reports", 4),
    ("ecglens.agent", 3),
    ("ecglens.baselines", 3),
    ("ecglens.metrics", 3),
    ("ecglens.robustness", 3),
    ("ecglens.screening", 3),
    ("ecglens.explanation", 3),
    ("ecglens.classifiers", 2),
    ("ecglens.targets", 2),
    ("ecglens.formats", 1),
    ("ecglens.datasets", 1),
    ("ecglens.distortions", 1),
    ("ecglens.vision", 1),
    ("ecglens.ecg", 0),
    ("ecglens.errors", 0),
    ("ecglens.qrs", 0),
    ("ecglens.intervals", 0),
    ("ecglens.threads", 0),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "versions" in path.relative_to(PACKAGE).parts:  # Alembic revisions: scripts, not modules
            continue
        out[_module_name(path)] = path
    return out


MODULES = _sources()


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """Import nodes under ``if TYPE_CHECKING:`` (annotations only: never run)."""
    out: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(n for child in node.body for n in ast.walk(child))
    return out


def _root_names() -> dict[str, str]:
    """What each public name of ``ecglens`` (the package's ``__init__``) stands for: the module it comes from.
    A name defined in ``__init__`` itself (``__version__``) maps to nothing."""
    tree = ast.parse(MODULES["ecglens"].read_text())
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ecglens."):
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.FunctionDef):  # a lazy wrapper: the module its body imports from
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.startswith("ecglens."):
                    names[node.name] = inner.module
    return names


ROOT_NAMES = _root_names()


def _through_root(name: str) -> str | None:
    """The module behind ``ecglens.<name>``: a submodule, or what a public name of the package stands for."""
    if f"ecglens.{name}" in MODULES:
        return f"ecglens.{name}"
    return ROOT_NAMES.get(name)


def _imports(module: str) -> Iterator[tuple[str, int]]:
    """``(imported ecglens module, line)`` for every import in ``module``, top-level or not. Importing a
    package's name means its ``__init__``; a parent package run implicitly (``ecglens.x`` for ``ecglens.x.y``)
    does not count."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    root_imported = False
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "ecglens":
                    root_imported = True
                elif alias.name.startswith("ecglens."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if source != "ecglens" and not source.startswith("ecglens."):
                continue
            for alias in node.names:
                if source == "ecglens":
                    target = _through_root(alias.name)
                    if target:
                        yield target, node.lineno
                elif f"{source}.{alias.name}" in MODULES:
                    yield f"{source}.{alias.name}", node.lineno
                else:
                    yield source, node.lineno
    if root_imported:  # `import ecglens`, then `ecglens.<name>`: the module behind each name used
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ecglens":
                target = _through_root(node.attr)
                if target:
                    yield target, node.lineno


@functools.cache
def _graph() -> dict[str, dict[str, int]]:
    """``{module: {imported module: first line}}`` over the package (the same object on every call)."""
    graph: dict[str, dict[str, int]] = {m: {} for m in MODULES}
    for module in MODULES:
        for target, line in _imports(module):
            if target != module and target in MODULES:
                graph[module].setdefault(target, line)
    return graph


def _layer(module: str) -> int:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return 6  # the package's __init__: the Python API over every layer


def _circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_circle():
    graph = {module: dict(targets) for module, targets in _graph().items()}
    circles = _circles(graph)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_every_import_goes_down_the_layers():
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)}) at line {line}"
        for module, targets in _graph().items()
        for target, line in targets.items()
        if _layer(target) > _layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_library_never_imports_the_service():
    library = [m for m in MODULES if _layer(m) < SERVICE]
    assert "ecglens.formats" in library and "ecglens.reports.pdf" in library
    offenders = [
        f"{module} imports {target} at line {line}"
        for module in library
        for target, line in _graph()[module].items()
        if _layer(target) >= SERVICE
    ]
    assert not offenders, "\n".join(offenders)


def test_the_graph_sees_imports_of_every_kind():
    """The reading itself: a top-level, a function-level, a relative-free `from package import submodule` and a
    name taken through the package's ``__init__`` all count."""
    graph = _graph()
    assert "ecglens.service.db" in graph["ecglens.service.jobs"]  # top level
    assert "ecglens.agent.explain" in graph["ecglens"]  # function level (the lazy wrapper `ecglens.explain`)
    assert "ecglens.classifiers.base" in graph["ecglens.classifiers"]
    assert ROOT_NAMES["explain"] == "ecglens.agent.explain" and ROOT_NAMES["Ecg"] == "ecglens.ecg"
