"""The triton backend against a real Triton Inference Server started here.

The server (test/support/triton_server.py) is pytriton's tritonserver in its own process, serving
the shared YOLOX-nano ONNX through ONNX Runtime, on 127.0.0.1. Detections through it are held to
the local ONNX Runtime backend's on frames of the shared plaza video (YOLOv8n too); faults
(timeout, model unloaded, server stopped, another model under the same name) are BackendErrors
with the server's words, and a restarted server is used again by the same backend and runtime
without restarting them (the node: test_triton_node.py).
"""
from __future__ import annotations

import threading
import time

from faster_deployment_ros.backends import BackendError, create_backend
from faster_deployment_ros.backends.triton_backend import parse_model_path
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.runtime import PerceptionRuntime, RuntimeConfig
from faster_deployment_ros.tools.frames import read_frames
import numpy as np
import pytest
from support.shared_data import CACHE, missing
from support.triton_server import free_ports, triton_server, TritonServer

pytestmark = pytest.mark.slow  # a server start is ~10 s on 2 cores

FRAMES = 8


@pytest.fixture(scope='module')
def client_lib():
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as exc:
        missing(f'tritonclient[grpc] is not installed ({exc}): scripts/setup_env.sh installs '
                'requirements/triton.txt')
    return grpcclient


@pytest.fixture(scope='module')
def server(client_lib, yolox_model):
    """One server for the module: the model, a slow copy (timeouts), a spare (unloading)."""
    with triton_server(yolox_model, extra=['--slow', 'slow=3', '--slow', 'spare=0']) as s:
        yield s


@pytest.fixture(scope='module')
def frames(plaza_video):
    got = read_frames(plaza_video, FRAMES, step=25)
    assert len(got) == FRAMES
    return got


@pytest.fixture(scope='module')
def reference(yolox_model, frames):
    """Local ONNX Runtime: the adapter, the tensors in and out, the detections per frame."""
    with create_backend('onnxruntime', str(yolox_model)) as ort:
        adapter = create_adapter('yolox', ort.inputs, ort.outputs, ort.metadata,
                                 conf_threshold=0.3)
        tensors, outputs, dets = [], [], []
        for frame in frames:
            x, meta = adapter.preprocess(frame)
            out = ort.infer(x)
            tensors.append((x, meta))
            outputs.append(out)
            dets.append(adapter.postprocess(out, meta))
        specs = (ort.inputs, ort.outputs)
    assert sum(len(d) for d in dets) > 0, 'the reference frames hold no detection'
    return adapter, specs, tensors, outputs, dets


def assert_same_detections(got, want) -> None:
    assert len(got) == len(want)
    assert got.class_ids.tolist() == want.class_ids.tolist()
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)


def test_model_path_forms():
    assert parse_model_path('triton://10.0.0.5:8001/yolox') == ('10.0.0.5:8001', 'yolox', '')
    assert parse_model_path('triton://h:1/yolox/3') == ('h:1', 'yolox', '3')
    assert parse_model_path('yolox') == ('', 'yolox', '')
    for bad in ('/models/yolox.onnx', 'yolox.onnx', 'triton://h:1/', 'triton://h:1/a/b/c', ''):
        with pytest.raises(BackendError, match='triton://HOST:PORT/MODEL'):
            parse_model_path(bad)


def test_options_that_contradict_model_path_are_refused(client_lib):
    with pytest.raises(BackendError, match='contradicts model_path'):
        create_backend('triton', 'triton://127.0.0.1:1/a', url='127.0.0.1:2')
    with pytest.raises(BackendError, match='unknown triton option'):
        create_backend('triton', 'a', urll='x')
    with pytest.raises(BackendError, match='timeout_s must be >= 0'):
        create_backend('triton', 'a', timeout_s=-1)


def test_metadata_shapes_and_dtypes_come_from_the_server(server, reference):
    _, (ort_in, ort_out), *_ = reference
    with create_backend('triton', server.model_path()) as b:
        assert b.inputs == ort_in and b.outputs == ort_out  # batch 1 per request, like the file
        assert b.max_batch_size == 8
        assert b.uses_threads is False
        assert 'max_batch_size=8' in b.describe()
    with create_backend('triton', 'yolox_nano', url=server.url, model_version='1') as b:
        assert b.inputs == ort_in


