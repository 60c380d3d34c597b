"""The detector node with `backend: tensorrt` (stand-in of each TensorRT version installed).

Before issue #10 `threads: N` or `autotune: true` with the tensorrt backend failed configure
with "unknown tensorrt option threads"; now the node's common options reach the backend and the
only thing missing here is the GPU, which configure reports as such. The GPU path itself is in
test_tensorrt_gpu.py.
"""
from __future__ import annotations

import gc
import sys

from faster_deployment_ros.backends import backend_class
from faster_deployment_ros.gpu import gpu_status
import pytest
from support.ros_nodes import destroy_node
from support.trt_standins import load


@pytest.mark.ros
@pytest.mark.parametrize('version', ['8.6', '10', '11'])
@pytest.mark.parametrize('params', [{'threads': 2}, {'autotune': True, 'workers': 2}])
def test_common_parameters_reach_the_tensorrt_backend(ros, yolox_model, tmp_path, monkeypatch,
                                                      version, params):
    if gpu_status()[0]:
        pytest.skip('a GPU is present: configure would succeed (test_tensorrt_gpu.py)')
    from faster_deployment_ros.ros.detector_node import DetectorNode
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    monkeypatch.setitem(sys.modules, 'tensorrt', load(version))
    overrides = dict(model_path=str(yolox_model), model_family='yolox', backend='tensorrt',
                     diagnostics_period=0.0, **params)
    overrides['tensorrt.cache_dir'] = str(tmp_path)
    node = DetectorNode(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.lifecycle_state == 'unconfigured'
        error = node.configure_error
        assert 'needs an NVIDIA GPU' in error, error
        assert 'unknown tensorrt option' not in error
    finally:
        node.release()
        gc.collect()
        destroy_node(node)


def test_tensorrt_declares_no_thread_knob():
    """What the node and autotune read: workers are contexts, threads mean nothing."""
    assert backend_class('tensorrt').uses_threads is False
    assert backend_class('onnxruntime').uses_threads is True
