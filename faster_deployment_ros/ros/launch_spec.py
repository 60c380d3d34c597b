"""What the launch files do, as plain data and without ROS's launch system.

launch_common.py turns this into a LaunchDescription (launch / launch_ros actions); keeping the
decisions here (declared arguments, environment, node name, parameters, remappings) lets them be
exercised where `launch` and `launch_ros` cannot be installed: `ros_command` gives the command
line launch_ros would start the node with, so a test can run exactly that node.
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Tuple

from .middleware_env import camera_env

PACKAGE = 'faster_deployment_ros'

#: (name, default, description) of the launch arguments; None: set per launch file
ARGUMENTS: List[Tuple[str, Optional[str], str]] = [
    ('params_file', None, 'parameter YAML (see config/)'),
    ('model_path', '', 'model file; overrides model_path in the YAML'),
    ('image', 'image', 'input image topic'),
    ('inputs', '', 'several cameras into one model, e.g. "[/front/image_raw, /rear/image_raw]" '
     '(results in /front/..., /rear/...); overrides image'),
    ('namespace', '', ''),
    ('node_name', None, ''),
]


def env_defaults(environ: Mapping[str, str], share: str) -> Dict[str, str]:
    """Return the middleware and allocator environment for camera-sized frames.

    The shipped Fast DDS profile under `share` and buffer reuse (ros/middleware_env.py, on every
    distro); a variable already set in `environ` keeps its value.
    """
    return camera_env(environ, share)


def parse_inputs(text: str) -> list:
    """'[/front/image_raw, /rear/image_raw]' or '/front/image_raw,/rear/image_raw' -> list."""
    return [t.strip().strip('\'"') for t in text.strip().strip('[]').replace(' ', ',').split(',')
            if t.strip().strip('\'"')]


def launch_arguments(default_name: str, default_params: str, share: str) -> Dict[str, str]:
    """Every launch argument's default for one launch file."""
    values = {name: default for name, default, _ in ARGUMENTS}
    values['params_file'] = os.path.join(share, 'config', default_params)
    values['node_name'] = default_name
    return values


def node_spec(executable: str, default_name: str, args: Mapping[str, str]) -> dict:
    """Return the LifecycleNode a launch file starts, from its (resolved) launch arguments."""
    overrides: Dict[str, object] = {}
    if args.get('model_path'):
        overrides['model_path'] = args['model_path']
    inputs = parse_inputs(args.get('inputs', ''))
    if inputs:  # several cameras, one model: each camera's results in its own namespace
        overrides['inputs'] = inputs
    image = args.get('image', 'image')
    return {'package': PACKAGE, 'executable': executable,
            'name': args.get('node_name') or default_name,
            'namespace': args.get('namespace', ''),
            'parameters': [args['params_file']] + ([overrides] if overrides else []),
            'remappings': [('image', image), ('image/compressed', image + '/compressed')]}


def ros_command(spec: dict, executable_path: str) -> List[str]:
    """Return the command line launch_ros starts `spec` with.

    Its Node action's --ros-args: node name, namespace, parameter files, then the overrides,
    then the remappings.
    """
    cmd = [executable_path, '--ros-args', '-r', f'__node:={spec["name"]}']
    if spec['namespace']:
        ns = spec['namespace']
        cmd += ['-r', f'__ns:={ns if ns.startswith("/") else "/" + ns}']
    for p in spec['parameters']:
        if isinstance(p, str):
            cmd += ['--params-file', p]
        else:
            for k, v in p.items():
                value = '[' + ', '.join(f"'{x}'" for x in v) + ']' if isinstance(v, list) else v
                cmd += ['-p', f'{k}:={value}']
    for src, dst in spec['remappings']:
        cmd += ['-r', f'{src}:={dst}']
    return cmd
