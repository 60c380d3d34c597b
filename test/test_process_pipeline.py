"""worker_mode 'processes': worker processes doing whole frames, with the real model.

Real ONNX Runtime, the real YOLOX-nano model and real video frames in every worker process
(spawned); a frame is made slow, or a worker kept busy, by a gate the test opens
(`support.process_workers`), and every wait is on an event: a worker's report, a delivery,
a process's exit (pidfd).
"""
from __future__ import annotations

import multiprocessing as mp
from multiprocessing import connection
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Set

from faster_deployment_ros.core.pipeline import FrameResult
from faster_deployment_ros.core.process_pipeline import ProcessPipeline, WorkerProcessError
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.runtime import ParameterError, PerceptionRuntime, RuntimeConfig
from faster_deployment_ros.runtime.workers import create_worker_backend, FrameWorkerSpec
from faster_deployment_ros.tools.frames import read_frames
import numpy as np
import pytest
from support.process_workers import FailingSpec, GatedSpec, HOLD, open_gate, tagged
from support.shared_data import ROOT, shared_file

WAIT_S = 120.0  # an upper bound for events that come in seconds: a failing test must not hang


class Sink:
    """on_result / on_drop target: results and drops in arrival order, an event per count."""

    def __init__(self) -> None:
        self.results: List[FrameResult] = []
        self.drops: List[int] = []
        self._cond = threading.Condition()

    def __call__(self, r: FrameResult) -> None:
        with self._cond:
            self.results.append(r)
            self._cond.notify_all()

    def drop(self, seq: int, context: Any) -> None:
        with self._cond:
            self.drops.append(seq)
            self._cond.notify_all()

    def wait(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.results) >= count, WAIT_S), \
                f'{len(self.results)} of {count} results delivered'

    @property
    def seqs(self) -> List[int]:
        return [r.seq for r in self.results]


def adapter_for(backend: Any) -> Any:
    return create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)


@pytest.fixture(scope='module')
def model() -> str:
    return str(shared_file('models/yolox_nano_coco_416.onnx'))


@pytest.fixture(scope='module')
def frames() -> List[np.ndarray]:
    out = read_frames(shared_file('data/pedestrians_plaza_1280x720_50fps.avi'), 6, 5)
    assert len(out) == 6
    return out


def config(model: str, **kw: Any) -> RuntimeConfig:
    base: Dict[str, Any] = {'model_path': model, 'backend': 'onnxruntime', 'workers': 2,
                            'threads': 1, 'queue_size': 16, 'full_policy': 'block',
                            'gpu_pipeline': False, 'name': 'procs'}
    base.update(kw)
    return RuntimeConfig(**base)


def reference(model: str, images: List[np.ndarray]) -> List[Any]:
    """Each image through one backend and adapter in this process, one after another."""
    backend = create_worker_backend(config(model), 0)
    try:
        adapter = adapter_for(backend)
        out = []
        for image in images:
            x, meta = adapter.preprocess(image)
            out.append(adapter.postprocess(backend.infer(x), meta))
        return out
    finally:
        backend.close()


def assert_same(a: Any, b: Any) -> None:
    assert len(a) > 0 and len(a) == len(b)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)


def gone(pid: int) -> bool:
    """Whether process `pid` has exited (reaped, or a zombie)."""
    try:
        fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    except OSError:
        return True
    return fields[0] in ('Z', 'X')


class Events:
    """The workers' reports (support.process_workers): wait for the ones a test needs."""

    def __init__(self, readers: List[Any]) -> None:
        self.readers = readers
        self.seen: List[tuple] = []

    def _read(self, timeout: float) -> None:
        for conn in connection.wait(self.readers, timeout):
            try:
                self.seen.append(conn.recv())
            except EOFError:  # every writer gone: nothing more comes from it
                self.readers.remove(conn)

    def wait(self, kind: str, tags: Set[int]) -> List[tuple]:
        """Wait until a `kind` report came for every tag in `tags`; return those reports."""
        deadline = time.monotonic() + WAIT_S
        while not tags <= {t for k, _, _, t in self.seen if k == kind}:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f'no {kind} report for tags {sorted(tags)}: {self.seen}'
            self._read(remaining)
        return [e for e in self.seen if e[0] == kind and e[3] in tags]

    def count(self, kind: str, count: int) -> None:
        """Wait until `count` reports of `kind` came."""
        deadline = time.monotonic() + WAIT_S
        while len([e for e in self.seen if e[0] == kind]) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f'{count} {kind} reports expected: {self.seen}'
            self._read(remaining)


