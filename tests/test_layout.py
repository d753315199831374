"""The layout rules of the repo, checked on the source (ast, nothing imported):

- no import cycles between the project's modules (function-level imports count; TYPE_CHECKING ones not);
- library modules never import an entry point; an entry point imports another only to run its job
  (compare.py runs train.py's `train`), never to borrow a helper;
- `from module import name` and `module.name` name something `module` defines itself, not something it
  imported (no reaching into one module through another), in the tests too;
- every module has tests/test_<module>.py; no sys.path edits; files stay under 500 lines.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {
    "train",
    "sample",
    "compare",
    "bench",
    "export",
    "scripts.bench_rope",
    "scripts.plot_rope",
    "scripts.attention_maps",
    "scripts.gpu_check",
}
ENTRY_IMPORTS = {("compare", "train"): {"train"}}  # (importer, entry point): the names it may take
MAX_LINES = 500


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


SOURCES = {
    module_name(p): p
    for folder in (REPO, REPO / "data", REPO / "scripts", REPO / "tests")
    for p in sorted(folder.glob("*.py"))
    if p.name != "__init__.py"
}
LIBRARY = {m for m in SOURCES if not m.startswith("tests.") and m not in ENTRY_POINTS}


def resolve(name: str, importer: str) -> str | None:
    """The project module `name` refers to (tests import their helpers as top-level `helpers`)."""
    if importer.startswith("tests.") and f"tests.{name}" in SOURCES:
        return f"tests.{name}"
    return name if name in SOURCES else None


def is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(project module, names taken from it ([] for `import m`), line) of every runtime import."""
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                targets = [resolve(a.name, module) for a in child.names]
                found.extend((t, [], child.lineno) for t in targets if t)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for a in child.names:  # `from data import batches` imports the module data.batches
                    if sub := resolve(f"{child.module}.{a.name}", module):
                        found.append((sub, [], child.lineno))
                    elif target := resolve(child.module, module):
                        found.append((target, [a.name], child.lineno))
            visit(child)

    visit(ast.parse(SOURCES[module].read_text(encoding="utf-8")))
    return found


def defined(module: str) -> set[str]:
    """Names a module binds itself at top level (def, class, assignment), not by importing them."""
    names = set()
    for node in ast.walk(ast.parse(SOURCES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.col_offset == 0:
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.col_offset == 0:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


GRAPH = {m: imports(m) for m in SOURCES}


def test_no_import_cycles():
    edges = {m: {t for t, _, _ in GRAPH[m]} for m in SOURCES}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for t in sorted(edges[m]):
            assert state.get(t) != "open", "import cycle: " + " -> ".join([*path[path.index(t) :], t])
            if t not in state:
                visit(t, [*path, t])
        state[m] = "done"

    for m in sorted(SOURCES):
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("module", sorted(LIBRARY | ENTRY_POINTS))
def test_entry_points_are_imported_by_no_library_and_lent_by_no_entry_point(module):
    for target, names, line in GRAPH[module]:
        if target not in ENTRY_POINTS:
            continue
        where = f"{SOURCES[module].name}:{line} imports the entry point {target}"
        assert module not in LIBRARY, f"{where}; move what it needs into a library module"
        allowed = ENTRY_IMPORTS.get((module, target), set())
        assert names and set(names) <= allowed, f"{where} for {names}; allowed: {sorted(allowed)}"


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_names_are_taken_from_the_module_that_defines_them(module):
    tree = ast.parse(SOURCES[module].read_text(encoding="utf-8"))
    aliases = {}  # local name -> project module, for `import m` / `import m as x`
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname or a.name: t for a in node.names if (t := resolve(a.name, module))})
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            aliases.update(
                {
                    a.asname or a.name: t
                    for a in node.names
                    if (t := resolve(f"{node.module}.{a.name}", module))
                }
            )
    for target, names, line in GRAPH[module]:
        for name in names:
            assert name in defined(target), (
                f"{SOURCES[module].name}:{line} takes {name!r} from {target}, "
                f"which does not define it; import it from where it is defined"
            )
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            target = aliases[node.value.id]
            own = node.attr in defined(target) or f"{target}.{node.attr}" in SOURCES
            ok = own or node.attr.startswith("__")  # module dunders: __file__, __doc__
            assert ok, f"{SOURCES[module].name}:{node.lineno} reaches {target}.{node.attr}, not defined there"


@pytest.mark.parametrize("module", sorted(LIBRARY | ENTRY_POINTS))
def test_every_module_has_its_test_file(module):
    test = REPO / "tests" / f"test_{module.rsplit('.', 1)[-1]}.py"
    assert test.is_file(), f"{SOURCES[module].relative_to(REPO)} has no {test.relative_to(REPO)}"


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_no_sys_path_edits_and_short_files(module):
    text = SOURCES[module].read_text(encoding="utf-8")
    assert module == "tests.test_layout" or "sys.path" not in text, "run scripts as python -m scripts.x"
    assert text.count("\n") <= MAX_LINES, f"{SOURCES[module].name} has {text.count(chr(10))} lines"


def test_the_checks_see_the_layout():
    """Guards against the rules passing vacuously: the graph has the edges the layout is made of."""
    assert {"train", "compare", "rundir", "runtime", "data.batches", "tests.helpers"} <= set(SOURCES)
    assert ("train", ["train"]) in [(t, n) for t, n, _ in GRAPH["compare"]]
    assert "positional" in {t for t, _, _ in GRAPH["model"]}
    assert "model" not in {t for t, _, _ in GRAPH["positional"]}  # TYPE_CHECKING only
