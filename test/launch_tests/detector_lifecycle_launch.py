"""launch_testing: the detector's lifecycle driven by launch, as ros2/demos tests lifecycle_py.

Run by test/test_launch_lifecycle.py as `launch_test THIS model_path:=... bag:=... out_dir:=...`
in a shell with the colcon workspace sourced. launch_ros drives the node (autostart off):
configure when the process starts, activate once inactive; once active, `fdr-bag play-record`
replays a recording into it; when the replay has exited, deactivate, cleanup and shutdown (from
unconfigured), each emitted when the node reports the previous state (OnStateTransition). The
test waits for each state's line in the node's output and for the replay's report.
"""
import os
import unittest

from ament_index_python.packages import get_package_share_directory
import launch
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, RegisterEventHandler
from launch.event_handlers import OnProcessExit, OnProcessStart
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
import launch_ros.actions
import launch_ros.event_handlers
import launch_ros.events.lifecycle
from launch_ros.substitutions import ExecutableInPackage
import launch_testing
import launch_testing.actions
import launch_testing.asserts
from lifecycle_msgs.msg import Transition

PACKAGE = 'faster_deployment_ros'


def change_state(node, transition_id):
    return EmitEvent(event=launch_ros.events.lifecycle.ChangeState(
        lifecycle_node_matcher=matches_action(node), transition_id=transition_id))


def on_transition(node, start, goal, *entities):
    return RegisterEventHandler(launch_ros.event_handlers.OnStateTransition(
        target_lifecycle_node=node, start_state=start, goal_state=goal, entities=list(entities)))


def generate_test_description():
    share = get_package_share_directory(PACKAGE)
    detector = launch_ros.actions.LifecycleNode(
        package=PACKAGE, executable='detector_node', name='lc_detector', namespace='',
        output='screen',
        parameters=[os.path.join(share, 'config', 'yolox_nano_onnxruntime.yaml'),
                    {'model_path': LaunchConfiguration('model_path'), 'autostart': False}],
        remappings=[('image', '/lc/image_raw')])
    replay = ExecuteProcess(
        cmd=[ExecutableInPackage('fdr-bag', PACKAGE), 'play-record', LaunchConfiguration('bag'),
             LaunchConfiguration('out_dir'), '--rate', '0', '--lockstep', '--in-topic',
             '/lc/image_raw', '--out-topic', '/detections', '--wait-timeout', '60'],
        name='replay', output='screen')
    finalized = ExecuteProcess(cmd=['echo', 'lc_detector reached finalized'], name='finalized',
                               output='screen')
    return launch.LaunchDescription([
        DeclareLaunchArgument('model_path', description='YOLOX-nano ONNX model'),
        DeclareLaunchArgument('bag', description='rosbag2 recording of camera frames'),
        DeclareLaunchArgument('out_dir', description='where the replay writes its report'),
        detector,
        # Right after the detector starts, make it take the 'configure' transition.
        RegisterEventHandler(OnProcessStart(
            target_action=detector,
            on_start=[change_state(detector, Transition.TRANSITION_CONFIGURE)])),
        # Inactive after configuring: activate.
        on_transition(detector, 'configuring', 'inactive',
                      change_state(detector, Transition.TRANSITION_ACTIVATE)),
        # Active: replay the recording into it (frames in, detections out).
        on_transition(detector, 'activating', 'active', replay),
        # The replay is done: deactivate.
        RegisterEventHandler(OnProcessExit(
            target_action=replay,
            on_exit=[change_state(detector, Transition.TRANSITION_DEACTIVATE)])),
        # Inactive after deactivating: cleanup.
        on_transition(detector, 'deactivating', 'inactive',
                      change_state(detector, Transition.TRANSITION_CLEANUP)),
        # Unconfigured after cleaning up: shut down.
        on_transition(detector, 'cleaningup', 'unconfigured',
                      change_state(detector, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)),
        on_transition(detector, 'shuttingdown', 'finalized', finalized),
        launch_testing.actions.ReadyToTest(),
    ]), {'detector': detector, 'replay': replay, 'finalized': finalized}


class TestDetectorLifecycle(unittest.TestCase):

    def test_every_transition_under_launch(self, proc_output, detector, replay, finalized):
        """The node reaches each state in turn and detects people while active."""
        proc_output.assertWaitFor('configured: YoloxAdapter', process=detector, timeout=120)
        proc_output.assertWaitFor('active: /lc/image_raw', process=detector, timeout=30)
        # the replay's report (stdout; ROS logs go to stderr)
        proc_output.assertWaitFor('frames in 12, out 12', process=replay, timeout=180,
                                  stream='stdout')
        proc_output.assertWaitFor('with a person 100.0%', process=replay, stream='stdout')
        proc_output.assertWaitFor('inactive', process=detector, timeout=60)
        proc_output.assertWaitFor('cleaned up', process=detector, timeout=30)
        proc_output.assertWaitFor('lc_detector reached finalized', process=finalized,
                                  timeout=30, stream='stdout')


@launch_testing.post_shutdown_test()
class TestDetectorLifecycleAfterShutdown(unittest.TestCase):

    def test_graceful_exit(self, proc_info, detector, replay):
        """The replay succeeded and the node exited cleanly on launch's SIGINT."""
        launch_testing.asserts.assertExitCodes(proc_info, process=replay)
        launch_testing.asserts.assertExitCodes(proc_info, process=detector)
