"""The import graph of `osum` has no cycle and its layers point one way; every module imports on its own.

The graph is read from the source with ``ast``: every ``import osum...`` and ``from osum... import ...``
of a module, at top level and inside functions (a function-level import closes a circle as surely, only
later). An import of ``osum.a.b`` is an edge to the module ``osum.a.b`` (a package's ``__init__``); that
importing a submodule first runs its parent package is not counted as an edge.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "osum"

# Layers, lowest first: a module may import its own layer and the layers it lists, nothing else.
LAYERS: dict[str, tuple[str, ...]] = {
    "core": ("osum", "osum.template", "osum.tasks", "osum.metrics", "osum.text", "osum.config"),
    "data": ("osum.data",),
    "models": ("osum.models",),
    "stages": ("osum.stages", "osum.callbacks", "osum.loggers", "osum.strategies"),
    # speech side: codes from audio (the speech tokenizer) and audio from codes (token2wav, its own stages)
    "speech": ("osum.speech_tokens", "osum.token2wav"),
    "entry": ("osum.inference", "osum.chat", "osum.train", "osum.decode", "osum.infer", "osum.export", "osum.convert",
              "osum.diagnose", "osum.evaluate", "osum.web"),
}
MAY_IMPORT: dict[str, set[str]] = {
    "core": {"core"},
    "data": {"core", "data"},  # the data package knows nothing of models but the tokenizer (osum.text)
    "models": {"core", "models"},  # nn.Modules know nothing of the loader
    "stages": {"core", "data", "models", "stages"},
    "speech": {"core", "data", "models", "stages", "speech"},  # never imported by models or stages
    "entry": {"core", "data", "models", "stages", "speech", "entry"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The osum module an imported name refers to: itself, or the module that defines it."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The osum modules that ``module`` imports anywhere in its source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{a.name}" for a in node.names]  # a submodule, or a name resolve() trims off
        else:
            continue
        found |= {m for n in names if n == "osum" or n.startswith("osum.") if (m := resolve(n)) and m != module}
    return found


GRAPH: dict[str, set[str]] = {m: imports_of(m) for m in MODULES}


def layer_of(module: str) -> str:
    matches = [(len(prefix), layer) for layer, prefixes in LAYERS.items() for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        raise AssertionError(f"{module} is in no layer of LAYERS: add it")
    return max(matches)[1]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (depth-first search with an explicit stack)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_is_read():
    assert "osum.tasks.registry" in GRAPH["osum.tasks"]
    assert "osum.models.artifacts" in GRAPH["osum.inference"]  # a function-level import would count too
    assert {"osum.data.batching", "osum.text"} <= GRAPH["osum.data.datamodule"]


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layers_point_one_way():
    wrong = sorted((a, b) for a, deps in GRAPH.items() for b in deps
                   if layer_of(b) not in MAY_IMPORT[layer_of(a)])
    assert not wrong, "imports against the layers: " + ", ".join(f"{a} ({layer_of(a)}) -> {b} ({layer_of(b)})"
                                                                 for a, b in wrong)


def test_every_module_imports_on_its_own_in_layer_order():
    """Each module imported with no other osum module loaded before it (third-party modules stay loaded,
    so one interpreter serves all), layer by layer; then the key modules each in a fresh interpreter."""
    ordered = sorted(MODULES, key=lambda m: (list(LAYERS).index(layer_of(m)), m))
    script = (
        "import importlib, sys\n"
        f"for name in {ordered!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'osum' or m.startswith('osum.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        sys.exit(f'import {name} failed alone: {type(e).__name__}: {e}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("module", ["osum.text", "osum.models.weights", "osum.models.artifacts", "osum.stages.base",
                                    "osum.export", "osum.convert"])
def test_module_imports_in_a_fresh_interpreter(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
