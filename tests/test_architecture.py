"""The package's structure: imports go down the layers, no cycles, no private names across modules.

Every module of ``src/intquant`` is parsed with :mod:`ast`; only the subprocess tests import intquant.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "intquant"

#: The layers, lowest first; ``"X.*"`` means X and every module under it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("intquant.errors",),
    ("intquant._numpy124.*", "intquant._numba.*"),
    ("intquant._core.*",),
    ("intquant.options", "intquant.statistics", "intquant.parameters", "intquant.quantizer",
     "intquant.quantized_array", "intquant.serialization", "intquant.quantizers", "intquant.compat.*"),
    ("intquant.calibration.*", "intquant.metrics", "intquant.packing"),
    ("intquant.integer.*",),
    ("intquant", "intquant.torch.*", "intquant.onnx.*", "intquant.dask", "intquant.cli.*",
     "intquant.demo", "intquant.__main__"),
)  # fmt: skip

#: Compatibility alias modules: in the top layer when they exist.
ALIASES = {"intquant.kernels", "intquant.granularity", "intquant.extensions", "intquant.files"}

#: (importer, imported) -> why this upward import is acceptable. Exempt from the layer rule only,
#: never from the cycle rule. None so far.
ALLOWED_UPWARD_IMPORTS: dict[tuple[str, str], str] = {}

#: Private attributes of third-party objects that an intquant module happens to define too
#: (attribute -> why). None so far.
THIRD_PARTY_PRIVATE_ATTRIBUTES: dict[str, str] = {}

#: What ``import intquant`` must not import (the optional extras of pyproject.toml).
OPTIONAL_DEPENDENCIES = ("numba", "torch", "onnx", "onnxruntime", "dask", "distributed", "sklearn",
                         "matplotlib", "tqdm")  # fmt: skip


def _is_private(name: str) -> bool:
    """A leading underscore, but not a dunder such as ``__version__``."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@functools.lru_cache(maxsize=1)
def _modules() -> dict[str, tuple[ast.Module, bool]]:
    """Every module of the package: name -> (parsed source, whether it is a package ``__init__``)."""
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = (ast.parse(path.read_text(encoding="utf-8"), str(path)), is_package)
    return modules


def _layer(module: str) -> int | None:
    """The layer of a module, or None when no layer names it."""
    if module in ALIASES:
        return len(LAYERS) - 1
    for index, patterns in enumerate(LAYERS):
        for pattern in patterns:
            base = pattern.removesuffix(".*")
            if module == base or (pattern.endswith(".*") and module.startswith(base + ".")):
                return index
    return None


def _is_intquant(module: str) -> bool:
    """Whether a dotted name is intquant or one of its modules."""
    return module == "intquant" or module.startswith("intquant.")


def _from_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module ``P`` of ``from P import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def _imported(module: str, is_package: bool, node: ast.AST, known: set[str]) -> list[str]:
    """The modules an import statement imports: ``from P import N`` imports the module ``P.N``
    when that is a module file, else ``P``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = _from_base(module, is_package, node)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def _edges() -> dict[str, set[str]]:
    """The import graph of the package (imports at any depth), intquant modules only."""
    modules = _modules()
    return {
        name: {
            target
            for node in ast.walk(tree)
            for target in _imported(name, is_package, node, set(modules))
            if _is_intquant(target) and target != name
        }
        for name, (tree, is_package) in modules.items()
    }


def _find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles a depth-first search meets (one per back edge), each as a closed path."""
    cycles: list[list[str]] = []
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _defined_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions and classes at any level, class-level
    assignments, and assignments to ``self._x`` / ``cls._x``."""
    names = {
        n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    class_level = {id(s) for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for s in c.body}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Attribute) and _dotted(sub.value) in ("self", "cls"):
                        names.add(sub.attr)
                    elif isinstance(sub, ast.Name) and id(node) in class_level:
                        names.add(sub.id)
    return {name for name in names if _is_private(name)}


def private_attribute_violations(trees: dict[str, ast.Module]) -> list[str]:
    """``x._name`` (x not ``self``/``cls``) where ``_name`` is defined by another module only."""
    defined = {name: _defined_private_names(tree) for name, tree in trees.items()}
    violations = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            if _dotted(node.value) in ("self", "cls") or node.attr in THIRD_PARTY_PRIVATE_ATTRIBUTES:
                continue
            owners = sorted(other for other, names in defined.items() if other != name and node.attr in names)
            if node.attr not in defined[name] and owners:
                violations.append(
                    f"{name}:{node.lineno}: {ast.unparse(node)} (defined in {', '.join(owners)})"
                )
    return violations


def test_layers_import_downward_only() -> None:
    graph = _edges()
    nodes = set(graph) | {target for targets in graph.values() for target in targets}
    unknown = [f"unknown module {name}: add it to a layer" for name in sorted(nodes) if _layer(name) is None]
    assert not unknown, "\n".join(unknown)
    upward = [
        f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        for name, targets in sorted(graph.items())
        for target in sorted(targets)
        if _layer(target) > _layer(name) and (name, target) not in ALLOWED_UPWARD_IMPORTS
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    cycles = _find_cycles(_edges())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_finder_shows_the_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycles(graph) == [["a", "b", "c", "a"]]
    assert _find_cycles({"a": {"b"}, "b": set()}) == []


def _module_bindings(name: str, is_package: bool, tree: ast.Module, known: set[str]) -> dict[str, str]:
    """Local names bound to intquant modules: ``import intquant.x [as m]``, ``from P import m``."""
    bindings = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_intquant(alias.name):
                    bindings[alias.asname or "intquant"] = alias.name if alias.asname else "intquant"
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(name, is_package, node)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    bindings[alias.asname or alias.name] = f"{base}.{alias.name}"
    return bindings


def test_no_private_names_cross_modules() -> None:
    modules = _modules()
    known = set(modules)
    violations = []
    for name, (tree, is_package) in modules.items():
        bindings = _module_bindings(name, is_package, tree, known)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _from_base(name, is_package, node)
                for alias in node.names:
                    by_name = f"{base}.{alias.name}" in known
                    if _is_intquant(base) and base != name and _is_private(alias.name) and not by_name:
                        violations.append(f"{name}:{node.lineno}: from {base} import {alias.name}")
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            head, _, rest = (_dotted(node.value) or "").partition(".")
            resolved = ".".join(filter(None, [bindings[head], rest])) if head in bindings else ""
            if resolved in known and resolved != name and f"{resolved}.{node.attr}" not in known:
                violations.append(f"{name}:{node.lineno}: {ast.unparse(node)} (a private name of {resolved})")
    assert not violations, "private names used outside their module:\n" + "\n".join(violations)


def test_no_private_method_calls_across_modules() -> None:
    trees = {name: tree for name, (tree, _) in _modules().items()}
    violations = private_attribute_violations(trees)
    assert not violations, "private attributes used outside their module:\n" + "\n".join(violations)


def test_the_private_attribute_checker_flags_a_foreign_private_method() -> None:
    quantizer = """