@pytest.fixture
def gated(model):
    """make(workers, sink, **kw) -> a ProcessPipeline of the real worker behind a gate."""
    ctx = mp.get_context('spawn')
    gate = ctx.Semaphore(0)
    pipes = [ctx.Pipe(duplex=False) for _ in range(4)]  # (reader, writer) per worker
    made: List[ProcessPipeline] = []

    def make(workers: int, sink: Sink, **kw: Any) -> ProcessPipeline:
        cfg = config(model, workers=workers)
        probe = create_worker_backend(cfg, 0)
        adapter = adapter_for(probe)
        probe.close()
        spec = GatedSpec(FrameWorkerSpec(cfg, adapter), gate, [w for _, w in pipes])
        p = ProcessPipeline(spec, workers, sink, name='gated', on_drop=sink.drop, **kw)
        made.append(p)
        return p

    yield make, gate, Events([r for r, _ in pipes])
    open_gate(gate)
    for p in made:
        p.close(timeout=5.0)
        assert all(gone(pid) for pid in p.pids())
    for reader, writer in pipes:
        reader.close()
        writer.close()


def test_results_come_in_submission_order_around_a_slow_frame(gated, model, frames):
    """Frame 2 is held in its worker while others finish later frames; none overtakes it."""
    make, gate, events = gated
    sink = Sink()
    p = make(3, sink, queue_size=16, full_policy='block')
    tags = [HOLD if i == 2 else 1 + i for i in range(10)]
    images = [tagged(frames[i % len(frames)], t) for i, t in enumerate(tags)]
    for image in images:
        assert p.submit(image, timeout=WAIT_S)
    # five frames are done while the held one is not (a frame queued behind it in its
    # process waits with it; the others finish, later frames among them)
    events.wait('start', {HOLD})
    events.count('done', 5)
    assert set(sink.seqs) <= {0, 1}, f'a frame overtook the held frame 2: {sink.seqs}'
    open_gate(gate)
    assert p.flush(WAIT_S)
    assert sink.seqs == list(range(10))
    assert all(r.ok for r in sink.results), [r.error for r in sink.results if not r.ok]
    for got, want in zip(sink.results, reference(model, images)):
        assert_same(got.result, want)
    stats = p.stats()
    assert stats['worker_mode'] == 'processes'
    assert stats['frames_out'] == 10 and stats['failed'] == 0 and stats['dropped'] == 0
    assert stats['stages']['infer']['count'] == 10
    assert {r.worker for r in sink.results} <= {0, 1, 2} and len(set(stats['worker_pids'])) == 3
    slow = sink.results[2].timings
    assert slow['total'] >= slow['pre'] + slow['infer'] + slow['post']


def test_drop_oldest_under_overload_drops_and_counts(gated, frames):
    """Both workers held: of 12 frames at most 6 fit in the pipeline; the rest are dropped."""
    make, gate, events = gated
    sink = Sink()
    p = make(2, sink, queue_size=1, full_policy='drop_oldest')
    image = tagged(frames[0], HOLD)
    for busy in (1, 2):  # one at a time: a second frame in the queue of 1 would evict the first
        assert p.submit(image)
        events.count('start', busy)
    for _ in range(10):
        assert p.submit(image)  # drop_oldest never refuses
    open_gate(gate)
    assert p.flush(WAIT_S)
    stats = p.stats()
    # held: 2 running in the workers, 2 queued behind them (frames_per_process 2), 2 waiting
    # for a process, 1 in the pre stage, 1 in the input queue
    assert stats['dropped'] >= 12 - 8
    assert stats['frames_in'] == 12 == stats['frames_out'] + stats['dropped']
    assert sorted(sink.drops) == sorted(set(sink.drops)) and len(sink.drops) == stats['dropped']
    assert sink.seqs == sorted(sink.seqs)
    assert sorted(sink.seqs + sink.drops) == list(range(12))
    assert all(r.ok for r in sink.results)


def test_a_killed_worker_process_fails_its_frame_and_is_restarted(gated, frames):
    make, gate, events = gated
    sink = Sink()
    p = make(2, sink, queue_size=4, full_policy='block')
    assert p.submit(tagged(frames[0], HOLD))
    (_, worker, pid, _), = events.wait('start', {HOLD})
    os.kill(pid, signal.SIGKILL)
    sink.wait(1)
    dead = sink.results[0]
    assert not dead.ok and isinstance(dead.error, WorkerProcessError)
    assert f'worker process {worker} (pid {pid}) died' in str(dead.error)
    assert 'SIGKILL' in str(dead.error) and 'restarted' in str(dead.error)
    assert gone(pid)
    assert pid not in p.pids()
    for i in range(4):
        assert p.submit(tagged(frames[i], 1 + i), timeout=WAIT_S)
    assert p.flush(WAIT_S)
    assert sink.seqs == list(range(5)) and all(r.ok for r in sink.results[1:])
    stats = p.stats()
    assert stats['worker_deaths'] == 1 and stats['worker_restarts'] == 1
    assert stats['failed'] == 1 and 'fault' not in stats and p.fault is None
    pids = p.pids()
    assert p.close(timeout=5.0)
    assert all(gone(q) for q in pids)


