"""The benchmark's CPU accounting is tools.processes' (CpuWatch, load_avg).

Only measure.py still imports it from here; import from ``..processes`` instead.
"""
from ..processes import CpuWatch, load_avg  # noqa: F401 - measure.py's import path

__all__ = ['CpuWatch', 'load_avg']
