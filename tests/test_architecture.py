"""The layout's rules (docs/architecture.md), checked on the source: no import cycles, the maths and the pack
format import no integration code, and the public entry points stay light to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "safesteer_diffusers"

# Subpackages that form the bottom of the dependency order: they may import each other's lower layers only.
LOW_LAYERS = ("steering", "packs")
HIGH_LAYERS = ("pipelines", "build", "evaluate", "demo", "cli", "testing")


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> package modules it imports, counting imports inside functions and under TYPE_CHECKING."""
    paths = {module_name(path, root.parent): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                prefix = ".".join(base + ([node.module] if node.module else []))
                targets = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in paths:  # `from pkg import name`: name may be a symbol
                    target = target.rpartition(".")[0]
                # A package's __init__ importing its own submodules is how packages expose names, not a cycle.
                if (
                    target
                    and target != name
                    and not (path.name == "__init__.py" and target.startswith(name + "."))
                ):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_imports_inside_functions(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "one.py").write_text("def f():\n    from .two import g\n")
    (package / "two.py").write_text("from pkg.one import f\n")
    graph = import_graph(package)
    assert graph["pkg.one"] == {"pkg.two"} and graph["pkg.two"] == {"pkg.one"}
    assert cycles(graph) == [["pkg.one", "pkg.two"]]


def test_package_has_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles (each group imports itself back):\n" + "\n".join(
        map(" <-> ".join, found)
    )


def test_steering_and_packs_import_no_integration_code():
    bad = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if layer(module) in LOW_LAYERS
        for target in targets
        if layer(target) in HIGH_LAYERS
    ]
    assert not bad, "\n".join(bad)


def test_packs_is_the_bottom_layer():
    """The pack format knows nothing of how packs are applied: packs/ imports only packs/ and version."""
    bad = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if layer(module) == "packs"
        for target in targets
        if layer(target) not in ("packs", "version", "utils")
    ]
    assert not bad, "\n".join(bad)


def test_steering_maths_never_imports_diffusers():
    offenders = []
    for path in (PACKAGE / "steering").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "diffusers"]
    assert not offenders, offenders


def _modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    return set(done.stdout.split())


def test_import_safesteer_diffusers_is_light():
    loaded = _modules_after("import safesteer_diffusers")
    heavy = {"safesteer_diffusers.build", "safesteer_diffusers.evaluate", "safesteer_diffusers.demo", "torch"}
    assert not heavy & loaded, sorted(heavy & loaded)


def test_public_api_does_not_load_building_evaluation_or_demo():
    loaded = _modules_after("import safesteer_diffusers as s\n[getattr(s, name) for name in s.__all__]")
    heavy = {"safesteer_diffusers.build", "safesteer_diffusers.evaluate", "safesteer_diffusers.demo"}
    assert not heavy & loaded, sorted(heavy & loaded)


def test_comfy_nodes_import_no_diffusers_pipeline():
    loaded = _modules_after("sys.path.insert(0, '.')\nimport comfy_nodes")
    pipelines = sorted(
        m for m in loaded if m.startswith("diffusers.pipelines") or m.endswith(".pipelines.wrap")
    )
    assert not pipelines, pipelines
    assert not any(m.startswith("safesteer_diffusers.pipelines") for m in loaded)


def test_public_names_resolve_and_all_is_complete():
    import safesteer_diffusers

    assert sorted(safesteer_diffusers.__all__) == sorted([*safesteer_diffusers._PUBLIC, "__version__"])
    for name in safesteer_diffusers.__all__:
        assert getattr(safesteer_diffusers, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        safesteer_diffusers.not_a_name  # noqa: B018
