"""Ordered, bounded-queue pipeline whose workers are processes, each doing whole frames.

Why processes: with many workers on a fast model the Python work of each frame (pre- and
post-processing, the hand-offs between threads) runs in one interpreter under one GIL, and that
interpreter, not the cores, sets the rate (docs/performance.md, many cores). Here every worker is
a process of its own (multiprocessing, spawn: forking a process whose threads hold locks, as
rclpy's and ONNX Runtime's do, is unsafe) that runs pre-process + infer + post-process of a
whole frame; the parent only decodes, copies the frame into shared memory and puts the results
back in order.

The parent is a `core.pipeline.Pipeline`, so queueing, ordering and accounting are that class's:
submission order is delivery order (per source), `full_policy` 'drop_oldest' / 'block', stale
frames dropped at the input queue and counted, `on_result` / `on_drop` called as `Pipeline`
states. Its stages here:

    submit -> [input] -> pre: prepare(item) -> (frame, meta), frame copied into a free slot
           -> a dispatch thread of process i: slot name to process i over its pipe, waits for
              the reply (process i: worker(frame view) -> (result, {'pre', 'infer', 'post'} s))
           -> post: postprocess(result, meta) -> deliver -> on_result

Each process has `frames_per_process` dispatch threads (default `FRAMES_PER_PROCESS`, 2)
sharing its pipe; the process runs the frames it is sent one after another and replies in that
order. The pipeline sends a frame to a process with no frame in it whenever there is one
(`Pipeline`'s worker groups), and queues a second frame in a busy process only when every
process is busy: below capacity no frame waits behind another, and at capacity a process finds
its next frame in its pipe when it replies, instead of waiting for the parent (under one
interpreter, on cores the workers keep busy) to read the reply and send the next one.

Frames travel through a pool of `multiprocessing.shared_memory` slots ((frames_per_process + 1)
x workers + 2: every frame between the pre stage and its worker's reply holds one; a slot grows
when a larger frame comes), so no frame is pickled; results come back pickled over the pipe
(they are small: boxes, a depth map). A frame's `timings` and `stats()['stages']` give the
worker's own stage times: 'pre' = prepare + copy + the worker's pre-processing, 'infer' = the
worker's inference, 'post' = the worker's post-processing + `postprocess`; the pipe round trip,
and a wait behind the frame before it in the process, are in 'total' only.

The worker is built inside its process from `spec` (picklable; `spec.build(index)` returns a
callable `worker(frame) -> (result, timings)`, optionally with `control(payload)` and `close()`).
`control()` (parent side, cheap, called before each dispatch) returns a picklable value; when it
differs from what a process last got, that process gets it (`worker.control(payload)`) before
its next frame: runtime changes (e.g. thresholds) reach the workers in frame order.

A process that dies (crash, killed) fails the frame it was running (`error` says which process,
its exit code or signal) and is restarted by its dispatch thread, up to `max_restarts` times
in a row without a finished frame; if a restart fails, or the process dies once more, it faults:
`fault` says why, `submit` refuses frames, the frames in flight still come out (failed where
their process is gone). `close()` never waits on a process longer than its timeout: those still
running a frame are terminated, then killed; every process is joined and every shared-memory
segment unlinked before it returns. A process whose parent dies sees its pipe close and exits.

Spawn imports the parent's main module in each worker process (as multiprocessing does): a
script that builds a pipeline must do so under `if __name__ == '__main__':`. Frame slots live
in /dev/shm: ((frames_per_process + 1) x workers + 2) frames must fit there (`check_shm_space`
says so before a frame would be written into memory the tmpfs cannot back).
"""
from __future__ import annotations

from collections import deque
import logging
import mmap
import multiprocessing as mp
from multiprocessing import shared_memory
from multiprocessing.reduction import ForkingPickler
import os
import signal
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from .pipeline import FrameResult, Pipeline
from .stats import RollingStats

LOG = logging.getLogger('faster_deployment_ros.process_pipeline')

_now = time.perf_counter