def test_a_killed_process_fails_the_frame_it_ran_and_the_one_queued_behind_it(gated, frames):
    """One process, two frames in it: both fail, saying which ran; one restart serves on."""
    make, gate, events = gated
    sink = Sink()
    p = make(1, sink, queue_size=4, full_policy='block')
    assert p.submit(tagged(frames[0], HOLD))
    (_, _, pid, _), = events.wait('start', {HOLD})
    assert p.submit(tagged(frames[1], 1))  # the only process is busy: queued in its pipe
    deadline = time.monotonic() + WAIT_S  # (both dispatch calls entered: a state, no event)
    while not all(t > 0 for t in p.pipeline.busy_workers().values()):
        assert time.monotonic() < deadline, 'the second frame never reached a dispatch thread'
        time.sleep(0.005)
    sink_before = len(sink.results)
    os.kill(pid, signal.SIGKILL)
    sink.wait(2)
    assert sink_before == 0 and sink.seqs == [0, 1]
    ran, queued = sink.results
    assert f'worker process 0 (pid {pid}) died while running this frame' in str(ran.error)
    assert f'worker process 0 (pid {pid}) died with this frame queued in it' in str(queued.error)
    assert all('restarted' in str(r.error) for r in (ran, queued))
    for i in range(3):
        assert p.submit(tagged(frames[i], 2 + i), timeout=WAIT_S)
    assert p.flush(WAIT_S)
    assert sink.seqs == list(range(5)) and all(r.ok for r in sink.results[2:])
    stats = p.stats()
    assert stats['worker_deaths'] == 1 and stats['worker_restarts'] == 1
    assert stats['failed'] == 2 and p.fault is None and pid not in p.pids()


def test_frames_per_process_one_sends_no_frame_to_a_busy_process(gated, frames):
    """frames_per_process=1: a second frame waits in the parent until the process replies."""
    make, gate, events = gated
    sink = Sink()
    p = make(1, sink, queue_size=4, full_policy='block', frames_per_process=1)
    assert p.submit(tagged(frames[0], HOLD))
    (_, _, pid, _), = events.wait('start', {HOLD})
    assert p.submit(tagged(frames[1], 1))
    os.kill(pid, signal.SIGKILL)
    sink.wait(1)
    assert 'died while running this frame' in str(sink.results[0].error)
    assert p.flush(WAIT_S)
    assert sink.seqs == [0, 1] and sink.results[1].ok  # it ran in the restarted process


def test_close_ends_a_busy_worker_process_and_frees_shared_memory(gated, frames):
    make, gate, events = gated
    sink = Sink()
    p = make(2, sink, queue_size=4, full_policy='block')
    assert p.submit(tagged(frames[0], HOLD))
    events.wait('start', {HOLD})
    pids, segments = p.pids(), p.segments()
    assert segments and all(os.path.exists(f'/dev/shm/{s}') for s in segments)
    t0 = time.monotonic()
    assert p.close(timeout=0.5) is False  # the busy one had to be terminated
    assert time.monotonic() - t0 < 30
    assert all(gone(pid) for pid in pids)
    assert not any(os.path.exists(f'/dev/shm/{s}') for s in segments)
    stats = p.stats()
    assert stats['frames_in'] == stats['frames_out'] + stats['dropped'] == 1
    assert sink.drops == [0] or (sink.seqs == [0] and not sink.results[0].ok)
    assert p.close() is True  # again: nothing left to end
    assert not p.submit(frames[0])


def test_a_worker_that_cannot_be_built_fails_the_start_and_leaves_no_process():
    with pytest.raises(WorkerProcessError, match='could not build its worker.*on purpose'):
        ProcessPipeline(FailingSpec(), 2, Sink(), name='failing')
    assert not [c for c in mp.active_children() if c.name.startswith('failing-')]


