"""The package's structure: every module imports, no import cycle, no reaching into another module's private names,
and no module grown past a screenful of screens."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import hf_deitcxr

PACKAGE_ROOT = Path(hf_deitcxr.__file__).resolve().parent
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def imported_names(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) for every import in the file, at any depth (lazy imports included)."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.append((target, [alias.name for alias in node.names]))
    return found


def internal_edges() -> dict[str, set[str]]:
    """module -> the package modules it imports (`from pkg import sub` counts as importing `pkg.sub`)."""
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, names in imported_names(name, path):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                if candidate in MODULES and candidate != name:
                    edges[name].add(candidate)
                    if candidate != target:
                        break
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize("name", [n for n in MODULES if not n.endswith(".cxr_metrics.cxr_metrics")])
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_import_cycle_between_package_modules():
    cycle = find_cycle(internal_edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_another_modules_private_names():
    offences = [
        f"{name} imports {target}.{imported}"
        for name, path in MODULES.items()
        for target, names in imported_names(name, path)
        if target.startswith("hf_deitcxr")
        for imported in names
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert not offences, offences


def test_no_module_over_the_size_limit():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_saved_model_files_import_only_torch_transformers_and_siblings():
    # save_pretrained copies these files next to a checkpoint; trust_remote_code loads them without this package.
    allowed_roots = {"torch", "transformers", "numpy", "PIL", "math", "collections", "dataclasses", "__future__",
                     "typing", "importlib"}
    lazily_allowed = {"kornia"}  # CLAHE in the image processor
    for folder in sorted((PACKAGE_ROOT / "models").iterdir()):
        for path in sorted(folder.glob("*_*.py")):
            if not path.name.startswith(("configuration_", "modeling_", "image_processing_")):
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level:
                    assert node.level == 1 and (folder / f"{node.module}.py").exists(), f"{path}: {node.module}"
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    roots = {a.name.split(".")[0] for a in node.names} if isinstance(node, ast.Import) else {
                        node.module.split(".")[0]}
                    # an optional dependency may be imported inside the function that needs it, never at load
                    allowed = allowed_roots if node in tree.body else allowed_roots | lazily_allowed
                    assert roots <= allowed, f"{path.relative_to(PACKAGE_ROOT)} imports {roots - allowed}"
