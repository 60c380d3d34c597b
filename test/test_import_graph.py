"""The package's layers, checked from the source (docs/architecture.md describes them).

core <- gpu <- backends / models <- runtime <- ros <- tools: each layer imports only the layers
below it (models need no backend: they see tensors described by core.types), so a backend never
knows a model family and the ROS layer stays thin. Imports are read with `ast`, including the ones
inside functions (a lazy import is still a dependency). A module also never imports another
module's private (underscore) names: what is shared gets a public name in its one home. And no
module imports itself through others (an import cycle), lazily or not: shared code then has a
home below both sides.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'faster_deployment_ros'

#: layer -> the layers of ours it may import (besides itself)
ALLOWED = {
    'core': set(),
    'gpu': {'core'},
    'models': {'core'},
    'backends': {'core', 'gpu'},  # gpu: for GPU-capable backends (TensorRT)
    # runtime: backends per worker + adapter + pipeline, the parameter table (ROS-free)
    'runtime': {'core', 'gpu', 'models', 'backends'},
    'ros': {'core', 'gpu', 'models', 'backends', 'runtime'},
    'tools': {'core', 'gpu', 'models', 'backends', 'runtime', 'ros'},
}
TOP = '(package)'  # faster_deployment_ros/__init__.py
ALLOWED[TOP] = set()


def modules() -> Iterator[Tuple[Path, List[str], bool]]:
    """(file, dotted module parts, is a package __init__) for every module of the package."""
    for path in sorted((ROOT / PACKAGE).rglob('*.py')):
        parts = list(path.relative_to(ROOT).with_suffix('').parts)
        is_pkg = parts[-1] == '__init__'
        yield path, parts[:-1] if is_pkg else parts, is_pkg


def imports(path: Path, parts: List[str], is_pkg: bool) -> Iterator[Tuple[int, str, List[str]]]:
    """(line, absolute module, imported names) of every import of our own package in `path`."""
    here = parts if is_pkg else parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            yield node.lineno, target, [a.name for a in node.names]


def layer(dotted: str) -> str:
    parts = dotted.split('.')
    return parts[1] if len(parts) > 1 else TOP


def own_imports():
    for path, parts, is_pkg in modules():
        for line, target, names in imports(path, parts, is_pkg):
            if target == PACKAGE or target.startswith(PACKAGE + '.'):
                yield path, '.'.join(parts), line, target, names


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted({f'{path.relative_to(ROOT)}' for path, parts, _ in modules()
                      if layer('.'.join(parts)) not in ALLOWED})
    assert not unknown, f'modules outside the known layers (add the layer to ALLOWED): {unknown}'


def test_layers_import_only_the_layers_below():
    bad = []
    for path, module, line, target, names in own_imports():
        src = layer(module)
        # `from .. import tools` names a layer through the package itself
        dsts = {layer(target)} if target != PACKAGE else {layer(f'{PACKAGE}.{n}') for n in names}
        for dst in dsts - {src} - ALLOWED[src]:
            bad.append(f'{path.relative_to(ROOT)}:{line}: {src} imports {dst} ({target}); '
                       f'{src} may import only {sorted(ALLOWED[src]) or "nothing of ours"}')
    assert not bad, 'layering violated:\n' + '\n'.join(bad)


def test_no_private_names_imported_across_modules():
    bad = [f'{path.relative_to(ROOT)}:{line}: from {target} import {name}'
           for path, module, line, target, names in own_imports()
           for name in names if name.startswith('_') and target != module]
    assert not bad, ('private names used outside their module (give them a public name in '
                     'one home):\n' + '\n'.join(bad))


def module_graph() -> Dict[str, Dict[str, str]]:
    """Return module -> {module it imports: 'file:line' of the first such import}, ours only.

    ``from package import name`` is an edge to the submodule ``package.name`` where that is a
    module, else to the package (its ``__init__``); the parent packages Python also imports
    on the way are not edges (every submodule would otherwise form a cycle with its package).
    """
    known = {'.'.join(parts) for _, parts, _ in modules()}
    graph: Dict[str, Dict[str, str]] = {m: {} for m in known}
    for path, module, line, target, names in own_imports():
        subs = [f'{target}.{n}' for n in names if f'{target}.{n}' in known]
        dsts = subs if subs and len(subs) == len(names) else [target, *subs]
        for dst in dsts:
            if dst in known and dst != module:
                graph[module].setdefault(dst, f'{path.relative_to(ROOT)}:{line}')
    return graph


def import_cycles(graph: Dict[str, Dict[str, str]]) -> List[List[str]]:
    """Return one cycle (modules, the first repeated last) per strongly connected group."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    groups: List[List[str]] = []

    def visit(v: str) -> None:  # Tarjan; the package's graph is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:  # the shortest way from the group's first module back to itself
        members, start = set(group), group[0]
        paths = {start: [start]}
        frontier = [start]
        while frontier and start not in [w for v in frontier for w in graph[v]]:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w in members and w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
            frontier = nxt
        last = next(v for v in frontier if start in graph[v])
        cycles.append(paths[last] + [start])
    return cycles


def test_import_cycle_check_finds_a_cycle():
    graph = {'a': {'b': 'a.py:1'}, 'b': {'c': 'b.py:2'}, 'c': {'a': 'c.py:3', 'd': 'c.py:4'},
             'd': {}}
    assert import_cycles(graph) == [['a', 'b', 'c', 'a']]
    assert import_cycles({'a': {'b': 'a.py:1'}, 'b': {}}) == []


def test_no_import_cycles():
    graph = module_graph()
    cycles = import_cycles(graph)
    described = [' -> '.join(c) + '\n    ' + '\n    '.join(
        f'{graph[a][b]}: {a} imports {b}' for a, b in zip(c, c[1:])) for c in cycles]
    assert not cycles, ('import cycles (move what both sides need into a module below them, '
                        'or split the module):\n  ' + '\n  '.join(described))


@pytest.mark.parametrize('layer_name', sorted(k for k in ALLOWED if k != TOP))
def test_layer_packages_exist(layer_name):
    assert (ROOT / PACKAGE / layer_name / '__init__.py').is_file()
