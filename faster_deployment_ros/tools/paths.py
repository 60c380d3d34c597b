"""Where the tools find the repository, the shared assets, models and parameter files."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

#: the repository root (of a source checkout; an installed package has no config/ there)
ROOT = Path(__file__).resolve().parents[2]
#: the shared videos and models beside the repository; FDR_SHARED overrides it
SHARED = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))
MODEL_DIRS = (SHARED / 'models', Path.home() / '.cache' / 'faster_deployment_ros' / 'models')
DEFAULT_PARAMS = 'config/yolox_nano_onnxruntime.yaml'


def find_model(model: Optional[str]) -> Optional[Path]:
    """Return the model as given, else a file of that name in MODEL_DIRS; None if neither."""
    if not model:
        return None
    path = Path(model).expanduser()
    if path.is_file():
        return path.resolve()
    for d in MODEL_DIRS:
        if (d / path.name).is_file():
            return (d / path.name).resolve()
    return None


def find_params(params: str) -> Optional[Path]:
    """Return a parameter YAML as given, else relative to ROOT or the installed share; or None."""
    for cand in (Path(params), ROOT / params):
        if cand.is_file():
            return cand.resolve()
    try:
        from ament_index_python.packages import get_package_share_directory
        cand = Path(get_package_share_directory('faster_deployment_ros')) / params
        return cand if cand.is_file() else None
    except Exception:  # noqa: B902 - not installed: no packaged config
        return None