def test_processes_mode_gives_the_thread_modes_results(model, frames):
    """Same frames through both modes, also after a threshold change; same stats shape."""
    out = {}
    for mode in ('threads', 'processes'):
        sink = Sink()
        rt = PerceptionRuntime(config(model, worker_mode=mode), adapter_for, sink)
        try:
            assert rt.backends == [] if mode == 'processes' else len(rt.backends) == 2
            for image in frames:
                assert rt.submit(image, timeout=WAIT_S)
            assert rt.flush(WAIT_S)
            rt.adapter.set_thresholds(conf_threshold=0.6)  # as a node's runtime change does
            for image in frames:
                assert rt.submit(image, timeout=WAIT_S)
            assert rt.submit(np.zeros((0, 10, 3), np.uint8), timeout=WAIT_S)  # cannot be scaled
            assert rt.flush(WAIT_S)
            stats = rt.stats()
            pids = stats.get('worker_pids', [])
        finally:
            assert rt.close() == []
        assert all(gone(pid) for pid in pids)
        assert sink.seqs == list(range(13)) and all(r.ok for r in sink.results[:12])
        bad = sink.results[12].error
        assert isinstance(bad, ValueError) and 'empty image' in str(bad)
        out[mode] = (sink.results[:12], stats, bad)
    (threads, t_stats, t_bad), (procs, p_stats, p_bad) = out['threads'], out['processes']
    assert type(t_bad) is type(p_bad) and str(t_bad) == str(p_bad)  # the frame's own error
    for a, b in zip(threads, procs):
        assert_same(a.result[0], b.result[0])
        assert a.result[1] is None and b.result[1] is None  # no image asked for
    assert len(procs[6].result[0]) < len(procs[0].result[0])  # the new threshold applied
    assert set(t_stats) <= set(p_stats) and set(t_stats['stages']) == set(p_stats['stages'])
    assert p_stats['stages']['infer']['count'] == 12 and p_stats['failed'] == 1
    assert len(p_stats['worker_pids']) == 2


@pytest.mark.parametrize('backend, options, why', [
    ('rknn', {}, 'pins each worker'),
    ('tensorrt', {'gpu_pipeline': True}, 'on the GPU'),
])
def test_processes_mode_refuses_pinned_workers_and_the_gpu_path(model, backend, options, why):
    cfg = config(model, backend=backend, worker_mode='processes').replace(**options)
    with pytest.raises(ParameterError, match=f'worker_mode=processes.*{why}'):
        PerceptionRuntime(cfg, adapter_for, Sink())


CHILD = """
import sys
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.runtime import PerceptionRuntime, RuntimeConfig
cfg = RuntimeConfig(model_path=sys.argv[1], workers=2, threads=1, worker_mode='processes',
                    gpu_pipeline=False)
rt = PerceptionRuntime(cfg, lambda b: create_adapter('auto', b.inputs, b.outputs, b.metadata),
                       lambda r: None)
print(' '.join(map(str, rt.pipeline.pids())), flush=True)
sys.stdin.read()  # until killed
"""


@pytest.mark.slow
def test_worker_processes_exit_when_their_parent_is_killed(model):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + sys.path))
    parent = subprocess.Popen([sys.executable, '-c', CHILD, model], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2, 'the runtime did not start its worker processes'
        fds = []
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:  # already gone
                pass
        parent.kill()
        parent.wait(WAIT_S)
        for fd in fds:  # a pidfd turns readable when its process exits
            readable, _, _ = select.select([fd], [], [], WAIT_S)
            os.close(fd)
            assert readable, 'a worker process outlived its parent'
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.ros
def test_detector_node_with_worker_processes_publishes_in_order_and_reports(ros, yolox_model,
                                                                            frames):
    """The node is unchanged: same topics, order, /diagnostics counters and stage times."""
    from faster_deployment_ros.ros.detector_node import DetectorNode
    from sensor_msgs.msg import Image
    from support.node_harness import harnesses, header_key, image_msg
    from vision_msgs.msg import Detection2DArray

    with harnesses(DetectorNode, {'model_path': str(yolox_model), 'workers': 2, 'threads': 1,
                                  'worker_mode': 'processes'}, 'procs_test_peer',
                   inputs={'image': (Image, 'image')},
                   outputs={'detections': (Detection2DArray, 'detections')}) as make:
        h = make()
        h.start()
        runtime = h.node.runtime
        pids = runtime.pipeline.pids()
        assert len(pids) == 2 and h.node.backends == []
        sent = []
        for i, frame in enumerate(frames):
            msg = image_msg(frame, 1_700_000_000_000_000_000 + i * 20_000_000, f'cam_{i}')
            sent.append(header_key(msg.header))
            h.pubs['image'].publish(msg)
        got = h.wait_count(h.got['detections'], len(frames), WAIT_S)
        assert [header_key(m.header) for m in got] == sent
        assert all(len(m.detections) > 0 for m in got)
        status = h.node.diagnostic_statuses()[0]
        values = {kv.key: kv.value for kv in status.values}
        assert values['pipeline_frames_out'] == str(len(frames))
        assert values['pipeline_failed'] == '0'
        assert float(values['infer_p50_ms']) > 0.0 and float(values['hop_infer_p50_ms']) > 0.0
        h.node.release()
        assert all(gone(pid) for pid in pids)
