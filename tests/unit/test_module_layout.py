"""The tree a newcomer navigates: no import circle between the project's modules, each module
opening with a one-line summary, and jobs/README.md's layout naming every module of jobs/core."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support.runs import REPO

SOURCES = sorted((REPO / "jobs").rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file: at the top, inside a
    function, or only for type checking (a circle through any of them is still a circle)."""
    modules = {module_name(p): p for p in SOURCES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others() -> None:
    graph = import_graph()
    assert len(graph) > 40  # the scan sees the whole tree
    assert circles(graph) == []


def test_the_circle_check_sees_a_circle() -> None:
    graph = import_graph()
    graph["jobs.core.parsers"] = graph["jobs.core.parsers"] | {"jobs.core.settings"}
    assert circles(graph) == [["jobs.core.parsers", "jobs.core.settings"]]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_each_module_opens_with_a_one_line_summary(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
    assert doc, "no module docstring"
    first, _, rest = doc.strip("\n").partition("\n")
    assert first.strip() and len(first) <= 100
    assert first.rstrip().endswith((".", ")", ":", "?")), f"summary line is cut short: {first!r}"
    assert rest == "" or rest.startswith("\n"), "the summary line runs on into a second line"


def test_the_readme_layout_names_every_core_module() -> None:
    readme = (REPO / "jobs" / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\b([a-z_]+\.py)\b", layout))
    core = {p.name for p in (REPO / "jobs/core").glob("*.py") if p.name != "__init__.py"}
    assert core - named == set()


def test_k8s_holds_what_a_user_applies_and_the_code_is_a_package() -> None:
    """k8s/ keeps manifests, templates, values and shell entrypoints; the Python that renders,
    prices, schedules and preflights them is jobs.kube, imported as a package: nothing in
    jobs/ or tests/ puts itself on sys.path or loads a module by its file path (but the GPU
    benchmark and the stand-in kubectl, which run as files on their own)."""
    assert sorted((REPO / "k8s").rglob("*.py")) == []
    run_as_files = {REPO / "jobs/bench/gpu.py", REPO / "tests/support/kuberay/fake_kubectl.py"}
    here = Path(__file__).resolve()
    found = [
        str(p.relative_to(REPO))
        for p in [*(REPO / "jobs").rglob("*.py"), *(REPO / "tests").rglob("*.py")]
        if p not in run_as_files
        and p != here
        and re.search(
            r"sys\.path\.insert|syspath_prepend\(str\(REPO|spec_from_file_location|run_path\(",
            p.read_text(),
        )
    ]
    assert found == []


def test_tests_are_in_layers() -> None:
    """tests/e2e holds tests only (the runner, the API stand-in, the nodes and their scripts
    are tests/support/); no test imports another test folder; no test module runs past about
    600 lines."""
    e2e = REPO / "tests" / "e2e"
    assert sorted(p.name for p in e2e.iterdir() if p.name != "__pycache__") == sorted(
        ["__init__.py", "conftest.py", *(p.name for p in e2e.glob("test_*.py"))]
    )
    sources = sorted((REPO / "tests").rglob("*.py"))
    crossing = [
        str(p.relative_to(REPO))
        for p in sources
        if re.search(r"^\s*(from|import) tests\.(e2e|unit|integration)\b", p.read_text(), re.M)
    ]
    assert crossing == []
    long = {
        str(p.relative_to(REPO)): n for p in sources if (n := len(p.read_text().splitlines())) > 650
    }
    assert long == {}
