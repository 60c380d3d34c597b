"""What `colcon build` + `ros2 launch` on a robot rely on, read from the source tree.

(test_robot.py builds and launches it for real.) Each launch file names a console script that
setup.py installs and a parameter file that config/ ships, and every shipped YAML holds only
parameters the nodes declare.
"""
from __future__ import annotations

import ast
from pathlib import Path
import re

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / 'launch').glob('*.launch.py'))


def console_scripts() -> set:
    text = (ROOT / 'setup.py').read_text()
    return set(re.findall(r"'([\w-]+) = faster_deployment_ros\.[\w.]+:main'", text))


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_installed_executable_and_shipped_config(path):
    tree = ast.parse(path.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, 'id', '') == 'launch_for']
    assert len(calls) == 1, 'each launch file builds its description with launch_for'
    executable, _, params = (a.value for a in calls[0].args)
    assert executable in console_scripts()
    assert (ROOT / 'config' / params).is_file()


@pytest.mark.ros
@pytest.mark.parametrize('path', sorted((ROOT / 'config').glob('*.yaml')), ids=lambda p: p.name)
def test_shipped_yaml_uses_only_declared_parameters(path):
    from faster_deployment_ros.backends import available_backends
    from faster_deployment_ros.ros.depth_node import DepthNode
    from faster_deployment_ros.ros.detector_node import DetectorNode
    from faster_deployment_ros.ros.segmentation_node import SegmentationNode
    from faster_deployment_ros.runtime import table

    params = yaml.safe_load(path.read_text())['/**']['ros__parameters']
    node = DepthNode if 'depth' in path.name else \
        SegmentationNode if 'segmentation' in path.name else DetectorNode
    known = set(table(node.TASK))
    unknown = [k for k, v in params.items() if k not in known
               and not (k in available_backends() and isinstance(v, dict))]
    assert not unknown, f'{path.name}: parameters no node reads: {unknown}'
    assert params['backend'] in available_backends()
