"""Every lifecycle transition completes or leaves nothing behind; nothing is freed under a call.

A backend that misbehaves on purpose (fault_backend.py: hangs, fails to load at worker k, records
whether `close` came during one of its calls) runs the real model; the node is the real
DetectorNode in a real rclpy graph. After each failed transition the threads are back to where
they were and every backend that was loaded is closed.
"""
from __future__ import annotations

import threading

import pytest

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.backends import register_backend  # noqa: E402, I100
from faster_deployment_ros.ros.detector_node import DetectorNode  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from support import fault_backend  # noqa: E402
from support.node_harness import harnesses, image_msg  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE

register_backend('fault', 'support.fault_backend', 'FaultBackend')
pytestmark = pytest.mark.ros


@pytest.fixture
def harness(ros, yolox_model):
    fault_backend.INSTANCES.clear()
    fault_backend.HANGING.clear()
    fault_backend.RELEASE.clear()
    base = {'model_path': str(yolox_model), 'model_family': 'yolox', 'backend': 'fault'}
    try:
        with harnesses(DetectorNode, base, 'teardown_peer', {'image': (Image, 'image')},
                       {'detections': (Detection2DArray, 'detections')}) as make:
            yield make
    finally:
        fault_backend.RELEASE.set()


def node_threads():
    """Return the names of the node's own threads (pipeline stages, feeders, releasers)."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith('detector'))


def frame():
    import numpy as np
    return np.full((120, 160, 3), 90, np.uint8)


@pytest.mark.parametrize('how', ['cleanup', 'shutdown'])
def test_no_backend_is_closed_while_its_worker_is_inside_a_call(harness, how):
    h = harness(**{'fault.mode': 'hang'})
    h.start()
    h.pubs['image'].publish(image_msg(frame(), 1))
    assert fault_backend.HANGING.wait(30), 'the frame never reached the backend'
    hung = [b for b in fault_backend.INSTANCES if b.in_call]
    assert len(hung) == 1
    assert h.node.trigger_deactivate() == SUCCESS  # flush gives up after its bound
    if how == 'cleanup':
        assert h.node.trigger_cleanup() == SUCCESS
    else:
        assert h.node.trigger_shutdown() == SUCCESS
    # the node let go of it without closing it: the call is still running on its memory
    assert h.node.runtime is None
    assert not hung[0].closed.is_set() and not hung[0].closed_in_call
    fault_backend.RELEASE.set()
    assert hung[0].closed.wait(30), "the stuck worker's backend is released once it returns"
    assert not hung[0].closed_in_call


def test_configure_failing_at_worker_k_closes_the_workers_before_it(harness):
    h = harness(workers=3, **{'fault.fail_worker': 2})
    assert h.node.trigger_configure() == FAILURE
    assert 'injected load failure of worker 2' in h.node.configure_error
    assert [b.worker_index for b in fault_backend.INSTANCES] == [0, 1]
    assert all(b.closed.is_set() for b in fault_backend.INSTANCES)
    assert node_threads() == []
    assert h.node.runtime is None and h.node.lifecycle_state == 'unconfigured'


def test_configure_failing_after_every_worker_loaded_closes_them_all(harness):
    # a class the model does not have: refused once the 2 workers are loaded
    h = harness(workers=2, classes=['unicorn'])
    assert h.node.trigger_configure() == FAILURE
    assert 'unicorn' in h.node.configure_error
    assert len(fault_backend.INSTANCES) == 2
    assert all(b.closed.is_set() for b in fault_backend.INSTANCES)
    assert node_threads() == []
    # and the node configures once the parameter is right
    from rclpy.parameter import Parameter
    assert h.node.set_parameters([Parameter('classes', value=['dog'])])[0].successful
    h.start()
    h.pubs['image'].publish(image_msg(frame(), 2))
    assert len(h.wait_count(h.got['detections'], 1)) == 1


def test_activate_failing_half_way_leaves_no_subscription_thread_or_bond(harness, monkeypatch):
    h = harness(inputs=['/cam_a/image', '/cam_b/image'])
    assert h.node.trigger_configure() == SUCCESS
    real = h.node.create_subscription
    calls = []

    def second_fails(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise RuntimeError('injected: the middleware refused the subscription')
        return real(*args, **kwargs)
    monkeypatch.setattr(h.node, 'create_subscription', second_fails)
    assert h.node.trigger_activate() == FAILURE
    assert h.node.lifecycle_state == 'inactive' and not h.node.is_active
    assert not h.node.get_subscriptions_info_by_topic('/cam_a/image')
    feeders = [n for n in node_threads() if n.endswith('-feed')]
    assert not feeders, f'feeder threads of the failed activate: {feeders}'
    monkeypatch.setattr(h.node, 'create_subscription', real)
    assert h.node.trigger_activate() == SUCCESS  # the node is still usable
    assert h.node.trigger_deactivate() == SUCCESS
    assert h.node.trigger_cleanup() == SUCCESS
    assert all(b.closed.is_set() for b in fault_backend.INSTANCES)


def test_a_transition_that_raises_releases_everything_through_on_error(harness, monkeypatch):
    h = harness(workers=2)
    h.start()
    assert node_threads(), 'the pipeline runs'

    def broken_flush(timeout=None):
        raise RuntimeError('injected: flush raised')
    monkeypatch.setattr(h.node.runtime, 'flush', broken_flush)
    h.node.trigger_deactivate()
    assert h.node.lifecycle_state == 'unconfigured'
    assert h.node.runtime is None and not h.node.is_active
    assert all(b.closed.is_set() for b in fault_backend.INSTANCES)
    assert node_threads() == []
    h.start()  # and it configures and activates again
