"""Shared launch description of the perception nodes (needs ROS 2's `launch` and `launch_ros`).

Sets what the middleware needs for camera-sized frames, loads a parameter YAML, lets the
launch line override the model path and remap the input topic. The decisions themselves live in
launch_spec.py (plain data, testable without the launch system); this only wraps them in
launch actions.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from .launch_spec import ARGUMENTS, env_defaults, launch_arguments, node_spec, PACKAGE
from .launch_spec import parse_inputs  # noqa: F401 - kept importable from here


def _node(context, executable, default_name):
    args = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    spec = node_spec(executable, default_name, args)
    return [LifecycleNode(
        package=spec['package'], executable=spec['executable'], name=spec['name'],
        namespace=spec['namespace'], parameters=spec['parameters'], output='screen',
        emulate_tty=True, remappings=spec['remappings'])]


def launch_for(executable, default_name, default_params):
    share = get_package_share_directory(PACKAGE)
    defaults = launch_arguments(default_name, default_params, share)
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=defaults[name], description=description)
          for name, _, description in ARGUMENTS],
        *[SetEnvironmentVariable(k, v) for k, v in env_defaults(os.environ, share).items()],
        OpaqueFunction(function=_node, args=[executable, default_name]),
    ])
