"""The package layout: no import cycles, and imports that run one way.

The rules are those of the layout in the design notes: ``stream/`` is the product and uses only the model
catalogue (``models/`` outside ``models/training/``); the catalogue stands on its own; ``export/`` may use both;
training (``models/training/``) sits beside the catalogue and may also use ``export/`` (its ONNX export and int8
steps); benchmarks (``bench/``) and ``tests/`` may use anything, and nothing else
uses them. Across those parts only public names are imported (a module's ``_private`` names and ``_private``
modules stay inside their own part).

Every ``.py`` file of the repository is read with ``ast``, never imported, so this runs in a fraction of a second
and sees imports inside functions too (a lazy import is still a dependency, and a cycle through one still a
cycle). ``python -m tests.test_layout`` prints what it finds and exits 1 on any cycle or violation (for CI).
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Folders never scanned besides hidden ones (.venv, .git, ...).
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "build", "dist"})

#: What each part may import (besides itself). Parts are top-level packages, except that ``models.training`` is a
#: part of its own, apart from the catalogue (the rest of ``models``).
ALLOWED: dict[str, frozenset[str]] = {
    "stream": frozenset({"models"}),
    "models": frozenset(),
    "models.training": frozenset({"models", "stream", "export"}),
    "export": frozenset({"models", "stream"}),
    "bench": frozenset({"models", "models.training", "stream", "export", "tests"}),
    "tests": frozenset({"models", "models.training", "stream", "export", "bench"}),
}
#: Only these parts may import ``bench`` and ``tests``; any other part (a new top-level package) may import the
#: rest until a rule is written for it here.
TOOLS = frozenset({"bench", "tests"})
#: Parts that must exist: a rule about a part that has gone (renamed, moved) would pass without checking anything.
REQUIRED_PARTS = ("stream", "models", "models.training", "export", "bench", "tests")
#: Single imports allowed against the rules above, each with the reason it is needed. One that is no longer made
#: is reported, so the list cannot outlive its reasons.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("models.__main__", "stream.config"): (
        "`python -m models fetch --config FILE` searches the product's models.local_dirs, so the catalogue's command "
        "reads the product's config file through its one loader; the catalogue's library modules (registry, cache, "
        "fetch) import nothing from stream"
    ),
    ("export.dlib_face", "models.training.dlib_resnet"): (
        "the one reader of dlib's DNN file format lives with training, its first user; the export of the tracker's "
        "face embedding builds its graph with it and checks the ONNX file against it (parity)"
    ),
}


@dataclass(frozen=True)
class Import:
    """One import of a project module by another.

    Attributes:
        source: Importing module (dotted name).
        target: Imported project module (``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``).
        path: File of the importing module.
        line: Line of the import statement.
        names: Names taken from ``target`` (``from target import x, y``); empty for ``import target``.
    """

    source: str
    target: str
    path: Path
    line: int
    names: tuple[str, ...] = ()

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def part_of(module: str) -> str:
    """The part a module belongs to: its top-level package, or ``models.training``."""
    if module == "models.training" or module.startswith("models.training."):
        return "models.training"
    return module.split(".")[0]


def find_modules(root: Path) -> dict[str, Path]:
    """Dotted name → file of every ``.py`` file under ``root`` (hidden and build folders skipped)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part.startswith(".") or part in _SKIP_DIRS for part in relative.parts[:-1]):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts and all(part.isidentifier() for part in parts):
            modules[".".join(parts)] = path
    return modules