@pytest.mark.parametrize('shared_memory', ['false', 'true'])
def test_detections_equal_onnxruntime_on_the_plaza_video(server, reference, shared_memory):
    adapter, _, tensors, outputs, dets = reference
    with create_backend('triton', server.model_path(), shared_memory=shared_memory) as b:
        assert b.shared_memory is (shared_memory == 'true')
        for (x, meta), out, want in zip(tensors, outputs, dets):
            got = b.infer(x)
            assert [o.shape for o in got] == [o.shape for o in out]
            np.testing.assert_allclose(got[0], out[0], atol=1e-3)
            assert_same_detections(adapter.postprocess(got, meta), want)


def test_shared_memory_auto_is_on_for_loopback_only(server):
    with create_backend('triton', server.model_path()) as b:
        assert b.shared_memory  # 127.0.0.1: same host
    with create_backend('triton', server.model_path(), shared_memory='auto') as b:
        assert b.describe().endswith('tensors=shared memory')


def test_several_workers_return_every_frame_in_order(server, reference, frames):
    adapter, _, _, _, dets = reference
    results, done = [], threading.Event()

    def on_result(r):
        results.append(r)
        if len(results) == 3 * FRAMES:
            done.set()

    cfg = RuntimeConfig(model_path=server.model_path(), backend='triton', workers=3,
                        queue_size=3 * FRAMES, full_policy='block', model_family='yolox')
    runtime = PerceptionRuntime(cfg, lambda b: create_adapter(
        'yolox', b.inputs, b.outputs, b.metadata, conf_threshold=0.3), on_result)
    try:
        for i in range(3 * FRAMES):
            assert runtime.submit(frames[i % FRAMES], context=i)
        assert done.wait(120), f'{len(results)} of {3 * FRAMES} results'
    finally:
        runtime.close()
    assert [r.context for r in results] == list(range(3 * FRAMES))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert {r.worker for r in results} == {0, 1, 2}
    for r in results:
        assert_same_detections(r.result[0], dets[r.context % FRAMES])


def test_a_wrong_model_name_lists_the_models_the_server_has(server):
    with pytest.raises(BackendError) as err:
        create_backend('triton', server.model_path('yolo_nano'))
    text = str(err.value)
    assert "model 'yolo_nano'" in text and server.url in text
    assert 'yolox_nano (READY)' in text and 'slow (READY)' in text


def test_an_unreachable_server_names_the_url_and_how_to_start_one(client_lib):
    port, = free_ports(1)
    t0 = time.monotonic()
    with pytest.raises(BackendError) as err:
        create_backend('triton', f'triton://127.0.0.1:{port}/yolox_nano')
    text = str(err.value)
    assert f'cannot reach the Triton server at 127.0.0.1:{port}' in text
    assert 'triton_onnx_server.py' in text and 'Connection refused' in text
    assert time.monotonic() - t0 < 5


def test_a_request_over_timeout_s_is_an_error_naming_the_option(server, reference):
    _, _, tensors, _, _ = reference
    with create_backend('triton', server.model_path('slow'), timeout_s=0.5) as b:
        t0 = time.monotonic()
        with pytest.raises(BackendError, match=r'no answer within 0.5 s \(triton.timeout_s\)'):
            b.infer(tensors[0][0])
        assert time.monotonic() - t0 < 2.5


def test_a_wrong_input_shape_is_refused_before_sending(server):
    with create_backend('triton', server.model_path()) as b:
        with pytest.raises(BackendError, match=r'takes shape \(1, 3, 416, 416\) float32, got '
                                               r'\(1, 3, 320, 320\)'):
            b.infer([np.zeros((1, 3, 320, 320), np.float32)])
        with pytest.raises(BackendError, match='takes 1 input'):
            b.infer([])


def test_a_model_unloaded_mid_run_fails_with_the_servers_words(server, client_lib, reference):
    _, _, tensors, outputs, _ = reference
    with create_backend('triton', server.model_path('spare'), shared_memory='false') as b:
        np.testing.assert_allclose(b.infer(tensors[0][0])[0], outputs[0][0], atol=1e-3)
        client_lib.InferenceServerClient(server.url).unload_model('spare')
        with pytest.raises(BackendError, match="model 'spare' .* is not loaded: .*spare"):
            b.infer(tensors[0][0])
        with pytest.raises(BackendError, match='is not ready .* the server has: .*yolox_nano'):
            b.infer(tensors[0][0])  # the reconnect finds it gone


