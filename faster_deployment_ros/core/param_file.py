"""Write a ROS 2 parameter file (YAML) from a flat dict, without needing ROS or PyYAML."""
from __future__ import annotations

from typing import Any, Dict


def params_yaml(params: Dict[str, Any], comment: str = '', node: str = '/**') -> str:
    """Return a ROS 2 parameter file for `params` (scalars and flat lists), `comment` on top.

    A dotted key (`onnxruntime.providers`) becomes a nested namespace, as ROS 2 expects.
    """
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return 'true' if v else 'false'
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return '[' + ', '.join(fmt(x) for x in v) + ']'
        return '"' + str(v).replace('\\', '\\\\').replace('"', '\\"') + '"'

    lines = [f'# {line}' for line in comment.splitlines()] if comment else []
    lines += [f'{node}:', '  ros__parameters:']
    nested: Dict[str, Dict[str, Any]] = {}
    for k, v in params.items():
        if '.' in k:
            ns, sub = k.split('.', 1)
            nested.setdefault(ns, {})[sub] = v
        else:
            lines.append(f'    {k}: {fmt(v)}')
    for ns, items in nested.items():
        lines.append(f'    {ns}:')
        lines += [f'      {k}: {fmt(v)}' for k, v in items.items()]
    return '\n'.join(lines) + '\n'


__all__ = ['params_yaml']