def _longest_module(dotted: str, modules: dict[str, Path]) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(name: str, modules: dict[str, Path]) -> list[Import]:
    """The project modules that ``name`` imports, anywhere in its file (module level or inside functions)."""
    path = modules[name]
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _longest_module(alias.name, modules)
                if target is not None:
                    found.append(Import(name, target, path, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            taken: dict[str, list[str]] = {}  # target module -> names taken from it by this statement
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                if submodule in modules:
                    taken.setdefault(submodule, [])
                    continue
                target = _longest_module(base, modules) if base else None
                if target is not None:
                    taken.setdefault(target, []).append(alias.name)
            found += [Import(name, target, path, node.lineno, tuple(names)) for target, names in taken.items()]
    return found


def import_graph(root: Path) -> tuple[dict[str, Path], list[Import]]:
    """Every project module under ``root`` and every import between them.

    Raises:
        RuntimeError: No modules found (the checks would pass without checking anything).
    """
    modules = find_modules(root)
    if not modules:
        raise RuntimeError(f"no Python modules found under {root}: the layout checks would pass vacuously")
    imports = [item for name in modules for item in imports_of(name, modules) if item.target != name]
    return modules, imports


def find_cycles(imports: list[Import]) -> list[list[Import]]:
    """One shortest import cycle per strongly connected group of modules, as the chain of imports that closes it.

    Groups come from Tarjan's algorithm; within a group the cycle through its first module (by name) is found by
    breadth-first search, so the report names real import statements, first to last.
    """
    edges: dict[str, dict[str, Import]] = {}
    for item in imports:
        edges.setdefault(item.source, {}).setdefault(item.target, item)
        edges.setdefault(item.target, {})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(edges) + 100))
    try:
        for node in sorted(edges):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)

    cycles = []
    for group in sorted(groups):
        members, start = set(group), group[0]
        came_from: dict[str, Import] = {}
        queue = deque([start])
        closing: Import | None = None
        while queue and closing is None:
            node = queue.popleft()
            for nxt in sorted(edges[node]):
                if nxt == start:
                    closing = edges[node][nxt]
                    break
                if nxt in members and nxt not in came_from:
                    came_from[nxt] = edges[node][nxt]
                    queue.append(nxt)
        assert closing is not None  # a strongly connected group of two or more always leads back to its start
        chain = [closing]
        while chain[0].source != start:
            chain.insert(0, came_from[chain[0].source])
        cycles.append(chain)
    return cycles


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def layer_violations(modules: dict[str, Path], imports: list[Import], root: Path) -> list[str]:
    """Imports against :data:`ALLOWED`, :data:`TOOLS` or the public-names rule; missing parts; stale exceptions."""
    problems = []
    parts = {part_of(name) for name in modules}
    for part in REQUIRED_PARTS:
        if part not in parts:
            problems.append(f"no module of part {part!r} under {root}: its rules would check nothing "
                            "(update tests/test_layout.py if it moved)")
    used_exceptions = set()
    for item in sorted(imports, key=lambda i: (str(i.path), i.line, i.target)):
        source, target = part_of(item.source), part_of(item.target)
        if source == target:
            continue
        where = item.where(root)
        if (item.source, item.target) in EXCEPTIONS:
            used_exceptions.add((item.source, item.target))
        elif source in ALLOWED and target not in ALLOWED[source]:
            allowed = ", ".join(sorted({source, *ALLOWED[source]}))
            problems.append(f"{where}: {item.source} imports {item.target} ({source} may import only {allowed})")
        elif source not in ALLOWED and target in TOOLS:
            problems.append(f"{where}: {item.source} imports {item.target} (only {', '.join(sorted(TOOLS))} may "
                            f"import {target})")
        if source == "tests":
            continue
        private = [name for name in item.names if _is_private(name)]
        private_modules = [p for p in item.target.split(".") if _is_private(p)]
        if private or private_modules:
            what = ", ".join(private) if private else item.target
            problems.append(f"{where}: {item.source} imports private {what} from {item.target} (another part: "
                            "make it a public, documented function)")
    for key in sorted(set(EXCEPTIONS) - used_exceptions):
        problems.append(f"exception {key[0]} -> {key[1]} in tests/test_layout.py is no longer used: remove it")
    return problems


def check(root: Path = REPO) -> tuple[int, int, list[list[Import]], list[str]]:
    """Module count, count of (importer, imported) module pairs, cycles and layer problems of the tree at ``root``."""
    modules, imports = import_graph(root)
    pairs = {(item.source, item.target) for item in imports}
    return len(modules), len(pairs), find_cycles(imports), layer_violations(modules, imports, root)


def format_cycle(chain: list[Import], root: Path) -> str:
    names = " -> ".join([chain[0].source, *(item.target for item in chain)])
    return f"import cycle: {names} ({', '.join(item.where(root) for item in chain)})"


# ----------------------------------------------------------------------------------------------- tests


def test_the_project_is_scanned():
    modules, imports = import_graph(REPO)
    parts = {part_of(name) for name in modules}
    assert set(REQUIRED_PARTS) <= parts, f"found parts {sorted(parts)} under {REPO}"
    assert len(imports) > len(REQUIRED_PARTS), f"only {len(imports)} imports found among {len(modules)} modules"


