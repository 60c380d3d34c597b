"""rosbags typestore with the message types the replay tools need (vision_msgs included).

rosbags ships the core ROS 2 types but not vision_msgs; missing types are read from .msg files:
this repository's interfaces/<pkg>/msg first (works without any ROS install), then the package's
share directory from the ament index. Dependencies are followed recursively. ROS-free.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Optional

from rosbags.typesys import get_types_from_msg, get_typestore, Stores
from rosbags.typesys.store import Typestore

REPO_INTERFACES = Path(__file__).resolve().parents[2] / 'interfaces'
DEFAULT_EXTRA = ('vision_msgs/msg/Detection2DArray', 'vision_msgs/msg/Detection3DArray',
                 'vision_msgs/msg/Classification', 'vision_msgs/msg/VisionInfo',
                 'vision_msgs/msg/LabelInfo')


def normalize_type(name: str) -> str:
    """'pkg/Type', 'pkg/msg/Type' or 'pkg.msg.Type' -> 'pkg/msg/Type'."""
    parts = [p for p in name.replace('.', '/').split('/') if p]
    if len(parts) == 2:
        parts.insert(1, 'msg')
    if len(parts) != 3:
        raise ValueError(f'message type {name!r} is not of the form pkg/msg/Type')
    return '/'.join(parts)


def _msg_file(typename: str) -> Optional[Path]:
    pkg, kind, name = typename.split('/')
    candidates: List[Path] = [REPO_INTERFACES / pkg / kind / f'{name}.msg']
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory(pkg)) / kind / f'{name}.msg')
    except Exception:  # noqa: B902 - no ament index, or the package is not installed
        pass
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / 'share' / pkg / kind / f'{name}.msg')
    return next((c for c in candidates if c.is_file()), None)


def _referenced(fielddefs) -> Iterable[str]:
    for _, (nodetype, spec) in fielddefs:
        # NAME -> 'pkg/msg/T'; SEQUENCE/ARRAY -> ((NAME, 'pkg/msg/T'), n)
        if isinstance(spec, str):
            yield spec
        elif isinstance(spec, tuple) and isinstance(spec[0], tuple) and \
                isinstance(spec[0][1], str) and '/' in spec[0][1]:
            yield spec[0][1]


def register_types(store: Typestore, typenames: Iterable[str]) -> Typestore:
    """Register typenames (and whatever they reference) that the store lacks.

    Raises KeyError naming the type whose .msg file cannot be found.
    """
    todo = [normalize_type(t) for t in typenames]
    found = {}
    while todo:
        name = todo.pop()
        if name in store.types or name in found:
            continue
        path = _msg_file(name)
        if path is None:
            raise KeyError(f'no .msg definition found for {name} (looked in {REPO_INTERFACES} '
                           'and the ament index / AMENT_PREFIX_PATH share directories)')
        types = get_types_from_msg(path.read_text(), name)
        found.update(types)
        for _, fields in types.values():
            todo.extend(t for t in _referenced(fields) if '/' in t)
    if found:
        store.register(found)
    return store


def make_typestore(extra: Iterable[str] = DEFAULT_EXTRA) -> Typestore:
    """ROS 2 Kilted typestore plus ``extra`` types (vision_msgs arrays by default)."""
    store = get_typestore(Stores.ROS2_KILTED)
    return register_types(store, extra)