class UniformQuantizer:
    def __init__(self):
        self._cache = None
    def _require_parameters(self):
        return self._cache
"""
    torch = """
def fake_quant(quantizer):
    quantizer._require_parameters()
    return quantizer.__class__
class TorchUniformQuantizer:
    def __init__(self):
        self._x = 1
    def f(self, other):
        return self._x, self._cache, other._x
"""
    trees = {"intquant.quantizer": ast.parse(quantizer), "intquant.torch": ast.parse(torch)}
    assert private_attribute_violations(trees) == [
        "intquant.torch:3: quantizer._require_parameters (defined in intquant.quantizer)"
    ]


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter on this source tree; its stderr if it failed, else ""."""
    path = os.pathsep.join(filter(None, [str(SRC.parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return result.stderr if result.returncode else ""


def test_import_intquant_loads_no_optional_dependency() -> None:
    error = _run(
        "import sys, intquant\n"
        f"loaded = sorted(set({OPTIONAL_DEPENDENCIES!r}) & set(sys.modules))\n"
        "assert not loaded, f'import intquant imported {loaded}'\n"
    )
    assert not error, error


def test_every_serialization_tag_is_registered_once_intquant_is_loaded() -> None:
    registered = _run(
        "import importlib, sys, intquant\n"
        "from intquant._core.codec import TAG_MODULES, registered_tags\n"
        "[importlib.import_module(module) for module in sorted(set(TAG_MODULES.values()))]\n"
        "missing = sorted(set(TAG_MODULES) - set(registered_tags()))\n"
        "assert not missing, f'tags not registered by their TAG_MODULES module: {missing}'\n"
        # a tag is its class's name (seed tags) or "intquant." + that name: the class must live there
        "classes = {t: getattr(sys.modules[m], t.removeprefix('intquant.'), None)\n"
        "           for t, m in TAG_MODULES.items()}\n"
        "wrong = {t: m for t, m in TAG_MODULES.items() if getattr(classes[t], '__module__', None) != m}\n"
        "assert not wrong, f'TAG_MODULES names a module that does not define the class: {wrong}'\n"
    )
    text = (
        '{"type_name": "intquant.PercentileStats", "format_version": 2, "serialized_value": '
        '{"percentile": 99.99, "bins": 2048, "axis": null, "block_size": null, "counts": null, '
        '"low": null, "high": null, "minimum": null, "maximum": null}}'
    )
    loaded = _run(  # only `import intquant`: the codec imports the tag's module on demand
        f"import intquant\ntext = {text!r}\nvalue = intquant.loads(text)\n"
        "assert type(value).__name__ == 'PercentileStats', type(value)\n"
        "assert intquant.dumps(value) == text, intquant.dumps(value)\n"
    )
    assert not (registered or loaded), f"registering every tag:\n{registered}\nloads:\n{loaded}"