#: seconds a worker process may take to build its worker (load the model) and say it is ready
START_TIMEOUT_S = 120.0
#: seconds close() waits for an idle process to exit, and after SIGTERM before SIGKILL
STOP_GRACE_S = 2.0
#: shared-memory segments a worker process keeps mapped before it forgets the old ones
MAX_MAPS = 64
#: frames a worker process may hold by default: one running, one queued in its pipe
#: (docs/performance.md, many cores: 1 against 2)
FRAMES_PER_PROCESS = 2


class WorkerProcessError(RuntimeError):
    """A worker process died, could not start, or sent a reply that could not be read."""


class _Slot:
    """One shared-memory frame buffer (parent side); grows by replacing its segment."""

    __slots__ = ('index', 'shm')

    def __init__(self, index: int) -> None:
        self.index = index
        self.shm: Optional[shared_memory.SharedMemory] = None

    def fit(self, nbytes: int) -> shared_memory.SharedMemory:
        if self.shm is None or self.shm.size < nbytes:
            self.release()
            check_shm_space(nbytes)
            self.shm = shared_memory.SharedMemory(create=True, size=max(1, nbytes))
        return self.shm

    def release(self) -> None:
        shm, self.shm = self.shm, None
        if shm is not None:
            shm.close()
            try:
                shm.unlink()
            except FileNotFoundError:  # already gone (e.g. removed by the resource tracker)
                pass


def check_shm_space(nbytes: int, root: str = '/dev/shm') -> None:
    """Raise WorkerProcessError if `root` has less than `nbytes` free.

    A segment is created sparse: writing a frame into one the tmpfs cannot back would kill
    this process with SIGBUS instead of failing the frame.
    """
    try:
        st = os.statvfs(root)
    except OSError:
        return  # no /dev/shm to ask (not Linux): SharedMemory reports what it can
    free = st.f_bavail * st.f_frsize
    if free < nbytes:
        raise WorkerProcessError(
            f'{root} has {free / 1e6:.1f} MB free, a frame slot needs {nbytes / 1e6:.1f} MB '
            f'(worker processes hold (frames_per_process + 1) x workers + 2 frames there): '
            f'give the container more '
            f'shared memory (docker run --shm-size=512m) or use worker_mode: threads')


class _SlotPool:
    """Free slots; `take` waits for one (there are enough unless frames leak)."""

    def __init__(self, count: int) -> None:
        self._slots = [_Slot(i) for i in range(count)]
        self._free = list(range(count))
        self._cond = threading.Condition()
        self._closed = False

    def take(self, timeout: float = 10.0) -> _Slot:
        with self._cond:
            if not self._cond.wait_for(lambda: self._free or self._closed, timeout):
                raise WorkerProcessError(f'no free shared-memory slot within {timeout:g} s '
                                         f'(all {len(self._slots)} hold frames in flight)')
            if self._closed:
                raise WorkerProcessError('the pipeline is closing')
            return self._slots[self._free.pop()]

    def give(self, slot: _Slot) -> None:
        with self._cond:
            self._free.append(slot.index)
            self._cond.notify()

    def names(self) -> List[str]:
        """Return the names of the shared-memory segments the slots hold now."""
        return [s.shm.name for s in self._slots if s.shm is not None]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for slot in self._slots:
            slot.release()


class _Ticket:
    """A frame waiting in (or running from) a slot: what the dispatch thread sends."""

    __slots__ = ('slot', 'shape', 'dtype', 'pre_s')

    def __init__(self, slot: _Slot, shape: Tuple[int, ...], dtype: str, pre_s: float) -> None:
        self.slot, self.shape, self.dtype, self.pre_s = slot, shape, dtype, pre_s


def _attach(name: str, size: int) -> mmap.mmap:
    """Map the parent's shared-memory segment `name` (child side, untracked).

    multiprocessing's SharedMemory would register the segment with the resource tracker the
    child shares with the parent (Python < 3.13), which then unlinks it under the parent.
    """
    fd = os.open(f'/dev/shm/{name.lstrip("/")}', os.O_RDWR)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _describe(exc: BaseException) -> str:
    return f'{type(exc).__name__}: {exc}'


