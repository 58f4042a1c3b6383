"""The architecture's import rules, read from the real imports of every module of the tree.

- ``serving`` (the runtime) imports nothing of the training side: a server deploys alone.
- Packages import each other without a circle, and so do the modules (at module scope).
- No package of the project shadows another installed distribution's or the standard
  library's import name.
"""

import ast
import importlib.metadata
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "evaluation", "components", "trainer", "publish", "serving", "pipeline")
# What the serving runtime must not import: the project's training side and its libraries.
TRAINING_SIDE = (
    "pipeline",
    "components",
    "trainer",
    "publish",
    "data",
    "evaluation",
    "tfx",
    "ml_metadata",
    "tensorflow_transform",
    "apache_beam",
    "tensorflow_recommenders",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_scope_only: bool = False) -> set[str]:
    """The absolute module names ``path`` imports (``from p import m`` counts as ``p.m``
    when ``p/m`` is a module of the project, else as ``p``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if module_scope_only else list(ast.walk(tree))
    if module_scope_only:  # module scope, including `try:`/`if` blocks at the top level
        nodes = [
            n
            for top in tree.body
            if not isinstance(top, ast.FunctionDef | ast.ClassDef)
            for n in ast.walk(top)
        ]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            for alias in node.names:
                candidate = REPO.joinpath(*node.module.split("."), alias.name)
                if candidate.with_suffix(".py").is_file() or candidate.is_dir():
                    found.add(f"{node.module}.{alias.name}")
    return found


def _sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_serving_runtime_imports_nothing_of_the_training_side():
    offending = {
        _module_name(path): sorted(
            name for name in _imports(path) if name.split(".")[0] in TRAINING_SIDE
        )
        for path in _sources("serving")
    }
    assert {module: names for module, names in offending.items() if names} == {}


def test_packages_import_each_other_without_a_circle():
    graph = {package: set() for package in PACKAGES}
    for package in PACKAGES:
        for path in _sources(package):
            for name in _imports(path):
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    graph[package].add(top)
    assert _find_cycle(graph) is None, f"package import circle: {_find_cycle(graph)}"
    assert graph["serving"] == set()  # the runtime depends on no other package


def test_modules_import_each_other_without_a_circle():
    modules = {_module_name(p): p for package in PACKAGES for p in _sources(package)}
    graph = {
        name: {m for m in _imports(path, module_scope_only=True) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A package's __init__ is imported by its modules' importers, not a cycle of its own.
    cycle = _find_cycle(graph)
    assert cycle is None, f"module import circle: {' -> '.join(cycle)}"


def test_no_package_shadows_an_installed_distribution_or_the_standard_library():
    providers = importlib.metadata.packages_distributions()
    for package in (*PACKAGES, "bench", "tests"):
        assert package not in sys.stdlib_module_names, package
        others = set(providers.get(package, ())) - {"movierec"}
        assert not others, f"{package!r} is also the import name of {sorted(others)}"


def test_the_rules_see_real_imports():
    # The readers above find what the code imports, so an empty result means something.
    assert "serving.names" in _imports(REPO / "trainer" / "features.py")
    assert "serving.tf_serving" in _imports(REPO / "serving" / "store.py")
    assert _find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