def test_a_stopped_server_fails_frames_and_a_restarted_one_is_used_again(
        client_lib, yolox_model, reference, frames):
    """Through a runtime: failed frames counted with the reason, then recovery, same objects."""
    adapter, _, tensors, outputs, dets = reference
    server = TritonServer(yolox_model).start()
    results, cv = [], threading.Condition()

    def on_result(r):
        with cv:
            results.append(r)
            cv.notify_all()

    def wait(n):
        with cv:
            assert cv.wait_for(lambda: len(results) >= n, 60), f'{len(results)} of {n}'

    cfg = RuntimeConfig(model_path=server.model_path(), backend='triton', workers=2,
                        queue_size=FRAMES, full_policy='block', model_family='yolox')
    runtime = PerceptionRuntime(cfg, lambda b: create_adapter(
        'yolox', b.inputs, b.outputs, b.metadata, conf_threshold=0.3), on_result)
    try:
        for i in range(FRAMES):
            runtime.submit(frames[i], context=i)
        wait(FRAMES)
        assert all(r.ok for r in results)
        server.stop()
        for i in range(FRAMES):
            runtime.submit(frames[i], context=FRAMES + i)
        wait(2 * FRAMES)
        down = results[FRAMES:]
        assert not any(r.ok for r in down)
        assert all(isinstance(r.error, BackendError) for r in down)
        assert any(f'Triton server at {server.url}' in str(r.error) for r in down), down[0].error
        assert runtime.stats()['failed'] == FRAMES
        server.start()  # same ports
        for i in range(FRAMES):
            runtime.submit(frames[i], context=2 * FRAMES + i)
        wait(3 * FRAMES)
        back = results[2 * FRAMES:]
        assert all(r.ok for r in back), [str(r.error) for r in back if not r.ok]
        for r in back:
            assert_same_detections(r.result[0], dets[r.context % FRAMES])
        assert [r.context for r in results] == list(range(3 * FRAMES))
    finally:
        runtime.close()
        server.close()


def test_another_family_and_a_model_replaced_under_a_running_backend(
        client_lib, yolox_model, reference, frames):
    """YOLOv8n through the server equals ONNX Runtime; a model swapped under a name is refused."""
    yolov8 = CACHE / 'models' / 'yolov8n.onnx'
    if not yolov8.exists():
        missing(f'{yolov8} not found (scripts/test_assets.d/20_test_models.sh builds it)')
    _, _, tensors, _, _ = reference
    first = TritonServer(yolox_model, name='detector').start()
    second = TritonServer(yolov8, name='detector')
    second.grpc_port, second.http_port, second.metrics_port = (
        first.grpc_port, first.http_port, first.metrics_port)
    try:
        with create_backend('triton', first.model_path()) as b:
            b.infer(tensors[0][0])
            first.stop()
            second.start()  # another model under the same name and address
            with pytest.raises(BackendError):
                b.infer(tensors[0][0])  # the old connection: the server refuses the shape
            with pytest.raises(BackendError, match='changed while the node ran: it now takes '
                                                   r'images\(1, 3, 640, 640\)'):
                b.infer(tensors[0][0])  # the reconnect reads the new model
        v8 = create_backend('triton', second.model_path())
        ort = create_backend('onnxruntime', str(yolov8))
        try:
            assert v8.inputs == ort.inputs and v8.outputs == ort.outputs
            adapter = create_adapter('auto', ort.inputs, ort.outputs, ort.metadata)
            assert adapter.family == 'yolov8'
            x, meta = adapter.preprocess(frames[0])
            want, got = ort.infer(x), v8.infer(x)
            np.testing.assert_allclose(got[0], want[0], atol=1e-2)
            assert_same_detections(adapter.postprocess(got, meta),
                                   adapter.postprocess(want, meta))
        finally:
            v8.close()
            ort.close()
    finally:
        first.close()
        second.close()
