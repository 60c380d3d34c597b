"""Shared launch description of the perception nodes (needs ROS 2's `launch` and `launch_ros`).

Sets what the middleware needs for camera-sized frames, loads a parameter YAML, lets the
launch line override the model path and remap the input topic.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

PACKAGE = 'faster_deployment_ros'


def _env_defaults():
    """Large-data transports (Jazzy/Kilted) and buffer reuse for multi-MB frames, unless set."""
    defaults = {
        'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA',
        'MALLOC_MMAP_THRESHOLD_': '33554432',
        'MALLOC_TRIM_THRESHOLD_': '268435456',
    }
    if os.environ.get('ROS_DISTRO') == 'humble':
        # Fast DDS 2.6 has no LARGE_DATA builtin: use the shipped large shared-memory profile.
        share = get_package_share_directory(PACKAGE)
        defaults = {k: v for k, v in defaults.items() if not k.startswith('FASTDDS')}
        defaults['FASTRTPS_DEFAULT_PROFILES_FILE'] = os.path.join(
            share, 'config', 'fastdds_large_data.xml')
    return [SetEnvironmentVariable(k, os.environ.get(k, v)) for k, v in defaults.items()]


def parse_inputs(text: str) -> list:
    """'[/front/image_raw, /rear/image_raw]' or '/front/image_raw,/rear/image_raw' -> list."""
    return [t.strip().strip('\'"') for t in text.strip().strip('[]').replace(' ', ',').split(',')
            if t.strip().strip('\'"')]


def _node(context, executable, default_name):
    params = [LaunchConfiguration('params_file').perform(context)]
    overrides = {}
    model_path = LaunchConfiguration('model_path').perform(context)
    if model_path:
        overrides['model_path'] = model_path
    inputs = parse_inputs(LaunchConfiguration('inputs').perform(context))
    if inputs:  # several cameras, one model: each camera's results in its own namespace
        overrides['inputs'] = inputs
    if overrides:
        params.append(overrides)
    return [LifecycleNode(
        package=PACKAGE, executable=executable,
        name=LaunchConfiguration('node_name').perform(context) or default_name,
        namespace=LaunchConfiguration('namespace').perform(context),
        parameters=params, output='screen', emulate_tty=True,
        remappings=[('image', LaunchConfiguration('image').perform(context)),
                    ('image/compressed',
                     LaunchConfiguration('image').perform(context) + '/compressed')],
    )]


def launch_for(executable, default_name, default_params):
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', default_params),
                              description='parameter YAML (see config/)'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='model file; overrides model_path in the YAML'),
        DeclareLaunchArgument('image', default_value='image', description='input image topic'),
        DeclareLaunchArgument('inputs', default_value='',
                              description='several cameras into one model, e.g. '
                              '"[/front/image_raw, /rear/image_raw]" (results in /front/..., '
                              '/rear/...); overrides image'),
        DeclareLaunchArgument('namespace', default_value=''),
        DeclareLaunchArgument('node_name', default_value=default_name),
        *_env_defaults(),
        OpaqueFunction(function=_node, args=[executable, default_name]),
    ])