def test_no_import_cycles():
    _, imports = import_graph(REPO)
    cycles = [format_cycle(chain, REPO) for chain in find_cycles(imports)]
    assert not cycles, "\n".join(cycles)


def test_imports_run_one_way():
    modules, imports = import_graph(REPO)
    problems = layer_violations(modules, imports, REPO)
    assert not problems, "\n".join(problems)


def test_readme_package_diagram_names_every_module_of_the_product():
    # The design note's diagram is the map a newcomer reads first: a module added to stream/ without it fails here.
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    diagram = text.split("### Packages", 1)[1].split("```", 2)[1]
    words = set(re.findall(r"[A-Za-z_]+", diagram))
    product = {path.stem if path.suffix else path.name for path in (REPO / "stream").iterdir()
               if (path.suffix == ".py" or (path / "__init__.py").exists()) and not path.name.startswith("_")}
    assert product - words == set(), f"README's package diagram lacks stream/ modules {sorted(product - words)}"
    for part in ("models", "training", "export", "bench", "tests"):
        assert part in words, part


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_planted_cycles_and_violations_are_reported(tmp_path):
    _write(tmp_path, {
        "stream/__init__.py": "",
        # A cycle through a relative import and a lazy import inside a function.
        "stream/a.py": "def f():\n    from stream import b\n",
        "stream/b.py": "from . import a\nimport numpy\n",
        "stream/c.py": "import bench.speed\nfrom models.training.nets import Net\n",
        "bench/speed.py": "from stream.a import f\nimport tests.helpers\n",
        "models/fetch.py": "def _member():\n    pass\n",
        "models/registry.py": "import stream.a\n",
        "models/training/__init__.py": "",
        "models/training/nets.py": "from models.fetch import model_path\n",
        "export/_common.py": "from models.fetch import _member\n",
        "export/mtcnn.py": "from export._common import save\n",
        "tests/helpers.py": "from export._common import save\n",
        ".venv/lib/site.py": "import bench\n",
    })
    modules, imports = import_graph(tmp_path)
    assert "stream.a" in modules and "site" not in modules and not any(".venv" in n for n in modules)
    cycles = find_cycles(imports)
    assert [format_cycle(chain, tmp_path) for chain in cycles] == [
        "import cycle: stream.a -> stream.b -> stream.a (stream/a.py:2, stream/b.py:1)",
    ]
    problems = layer_violations(modules, imports, tmp_path)
    assert problems == [
        "export/_common.py:1: export._common imports private _member from models.fetch (another part: make it a "
        "public, documented function)",
        "models/registry.py:1: models.registry imports stream.a (models may import only models)",
        "stream/c.py:1: stream.c imports bench.speed (stream may import only models, stream)",
        "stream/c.py:2: stream.c imports models.training.nets (stream may import only models, stream)",
        "exception export.dlib_face -> models.training.dlib_resnet in tests/test_layout.py is no longer used: "
        "remove it",
        "exception models.__main__ -> stream.config in tests/test_layout.py is no longer used: remove it",
    ]


def test_an_empty_tree_fails_loudly(tmp_path):
    (tmp_path / "README.md").write_text("no code here\n", encoding="utf-8")
    try:
        import_graph(tmp_path)
    except RuntimeError as error:
        assert "no Python modules found" in str(error)
    else:
        raise AssertionError("import_graph found modules in a tree without any")
    _write(tmp_path, {"stream/a.py": "import os\n"})
    modules, imports = import_graph(tmp_path)
    problems = layer_violations(modules, imports, tmp_path)
    assert "no module of part 'models.training'" in "\n".join(problems)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.test_layout [ROOT]``: print import cycles and layout violations; exit 1 if any."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(main.__doc__)
        return 0
    root = Path(args[0]).resolve() if args else REPO
    try:
        n_modules, n_imports, cycles, problems = check(root)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for chain in cycles:
        print(format_cycle(chain, root))
    for problem in problems:
        print(problem)
    print(f"{n_modules} modules, {n_imports} module-to-module imports: {len(cycles)} import cycle(s), "
          f"{len(problems)} layout violation(s)")
    return 1 if cycles or problems else 0


if __name__ == "__main__":
    sys.exit(main())
