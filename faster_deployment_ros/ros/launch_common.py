"""The perception nodes' launch description (launch, launch_ros), shared by launch/*.launch.py.

Launch arguments:
  params_file  parameter YAML (default: the launch file's shipped YAML under config/)
  model_path   model file; overrides model_path in the YAML (empty: the YAML's)
  image        input image topic the node's `image` (and `image/compressed`) is remapped to
  inputs       several cameras into one model, e.g. "[/front/image_raw, /rear/image_raw]"
               (results in /front/..., /rear/...); overrides image
  namespace    the node's namespace
  node_name    the node's name (default: the launch file's)

The node is a launch_ros LifecycleNode; with `autostart: true` (the shipped YAMLs) it configures
and activates itself. The environment gets what the middleware needs for camera-sized frames
(ros/middleware_env.py); a transport the user already chose is kept.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
import yaml

from .middleware_env import camera_env

PACKAGE = 'faster_deployment_ros'


def parse_inputs(text: str) -> list:
    """Return the topics of an `inputs:=` value: a YAML list or comma-separated topics."""
    value = yaml.safe_load(text) if text.strip() else []
    if isinstance(value, str):
        value = value.split(',')
    if not isinstance(value, list):
        raise ValueError(f'inputs:={text!r} is not a list of topics; write it as '
                         '"[/front/image_raw, /rear/image_raw]"')
    return [str(v).strip() for v in value if str(v).strip()]


def _node(context: LaunchContext, executable: str) -> list:
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {}
    if arg('model_path'):
        overrides['model_path'] = arg('model_path')
    inputs = parse_inputs(arg('inputs'))
    if inputs:  # several cameras, one model: each camera's results in its own namespace
        overrides['inputs'] = inputs
    image = arg('image')
    return [LifecycleNode(
        package=PACKAGE, executable=executable, name=arg('node_name'),
        namespace=arg('namespace'), output='screen', emulate_tty=True,
        parameters=[arg('params_file')] + ([overrides] if overrides else []),
        remappings=[('image', image), ('image/compressed', image + '/compressed')])]


def launch_for(executable: str, default_name: str, default_params: str) -> LaunchDescription:
    """Return the launch description of `executable` (a console script of this package)."""
    share = get_package_share_directory(PACKAGE)
    arguments = [
        ('params_file', os.path.join(share, 'config', default_params),
         'parameter YAML (see config/)'),
        ('model_path', '', 'model file; overrides model_path in the YAML'),
        ('image', 'image', 'input image topic'),
        ('inputs', '', 'several cameras into one model, e.g. "[/front/image_raw, '
         '/rear/image_raw]" (results in /front/..., /rear/...); overrides image'),
        ('namespace', '', "the node's namespace"),
        ('node_name', default_name, "the node's name"),
    ]
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=description)
          for name, default, description in arguments],
        *[SetEnvironmentVariable(k, v) for k, v in camera_env(os.environ, share).items()],
        OpaqueFunction(function=_node, args=[executable]),
    ])