def _child_main(spec: Any, index: int, conn: Any) -> None:
    """Run a worker process: build the worker, then frames until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends it (a terminal's Ctrl-C
    # reaches the whole process group; the node then closes its pipeline in order)
    try:
        worker = spec.build(index)
    except BaseException as exc:  # noqa: B902 - the parent must hear why, not time out
        _send(conn, ('error', _describe(exc)))
        return
    conn.send(('ready', os.getpid()))
    maps: Dict[str, mmap.mmap] = {}
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the parent is gone: do not outlive it
                return
            kind = msg[0]
            if kind == 'stop':
                return
            if kind == 'control':
                try:
                    worker.control(msg[1])
                except Exception as exc:  # noqa: B902 - reported with the next frame
                    if not _send(conn, ('control_error', _describe(exc))):
                        return
                continue
            _, name, size, shape, dtype = msg
            buf = maps.get(name)
            if buf is None:
                if len(maps) >= MAX_MAPS:  # slots grew often: forget the old segments
                    for old in maps.values():
                        old.close()
                    maps.clear()
                buf = maps[name] = _attach(name, size)
            frame = np.ndarray(shape, np.dtype(dtype), buffer=buf)
            try:
                reply: Tuple[Any, ...] = ('ok',) + tuple(worker(frame))
            except BaseException as exc:  # noqa: B902 - one bad frame must not end the worker
                reply = ('error', exc)
            del frame
            if not _send(conn, reply):
                return
    finally:
        for buf in maps.values():
            try:
                buf.close()
            except BufferError:  # a view still alive: the process exits anyway
                pass
        close = getattr(worker, 'close', None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: B902 - exiting anyway
                pass


def _send(conn: Any, message: Tuple[Any, ...]) -> bool:
    """Send `message`; one that cannot be pickled goes as an error. False: the parent is gone."""
    try:
        data = ForkingPickler.dumps(message)
    except Exception as exc:  # noqa: B902 - whatever pickling raises, the frame must come back
        data = ForkingPickler.dumps(('error', WorkerProcessError(
            f'the worker process could not send its reply back: {_describe(exc)}')))
    try:
        conn.send_bytes(data)
    except OSError:
        return False
    return True


def _how_it_ended(exitcode: Optional[int]) -> str:
    if exitcode is None:
        return 'its pipe closed while it still ran; killed'
    if exitcode < 0:
        try:
            return f'killed by {signal.Signals(-exitcode).name}'
        except ValueError:
            return f'killed by signal {-exitcode}'
    return f'exit code {exitcode}'


class _Waiter:
    """A frame sent to a process: its reply once read (`_GONE_*` if the process died)."""

    __slots__ = ('reply',)

    def __init__(self) -> None:
        self.reply: Optional[Tuple[Any, ...]] = None


#: replies of frames whose process died: it was running the frame / the frame waited behind one
_GONE_RUNNING = ('gone', True)
_GONE_QUEUED = ('gone', False)


class _Child:
    """One worker process and the parent's end of its pipe.

    Several dispatch threads share the pipe (`exchange`): frames are sent under one lock, and
    whichever waiting thread reads a reply hands it to the frame it belongs to (replies come in
    send order). Ending it (`stop`, `end`) is serialised: the closing thread and the process's
    dispatch threads may all try, and a pipe closed twice could close a descriptor reused
    meanwhile.
    """

    def __init__(self, ctx: Any, spec: Any, index: int, name: str) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()  # guards _pending and _reading
        self._pending: Deque[_Waiter] = deque()  # sent frames without a reply, in send order
        self._reading = False  # a thread is reading the pipe
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_child_main, args=(spec, index, child_conn),
                                name=f'{name}-proc{index}', daemon=True)
        self.proc.start()
        child_conn.close()  # only the child holds its end: its death closes the pipe
        self.control: Any = None  # the control payload this process has

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid

    def exchange(self, message: Tuple[Any, ...], control: Any,
                 refused: Callable[[str], None]) -> Tuple[Any, ...]:
        """Send a frame `message` (after `control` if it changed), return the frame's reply.

        The reply is `_GONE_RUNNING` / `_GONE_QUEUED` when the process died with the frame in
        it. `refused(text)` is called for a control payload the process could not apply.
        """
        waiter = _Waiter()
        with self._send_lock:
            with self._cond:
                self._pending.append(waiter)
            try:
                if control != self.control:
                    self.conn.send(('control', control))
                    self.control = control
                self.conn.send(message)
            except OSError:  # the process is gone before the frame reached it (a thread
                with self._cond:  # reading the pipe sees it close for the frames it holds)
                    self._pending.remove(waiter)
                return _GONE_QUEUED
        with self._cond:
            while waiter.reply is None and self._reading:
                self._cond.wait()
            if waiter.reply is not None:
                return waiter.reply
            self._reading = True
        try:
            while waiter.reply is None:
                try:
                    reply = self.conn.recv()
                except (EOFError, OSError):
                    self._lost()
                    break
                if reply[0] == 'control_error':
                    refused(reply[1])
                    continue
                with self._cond:
                    if self._pending:
                        self._pending.popleft().reply = reply
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._reading = False
                self._cond.notify_all()
        assert waiter.reply is not None
        return waiter.reply

    def _lost(self) -> None:
        """Fail every frame sent and not answered: the pipe closed, the process is gone."""
        with self._cond:
            running = True
            while self._pending:
                self._pending.popleft().reply = _GONE_RUNNING if running else _GONE_QUEUED
                running = False
            self._cond.notify_all()

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            self.end(0.0)
            raise WorkerProcessError(f'worker process {self.index} did not start within '
                                     f'{timeout:g} s (loading the model?)')
        try:
            kind, value = self.conn.recv()
        except (EOFError, OSError):
            how = self.end(STOP_GRACE_S)
            raise WorkerProcessError(f'worker process {self.index} died while starting '
                                     f'({how})') from None
        if kind != 'ready':
            self.end(STOP_GRACE_S)
            raise WorkerProcessError(f'worker process {self.index} could not build its worker: '
                                     f'{value}')

    def stop(self, idle: bool, grace: float) -> bool:
        """End the process (asked if `idle`, else terminated); True if it had to be terminated."""
        with self._lock:
            killed = False
            if self.proc.is_alive() and idle and not self.conn.closed:
                try:
                    self.conn.send(('stop',))
                except OSError:
                    pass
                self.proc.join(grace)
            if self.proc.is_alive():
                killed = True
                self.proc.terminate()
                self.proc.join(grace)
            self._finish()
            return killed

    def end(self, grace: float) -> str:
        """Wait up to `grace` for the process to end by itself, else kill it; say how it ended."""
        with self._lock:
            self.proc.join(grace)
            how = _how_it_ended(self.proc.exitcode)
            self._finish()
            return how

    def _finish(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        if not self.conn.closed:
            self.conn.close()


class _Dispatcher:
    """A dispatch thread's callable: sends a slot to process i, returns the frame's reply.

    Process i has `frames_per_process` of them (one per frame it may hold).
    """

    def __init__(self, owner: 'ProcessPipeline', index: int) -> None:
        self.owner, self.index = owner, index

    def __call__(self, ticket: _Ticket) -> Tuple[Any, Dict[str, float], float]:
        owner = self.owner
        try:
            if owner.fault_reason is not None:
                raise WorkerProcessError(f'not run: {owner.fault_reason}')
            child = owner.children[self.index]
            shm = ticket.slot.shm
            reply = child.exchange(('frame', shm.name, shm.size, ticket.shape, ticket.dtype),
                                   owner.control_payload(), self._refused)
            if reply[0] == 'gone':
                raise self._died(child, running=reply[1]) from None
        finally:
            owner.slots.give(ticket.slot)
        owner.deaths_in_a_row[self.index] = 0
        if reply[0] == 'error':
            raise reply[1]
        _, result, timings = reply
        return result, timings, ticket.pre_s

    def _refused(self, text: str) -> None:
        LOG.error('%s: worker process %d refused a runtime change: %s', self.owner.name,
                  self.index, text)

    def _died(self, child: _Child, running: bool) -> WorkerProcessError:
        """Say how process i ended; restart it unless closing (or fault the pipeline).

        Every dispatch thread of the process lands here for the frame it had in it; the first
        one restarts the process, the others only report.
        """
        owner = self.owner
        with owner.restart_locks[self.index]:
            how = child.end(STOP_GRACE_S)
            what = 'while running this frame' if running else 'with this frame queued in it'
            text = f'worker process {self.index} (pid {child.pid}) died {what} ({how})'
            if owner.children[self.index] is not child:  # another thread restarted it
                restarted = owner.fault_reason is None and not owner.closed
                return WorkerProcessError(f'{text}; restarted' if restarted else text)
            return self._restart(child, text)

    def _restart(self, child: _Child, text: str) -> WorkerProcessError:
        owner = self.owner
        if owner.closed:
            return WorkerProcessError(text)
        owner.deaths_in_a_row[self.index] += 1
        in_a_row = owner.deaths_in_a_row[self.index]
        with owner.lock:
            owner.deaths += 1
        if in_a_row > owner.max_restarts:
            owner.set_fault(f'{text}; it died {in_a_row} times in a row without '
                            'finishing a frame: not restarted')
            return WorkerProcessError(text)
        LOG.error('%s: %s; restarting it', owner.name, text)
        try:
            owner.children[self.index] = owner.start_child(self.index)
            owner.children[self.index].wait_ready(owner.start_timeout)
        except WorkerProcessError as exc:
            if not owner.closed:
                owner.set_fault(f'{text}; restarting it failed: {exc}')
            return WorkerProcessError(text)
        if owner.closed:  # close() began meanwhile: it may have missed the new process
            owner.children[self.index].stop(True, STOP_GRACE_S)
            return WorkerProcessError(text)
        with owner.lock:
            owner.restarts += 1
        return WorkerProcessError(f'{text}; restarted')


class ProcessPipeline:
    """A `Pipeline` whose N workers are processes doing pre + infer + post of whole frames.

    `prepare(item) -> (frame ndarray, meta)` runs in the parent's pre thread (decoding);
    `postprocess(result, meta)` in its post thread, in order; `spec.build(index)` in each worker
    process. `on_result`, `on_drop`, `queue_size`, `full_policy`, `schedule` and `stats_window`
    are `Pipeline`'s. `frames_per_process` is how many frames a process may hold (one running,
    the others queued in its pipe; see the module docstring). The constructor returns once
    every process is ready; one that fails to start stops the others and raises
    WorkerProcessError. Worker indices (`FrameResult.worker`, `busy_workers`, `per_worker`)
    are process indices.
    """

    def __init__(self, spec: Any, workers: int,
                 on_result: Callable[[FrameResult], None],
                 queue_size: int = 2, full_policy: str = 'drop_oldest',
                 name: str = 'pipeline', *,
                 prepare: Callable[[Any], Tuple[np.ndarray, Any]] = lambda item: (item, None),
                 postprocess: Callable[[Any, Any], Any] = lambda result, meta: result,
                 control: Callable[[], Any] = lambda: None,
                 on_drop: Optional[Callable[[int, Any], None]] = None,
                 stats_window: int = 1000, schedule: str = 'eager',
                 start_timeout: float = START_TIMEOUT_S, max_restarts: int = 3,
                 frames_per_process: Optional[int] = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f'workers must be an int >= 1, got {workers!r}')
        if frames_per_process is None:
            frames_per_process = FRAMES_PER_PROCESS
        if isinstance(frames_per_process, bool) or not isinstance(frames_per_process, int) \
                or frames_per_process < 1:
            raise ValueError(f'frames_per_process must be an int >= 1, got '
                             f'{frames_per_process!r}')
        self.frames_per_process = frames_per_process
        self.name = name
        self.spec = spec
        self.start_timeout = start_timeout
        self.max_restarts = max_restarts
        self.control_payload = control
        self._prepare, self._finish, self._on_result = prepare, postprocess, on_result
        self.lock = threading.Lock()
        self.deaths = self.restarts = 0
        self.deaths_in_a_row = [0] * workers  # per process, since its last finished frame
        self.restart_locks = [threading.Lock() for _ in range(workers)]
        self.fault_reason: Optional[str] = None
        self._closing = False
        self._rejected = 0
        self._ctx = mp.get_context('spawn')
        self.slots = _SlotPool((frames_per_process + 1) * workers + 2)
        self._stages = {k: RollingStats(stats_window) for k in ('pre', 'infer', 'post')}
        self.children: List[_Child] = []
        self._pipeline: Optional[Pipeline] = None
        try:
            self.children = [self.start_child(i) for i in range(workers)]
            for child in self.children:  # they load in parallel
                child.wait_ready(start_timeout)
            process_of = [i for i in range(workers) for _ in range(frames_per_process)]
            self._pipeline = Pipeline(
                preprocess=self._stage_in, infer=[_Dispatcher(self, i) for i in process_of],
                postprocess=self._stage_out, on_result=self._deliver, queue_size=queue_size,
                full_policy=full_policy, name=name, on_drop=on_drop,
                stats_window=stats_window, schedule=schedule, worker_groups=process_of)
        except BaseException:  # noqa: B902 - no process or segment outlives a failed start
            self.close(timeout=STOP_GRACE_S)
            raise

    def start_child(self, index: int) -> _Child:
        """Start worker process `index` (not waiting for it to be ready)."""
        return _Child(self._ctx, self.spec, index, self.name)

    def set_fault(self, reason: str) -> None:
        LOG.critical('%s: %s; the pipeline refuses new frames', self.name, reason)
        with self.lock:
            if self.fault_reason is None:
                self.fault_reason = reason

    # ---- the Pipeline interface ---------------------------------------------------------------
    @property
    def pipeline(self) -> Pipeline:
        assert self._pipeline is not None
        return self._pipeline

    @property
    def queue_size(self) -> int:
        return self.pipeline.queue_size

    @property
    def full_policy(self) -> str:
        return self.pipeline.full_policy

    @property
    def schedule(self) -> str:
        return self.pipeline.schedule

    @property
    def num_workers(self) -> int:
        return len(self.children)

    @property
    def fault(self) -> Optional[str]:
        """Why the pipeline stopped taking frames (a worker process lost for good), or None."""
        if self.fault_reason is not None:
            return self.fault_reason
        return self._pipeline.fault if self._pipeline is not None else None

    @property
    def closed(self) -> bool:
        return self._closing or self._pipeline is None or self._pipeline.closed

    @property
    def threads(self) -> List[threading.Thread]:
        return self._pipeline.threads if self._pipeline is not None else []

    def pids(self) -> List[Optional[int]]:
        """Return the worker processes' ids, by worker index (a restarted one gets a new id)."""
        return [c.pid for c in self.children]

    def segments(self) -> List[str]:
        """Return the names of the shared-memory segments the frame slots hold now."""
        return self.slots.names()

    def busy_workers(self) -> Dict[int, float]:
        """{process index: seconds since its oldest frame without a reply was sent (0: idle)}."""
        out = dict.fromkeys(range(len(self.children)), 0.0)
        for k, t in self.pipeline.busy_workers().items():
            i = self._process_of(k)
            out[i] = max(out[i], t)
        return out

    @property
    def mean_infer_s(self) -> Optional[float]:
        """Running mean of a worker's round trip (s): its pre + infer + post and the pipe."""
        return self.pipeline.mean_infer_s

    def submit(self, item: Any, context: Any = None, timeout: Optional[float] = None,
               source: Any = None) -> bool:
        """As `Pipeline.submit`; also False once the pipeline faulted (counted in `rejected`)."""
        if self.fault_reason is not None:
            with self.lock:
                self._rejected += 1
            return False
        return self.pipeline.submit(item, context=context, timeout=timeout, source=source)

    def flush(self, timeout: Optional[float] = None) -> bool:
        return self.pipeline.flush(timeout)

    def close(self, drain: bool = False, timeout: Optional[float] = None) -> bool:
        """Stop accepting, drop (or with `drain` deliver) what waits, end every process.

        A process still running a frame after `timeout` (default STOP_GRACE_S) is terminated,
        then killed; every process is joined and every shared-memory segment unlinked. Returns
        True if no process had to be terminated. Safe to call again.
        """
        timeout = STOP_GRACE_S if timeout is None else timeout
        self._closing = True
        pipeline = self._pipeline
        idle = [True] * len(self.children)
        if pipeline is not None:
            pipeline.close(drain=drain, timeout=timeout)  # idle dispatchers exit
            alive = {t.name for t in pipeline.threads if t.is_alive()}
            fpp = self.frames_per_process
            idle = [not any(f'{self.name}-infer{i * fpp + j}' in alive for j in range(fpp))
                    for i in range(len(self.children))]
        self.slots.close()  # wakes a pre stage waiting for a slot
        killed = [c.index for c, ok in zip(self.children, idle) if c.stop(ok, STOP_GRACE_S)]
        if pipeline is not None:  # dispatchers that waited on a process see its pipe close
            for t in pipeline.threads:
                if t is not threading.current_thread():
                    t.join(STOP_GRACE_S)
        for child in self.children:  # one a dispatcher restarted while this closed
            if child.proc.is_alive():
                child.stop(False, STOP_GRACE_S)
        self.slots.close()  # slots a dispatcher gave back meanwhile
        if killed:
            LOG.warning('%s: worker process(es) %s were still running a frame after %g s: '
                        'terminated', self.name, ', '.join(map(str, killed)), timeout)
        return not killed

    def __enter__(self) -> 'ProcessPipeline':
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(drain=exc_type is None)

    def stats(self) -> Dict[str, Any]:
        """Return the pipeline's stats with the workers' own stage times and process counters.

        Extra keys: 'worker_mode' ('processes'), 'worker_pids', 'worker_deaths',
        'worker_restarts'.
        """
        out = self.pipeline.stats()
        per_process = [0] * len(self.children)
        for k, count in enumerate(out['per_worker']):
            per_process[self._process_of(k)] += count
        out['per_worker'] = per_process
        out['workers'] = len(self.children)
        stages = dict(out.get('stages', {}))
        for k, s in self._stages.items():
            stages[k] = s.summary()
        out['stages'] = stages
        with self.lock:
            out['rejected'] = out.get('rejected', 0) + self._rejected
            out['worker_deaths'], out['worker_restarts'] = self.deaths, self.restarts
            if self.fault_reason is not None:
                out['fault'] = self.fault_reason
        out['worker_mode'] = 'processes'
        out['worker_pids'] = self.pids()
        return out

    def _process_of(self, worker: int) -> int:
        """Return the process a dispatch thread (the pipeline's worker `worker`) feeds."""
        return worker // self.frames_per_process

    # ---- stages (parent side) -------------------------------------------------------------
    def _stage_in(self, item: Any) -> Tuple[_Ticket, Any]:
        t0 = _now()
        frame, meta = self._prepare(item)
        frame = np.asarray(frame)
        slot = self.slots.take()
        try:
            shm = slot.fit(frame.nbytes)
            np.copyto(np.ndarray(frame.shape, frame.dtype, buffer=shm.buf), frame,
                      casting='no')
        except BaseException:  # noqa: B902 - the slot goes back whatever failed
            self.slots.give(slot)
            raise
        return _Ticket(slot, tuple(frame.shape), frame.dtype.str, _now() - t0), meta

    def _stage_out(self, reply: Tuple[Any, Dict[str, float], float], meta: Any) -> Any:
        result, timings, pre_s = reply
        t0 = _now()
        out = self._finish(result, meta)
        t = {'pre': pre_s + timings.get('pre', 0.0), 'infer': timings.get('infer', 0.0),
             'post': timings.get('post', 0.0) + _now() - t0}
        return _Finished(out, t)

    def _deliver(self, res: FrameResult) -> None:
        timings = dict(res.timings)
        result = res.result
        if isinstance(result, _Finished):
            timings.update(result.timings)
            for k, v in result.timings.items():
                self._stages[k].add(v)
            result = result.value
        worker = self._process_of(res.worker) if res.worker >= 0 else -1
        self._on_result(FrameResult(seq=res.seq, context=res.context, result=result,
                                    error=res.error, timings=timings, worker=worker,
                                    source=res.source))


class _Finished:
    """A post-processed result and its worker's stage times, on its way to `on_result`."""

    __slots__ = ('value', 'timings')

    def __init__(self, value: Any, timings: Dict[str, float]) -> None:
        self.value, self.timings = value, timings


__all__ = ['ProcessPipeline', 'WorkerProcessError']
