"""The library's layout (Part III): imports point one way, with no cycle, and each module stays a size a
reader can hold. The walk reads every ``import`` in every module, at the top or inside a function."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vae_lib"
#: The layers from the bottom: a module may import its own layer's modules and those of lower layers only.
LAYERS = [
    {"utils", "course", "widgets", "student"},
    {"data", "expected", "site", "site_capture", "book"},
    {"likelihoods", "plots", "labels"},
    {"losses"},
    {"priors"},
    {"models"},
    {"registry"},
    {"training"},
    {"evaluation", "checkpoints", "pipelines", "theory"},
    {"diagnostics", "latent", "downstream", "compare", "train", "sample_quality", "ood"},
    {"prior_report", "hierarchy_report", "codebooks", "latent_diffusion"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (a ``from X import y`` counts X.y when that is a module)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
            candidates = [f"{target}.{alias.name}" for alias in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules and "." in candidate:
                candidate = candidate.rsplit(".", 1)[0]
            if candidate in modules and candidate != name and not name.startswith(candidate + "."):
                found.add(candidate)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None (depth-first search, colouring nodes)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else "__init__"
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"vae_lib.{top} is in no layer of tests/test_layout.py: place it in LAYERS")


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m != "vae_lib"))
def test_imports_point_down_the_layers(module):
    """Objects (likelihoods, priors) at the bottom, models above them, training and evaluation above those,
    the notebooks' helpers on top; the registry that knows every model sits above the models."""
    graph = _graph()
    upward = [t for t in graph[module] if t != "vae_lib" and _layer(t) > _layer(module)]
    assert not upward, f"{module} imports {upward}, which sit above it"


def test_modules_stay_a_size_a_reader_can_hold():
    too_long = {p.relative_to(PACKAGE.parent).as_posix(): n for p in PACKAGE.rglob("*.py")
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > 800}
    assert not too_long, f"split these modules by concern: {too_long}"
