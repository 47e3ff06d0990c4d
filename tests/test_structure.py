"""The shape of the source tree, checked from the sources themselves: no import circle between
modules, no `CLIPSEARCH_*` setting read behind the caller's back, and short functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "indexer", "app")
MAX_FUNCTION_LINES = 60
LONG_MARK = "# long:"  # a function may be longer when the line above its def says why
# Where our own settings may come from the environment: the settings class, the CLI, and the
# cache location (an XDG-style path every tool reads, like HF_HOME).
ENV_READERS = {"app/settings.py", "app/cli/"}
ENV_ALLOWED = {("model/starter.py", "CLIPSEARCH_CACHE")}


def sources() -> dict[str, Path]:
    """Dotted module name → file, for every module of the three packages."""
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """A package's `_EXPORTS = {"name": "submodule"}` table (lazy re-exports)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    return {}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def import_graph() -> dict[str, set[str]]:
    """module → the modules of ours it imports anywhere (function bodies included, type-only
    imports not), with `from pkg import name` resolved to the submodule that defines `name`."""
    mods = sources()
    trees = {m: ast.parse(p.read_text()) for m, p in mods.items()}
    lazy = {m: _lazy_exports(t) for m, t in trees.items()}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, tree in trees.items():
        skip = _type_checking_nodes(tree)
        is_pkg = mods[mod].name == "__init__.py"
        here = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                graph[mod] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for alias in node.names:
                    graph[mod] |= _targets(base, alias.name, mods, lazy)
        graph[mod].discard(mod)
    return graph


def _targets(base: str, name: str, mods: dict, lazy: dict) -> set[str]:
    if f"{base}.{name}" in mods:
        return {f"{base}.{name}"}
    if name in lazy.get(base, {}):
        return {f"{base}.{lazy[base][name]}"}
    return {base} if base in mods else set()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_real_edges():
    graph = import_graph()
    assert "indexer.reader" in graph["app.engine"] or "indexer.reader" in str(graph["app.deps"])
    assert "model.errors" in graph["app.errors"]


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_between_modules():
    assert cycles(import_graph()) == []


def _env_keys(tree: ast.Module) -> list[tuple[int, str]]:
    """CLIPSEARCH_* names read through os.environ[...], os.environ.get(...) or os.getenv(...)."""
    found = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in (
            "os.environ.get",
            "os.getenv",
            "os.environ.setdefault",
        ):
            key = node.args[0] if node.args else None
        if key is not None:
            text = key.value if isinstance(key, ast.Constant) else ast.unparse(key)
            if "CLIPSEARCH_" in str(text):
                found.append((node.lineno, str(text)))
    return found


def test_library_code_reads_no_clipsearch_setting_from_the_environment():
    bad = []
    for path in sources().values():
        rel = path.relative_to(REPO).as_posix()
        if any(rel == r or rel.startswith(r) for r in ENV_READERS if r.endswith("/") or rel == r):
            continue
        for line, key in _env_keys(ast.parse(path.read_text())):
            if (rel, key) not in ENV_ALLOWED:
                bad.append(f"{rel}:{line} reads {key}")
    assert bad == []


def test_env_scan_sees_a_read():
    tree = ast.parse("import os\nx = os.environ.get('CLIPSEARCH_DEVICE')\n")
    assert _env_keys(tree) == [(2, "CLIPSEARCH_DEVICE")]


def long_functions() -> list[str]:
    out = []
    for path in sources().values():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - node.lineno + 1
            above = lines[first - 2].strip() if first >= 2 else ""
            if length > MAX_FUNCTION_LINES and not above.startswith(LONG_MARK):
                out.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_functions_are_short(package):
    assert [f for f in long_functions() if f.startswith(package + "/")] == []
