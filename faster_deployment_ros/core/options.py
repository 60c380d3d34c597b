"""Parse option values that arrive as Python values, ROS parameters or strings (YAML, env).

One rule for every yes/no option: true/false, 1/0, yes/no, on/off (any case) are understood;
anything else is an error naming the option, never silently false.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

TRUE = ('1', 'true', 'yes', 'on')
FALSE = ('0', 'false', 'no', 'off')
AUTO = ('auto', 'none', 'default')


def parse_bool(value: Any, what: str, default: Optional[bool] = None,
               allow_auto: bool = False) -> Optional[bool]:
    """Return True or False from `value`; `default` when unset (None or '').

    With `allow_auto`, 'auto' / 'none' / 'default' give None (let the code decide). Raises
    ValueError for anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    text = '' if value is None else str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    if text == '':
        return default
    if allow_auto and text in AUTO:
        return None
    choices = 'true, false or auto' if allow_auto else 'true or false'
    raise ValueError(f'{what} must be {choices}, not {value!r}')


def parse_size(value: Any, what: str = 'input_size') -> Tuple[int, int]:
    """(h, w) from an int, a pair, or '416' / '416,416' / '416x416'."""
    if isinstance(value, str):
        parts = [p for p in value.replace('x', ',').split(',') if p.strip()]
        value = [int(p) for p in parts]
    if isinstance(value, (int, np.integer)):
        value = (value, value)
    h, w = (int(v) for v in (value if len(value) == 2 else (value[0], value[0])))
    if h <= 0 or w <= 0:
        raise ValueError(f'{what} must be positive, not {value!r}')
    return h, w


__all__ = ['parse_bool', 'parse_size', 'TRUE', 'FALSE', 'AUTO']
