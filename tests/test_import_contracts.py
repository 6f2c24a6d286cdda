"""Imports run one way: the contracts in pyproject.toml hold, and the only import circles are enqueues.

annotation reaches learning only through learning/selectors.py and by enqueuing learning/tasks.py; quality and
the API sit on top and nothing below imports them; learning/ml is plain Python. A service that enqueues a task
of its own app (the task then calls the service) is the one circle allowed, because the import is of a
`tasks` module and happens when the task is sent.
"""

from pathlib import Path

import grimp
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("annotation", "learning", "quality", "explore", "api", "operations", "config", "webhooks")

# Circles that are not an enqueue, each with why it stays.
ALLOWED_CIRCLES = {
    # The labeling page's suggestion scores one document with the served model; torch loads on that path only.
    ("learning.selectors", "learning.serving"),
    # The suggestion on the labeling page leads the model's label keys through the taxonomy's changes since.
    ("annotation.selectors", "annotation.services.taxonomy"),
    # "Add labels from a template" reads the templates kept with project creation.
    ("annotation.services.taxonomy", "annotation.services.projects"),
    # The places where things happen tell webhooks.events, which hands the work to webhooks.services once the
    # transaction commits: imported when the callback runs, as a task is when it is sent.
    ("webhooks.events", "webhooks.services"),
}


def test_import_contracts_hold(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    exit_code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert exit_code == 0, capsys.readouterr().out


def _circles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_import_circles_close_only_by_enqueuing_a_task(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    edges: dict[str, set[str]] = {}
    for importer in graph.modules:
        imported = graph.find_modules_directly_imported_by(importer)
        edges[importer] = {
            module
            for module in imported
            if module.rsplit(".", 1)[-1] != "tasks" and (importer, module) not in ALLOWED_CIRCLES
        }
    circles = [sorted(circle) for circle in _circles(edges)]
    assert circles == [], f"import circles that are not an enqueue of a task: {circles}"
