"""Ordered, bounded-queue inference pipeline: pre-process -> N workers -> post -> delivery.

Why threads: the heavy work (NumPy, OpenCV, ONNX Runtime, ncnn) releases the GIL, so the stages
of different frames overlap. Why bounded everywhere: a camera produces frames faster than a slow
model eats them; frames are only ever dropped at the input queue (oldest first, or the producer
blocks), while every internal hand-off holds at most about one frame per worker, so what comes
out is never staler than the pipeline depth. A reorder buffer puts results from several workers
back in submission order.

Thread layout (names are `<name>-pre`, `<name>-infer<i>`, `<name>-post`, `<name>-deliver`):

    submit -> [input, queue_size] -> pre -> [N] -> infer_0..N-1 -> [reorder, <= 2N] -> post
           -> [1] -> deliver -> on_result

Idle fast path: a frame submitted while nothing is in flight (every earlier frame delivered or
dropped) and a worker waits goes straight to that worker, which runs its pre-process, inference
and post-process and delivers it: one thread hand-off instead of four, since there is nothing
to overlap it with. Frames submitted meanwhile take the staged path above and come out after
it; `on_result` is still called in order and by one thread at a time.

Every stage runs its callable without holding the pipeline lock; one lock guards all queues and
counters so the accounting `frames_in == frames_out + dropped + in_flight` is exact at all times.

Schedule: 'eager' pre-processes the next frame as soon as a worker slot opens, so under overload
that frame then waits about one inference for a worker: latency ~ 2 x inference. 'just_in_time'
starts pre-processing when the next worker is expected to be free within one pre-processing time
(running means of both), so the frame taken is the newest and reaches a worker as it frees up:
latency ~ pre + inference + post at the same throughput. Below capacity both behave the same.

Worker groups: `worker_groups[i]` names the group worker i belongs to (e.g. the process its
calls feed, `core.process_pipeline`). A frame goes to a worker of the least loaded group (fewest
frames inside it): to an idle group's worker that has waited longest, or, when every group is
busy, to the group whose oldest call started first (the one likely to free first). So with two
workers per process a process gets a second frame only when every process already has one:
below capacity no frame waits behind another, at capacity the next frame is already queued
where a frame is about to end. Without groups every worker is its own group: a frame goes to
the worker that has waited longest. A woken worker holds its claim until it runs, so a burst of
frames spreads over the groups.

Sources (several cameras, one model): `submit(..., source=key)` puts the frame in that source's
own input queue; `queue_size`, the full policy and the drop counters apply per source, and the
pre stage takes from the sources with waiting frames in turn (round-robin), so a fast camera
cannot evict or outrun a slow one's frames: each source gets at least an equal share of the
capacity, and what one does not use goes to the others. Results come out in each source's
submission order (across sources, in the order they were served). Without `source` everything
goes to one default source, which behaves as a single input queue.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Union

from .stats import RateMeter, RollingStats

LOG = logging.getLogger('faster_deployment_ros.pipeline')

FULL_POLICIES = ('block', 'drop_oldest')
SCHEDULES = ('eager', 'just_in_time')
STAGES = ('pre', 'infer', 'post', 'queue', 'total')
#: just-in-time pre-processing starts JIT_PRE_FACTOR x the mean pre-processing time plus
#: JIT_WAKEUP_S (a thread wake-up) before a worker is due to free (benchmarks/jit_lead_ab.py)
JIT_PRE_FACTOR = 1.0
JIT_WAKEUP_S = 0.0003

_now = time.perf_counter


@dataclass
class FrameResult:
    seq: int                 # 0,1,2,... submission order (dropped frames also consume a seq)
    context: Any             # what was passed to submit (e.g. the ROS header)
    result: Any              # postprocess return value, None on error
    error: Optional[BaseException]
    timings: Dict[str, float]  # seconds: 'pre', 'infer', 'post', 'queue', 'total'
    worker: int              # which inference worker ran it (-1 if failed before inference)
    source: Any = None       # the `source` given to submit (None: the default source)

    @property
    def ok(self) -> bool:
        return self.error is None


class _Source:
    """One input queue (a camera) and its counters; all guarded by the pipeline lock."""

    __slots__ = ('key', 'q', 'frames_in', 'frames_out', 'dropped', 'failed', 'rejected')

    def __init__(self, key: Any) -> None:
        self.key = key
        self.q: Deque['_Frame'] = deque()
        self.frames_in = self.frames_out = self.dropped = self.failed = self.rejected = 0

    def counters(self) -> Dict[str, int]:
        return {'frames_in': self.frames_in, 'frames_out': self.frames_out,
                'dropped': self.dropped, 'failed': self.failed, 'rejected': self.rejected,
                'queued': len(self.q),
                'in_flight': self.frames_in - self.frames_out - self.dropped}


class _Frame:
    __slots__ = ('seq', 'item', 'context', 't_submit', 'idx', 'tensors', 'meta', 'outputs',
                 'result', 'error', 'worker', 't', 'src')

    def __init__(self, seq: int, item: Any, context: Any, t_submit: float,
                 src: _Source) -> None:
        self.seq, self.item, self.context, self.t_submit = seq, item, context, t_submit
        self.src = src
        self.idx = -1  # dense index assigned by the pre thread; the reorder buffer keys on it
        self.tensors = self.meta = self.outputs = self.result = None
        self.error: Optional[BaseException] = None
        self.worker = -1
        self.t: Dict[str, float] = {}


class Pipeline:
    """Runs preprocess / infer / postprocess of consecutive frames concurrently, delivers in order.

    `infer` holds one callable per worker (each owns its backend instance; it is only ever called
    from its worker's thread). `on_result` is called in submission order, one call at a time,
    for every accepted frame that is not dropped, including frames whose stage raised (`error`
    set, `result` None): from the delivery thread, or from the worker that ran the frame on the
    idle fast path (module docstring). Exceptions from `on_result` are logged and ignored.

    `full_policy` says what `submit` does when `queue_size` frames are already waiting:
    'drop_oldest' evicts the oldest waiting frame (counted in `dropped`, reported to `on_drop`)
    and accepts the new one; 'block' waits for space (up to `timeout`), returning False when it
    gives up (counted in `rejected`, no seq consumed).

    `schedule` ('eager' or 'just_in_time', see the module docstring) says when pre-processing of
    the next frame starts; 'just_in_time' keeps latency at one pass under overload.

    `worker_groups` (one hashable per `infer` callable, see the module docstring) makes a frame
    go to the least loaded group; pre-processed frames waiting for a worker are then bounded by
    the number of groups instead of the number of workers.
    """

    def __init__(self,
                 preprocess: Callable[[Any], Tuple[Any, Any]],
                 infer: Union[Sequence[Callable[[Any], Any]], Callable[[Any], Any]],
                 postprocess: Callable[[Any, Any], Any],
                 on_result: Callable[[FrameResult], None],
                 queue_size: int = 2,
                 full_policy: str = 'drop_oldest',
                 name: str = 'pipeline',
                 *,
                 on_drop: Optional[Callable[[int, Any], None]] = None,
                 stats_window: int = 1000,
                 schedule: str = 'eager',
                 worker_groups: Optional[Sequence[Any]] = None) -> None:
        if full_policy not in FULL_POLICIES:
            raise ValueError(f'full_policy must be one of {FULL_POLICIES}, got {full_policy!r}: '
                             "'drop_oldest' keeps latency low by discarding the oldest waiting "
                             "frame, 'block' makes submit wait for space")
        if schedule not in SCHEDULES:
            raise ValueError(f'schedule must be one of {SCHEDULES}, got {schedule!r}')
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f'queue_size must be an int >= 1, got {queue_size!r}')
        workers: List[Callable[[Any], Any]] = [infer] if callable(infer) else list(infer)
        if not workers:
            raise ValueError('infer must hold at least one callable (one per inference worker)')
        for i, fn in enumerate(workers):
            if not callable(fn):
                raise TypeError(f'infer[{i}] is not callable: {fn!r}')
        groups = list(range(len(workers))) if worker_groups is None else list(worker_groups)
        if len(groups) != len(workers):
            raise ValueError(f'worker_groups names {len(groups)} groups for {len(workers)} '
                             'workers: give one group per infer callable')
        for label, fn in (('preprocess', preprocess), ('postprocess', postprocess),
                          ('on_result', on_result)):
            if not callable(fn):
                raise TypeError(f'{label} is not callable: {fn!r}')

        self.name = name
        self.queue_size = queue_size
        self.full_policy = full_policy
        self.schedule = schedule
        self._jit = schedule == 'just_in_time'
        self._preprocess, self._infer, self._postprocess = preprocess, workers, postprocess
        self._on_result, self._on_drop = on_result, on_drop

        n = len(workers)
        self._lock = threading.Lock()
        self._c_space = threading.Condition(self._lock)    # blocked submitters
        self._c_input = threading.Condition(self._lock)    # pre: a frame waits, infer_q has room
        # workers: one condition each, so a frame wakes the one worker that should take it
        self._c_worker = [threading.Condition(self._lock) for _ in range(n)]
        self._c_reorder = threading.Condition(self._lock)  # post: next frame done, deliver_q room
        self._c_deliver = threading.Condition(self._lock)  # delivery: a frame to deliver
        self._c_done = threading.Condition(self._lock)     # flush: nothing in flight

        self._sources: Dict[Any, _Source] = {}
        self._ready: Deque[_Source] = deque()  # sources with waiting frames, in serving turn
        self._queued = 0                        # frames waiting in all input queues
        self._infer_q: Deque[_Frame] = deque()
        keys = list(dict.fromkeys(groups))
        self._group_of = [keys.index(g) for g in groups]  # worker -> dense group index
        self._load = [0] * len(keys)  # per group: frames inside its workers, plus claims
        self._waiting: List[int] = []  # idle workers, longest waiting first
        self._claimed = [False] * n    # woken to take a frame and not yet running
        self._claims = 0
        self._direct: Optional[_Frame] = None  # idle fast path: the frame handed to a worker
        self._direct_for = -1                  # ... and that worker's index
        self._inline = False                   # a worker is post-processing / delivering one
        self._infer_cap = len(keys)   # pre-processed frames waiting for a worker
        self._window = 2 * n          # frames taken by workers and not yet taken by post
        self._window_used = 0
        self._reorder: Dict[int, _Frame] = {}
        self._deliver_q: Deque[_Frame] = deque()
        self._deliver_cap = 1
        self._next_idx = 0            # pre assigns idx 0,1,2,... (dense, unlike seq)
        self._post_idx = 0            # next idx post takes from the reorder buffer

        self._seq = 0
        self._in = self._out = self._dropped = self._failed = self._rejected = 0
        self._per_worker = [0] * n
        self._busy_since: List[Optional[float]] = [None] * n  # start of each worker's call
        self._mean_pre: Optional[float] = None    # running means (s) for the just-in-time start
        self._mean_infer: Optional[float] = None
        self._closing = self._abort = self._stop = False

        self._stats = {k: RollingStats(stats_window) for k in STAGES}
        self._rate = RateMeter(max(2, stats_window))

        self._fault: Optional[str] = None  # set when a stage thread dies (see _guarded)
        self._threads: List[threading.Thread] = []
        targets = [('pre', self._pre_loop, ())]
        targets += [(f'infer{i}', self._infer_loop, (i,)) for i in range(n)]
        targets += [('post', self._post_loop, ()), ('deliver', self._deliver_loop, ())]
        for suffix, target, args in targets:
            # daemon: a hung model call must not keep the interpreter alive; close() still joins.
            t = threading.Thread(target=self._guarded, args=(target, *args),
                                 name=f'{name}-{suffix}', daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ public API
    @property
    def num_workers(self) -> int:
        return len(self._infer)

    @property
    def fault(self) -> Optional[str]:
        """Why a stage thread died (a bug in the pipeline's own code), or None."""
        return self._fault

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def threads(self) -> List[threading.Thread]:
        return list(self._threads)

    def busy_workers(self) -> Dict[int, float]:
        """{worker index: seconds since it entered its current inference call (0.0: idle)}.

        Every worker is listed. One that stays in one call far longer than the mean inference
        time is stuck (core/health.py turns that into ERROR naming it).
        """
        now = _now()
        with self._lock:
            return {i: 0.0 if t is None else now - t for i, t in enumerate(self._busy_since)}

    @property
    def mean_infer_s(self) -> Optional[float]:
        """Running mean of the inference calls' duration (s); None before the first one ends."""
        return self._mean_infer

    def submit(self, item: Any, context: Any = None, timeout: Optional[float] = None,
               source: Any = None) -> bool:
        """Queue `item` in `source`'s input queue; True if accepted.

        `source` is any hashable (e.g. a camera index); None is the default source. False:
        closed, or 'block' and `timeout` expired.
        """
        t_submit = _now()
        evicted: Optional[_Frame] = None
        with self._lock:
            src = self._sources.get(source)
            if src is None:
                src = self._sources[source] = _Source(source)
            if self._closing:
                self._rejected += 1
                src.rejected += 1
                return False
            q = src.q
            if len(q) >= self.queue_size:
                if self.full_policy == 'drop_oldest':
                    evicted = q.popleft()
                    self._queued -= 1
                    self._dropped += 1
                    src.dropped += 1
                    self._c_done.notify_all()
                else:
                    deadline = None if timeout is None else t_submit + max(0.0, timeout)
                    while len(q) >= self.queue_size and not self._closing:
                        remaining = None if deadline is None else deadline - _now()
                        if remaining is not None and remaining <= 0:
                            break
                        self._c_space.wait(remaining)
                    if self._closing or len(q) >= self.queue_size:
                        self._rejected += 1
                        src.rejected += 1
                        return False
            # The seq is taken at enqueue time so seq order is queue order even when several
            # producers block concurrently.
            frame = _Frame(self._seq, item, context, t_submit, src)
            self._seq += 1
            self._in += 1
            src.frames_in += 1
            if self._hand_to_idle_worker(frame):
                return True
            if not q and evicted is None:  # (after an eviction it still holds its turn)
                self._ready.append(src)  # the source waits for its turn from now on
            q.append(frame)
            self._queued += 1
            self._c_input.notify()
        if evicted is not None:
            self._report_drops([evicted])
        return True

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every accepted frame was delivered or dropped; False on timeout."""
        if threading.current_thread() in self._threads:
            raise RuntimeError('flush() called from a pipeline thread (e.g. on_result) would '
                               'wait for itself')
        deadline = None if timeout is None else _now() + timeout
        with self._lock:
            while self._in != self._out + self._dropped:
                if self._stop and not any(t.is_alive() for t in self._threads):
                    return False
                remaining = None if deadline is None else deadline - _now()
                if remaining is not None and remaining <= 0:
                    return False
                # Bounded wait so a close() racing with us is noticed.
                self._c_done.wait(0.5 if remaining is None else min(remaining, 0.5))
            return True

    def close(self, drain: bool = False, timeout: Optional[float] = None) -> bool:
        """Stop accepting, optionally deliver what was accepted, stop and join all threads.

        drain=False drops the frames still waiting anywhere (counted in `dropped`); a stage call
        already running finishes first, since it cannot be interrupted. `timeout` bounds the
        drain and the joins. Returns True if every thread was joined. Safe to call again.
        """
        deadline = None if timeout is None else _now() + timeout
        inside = threading.current_thread() in self._threads
        with self._lock:
            self._closing = True
            self._c_space.notify_all()
        if drain and not inside:
            self.flush(timeout)
        with self._lock:
            self._abort = self._stop = True
            left = [f for s in self._sources.values() for f in s.q]
            left += list(self._infer_q) + list(self._deliver_q)
            left += [self._reorder[k] for k in sorted(self._reorder)]
            if self._direct is not None:
                left.append(self._direct)
                self._load[self._group_of[self._direct_for]] -= 1
                self._direct, self._direct_for = None, -1
            for s in self._sources.values():
                s.q.clear()
            self._ready.clear()
            self._queued = 0
            self._infer_q.clear()
            self._deliver_q.clear()
            self._reorder.clear()
            self._dropped += len(left)
            for f in left:
                f.src.dropped += 1
            for c in self._conditions():
                c.notify_all()
        left.sort(key=lambda f: f.seq)
        self._report_drops(left)
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(None if deadline is None else max(0.0, deadline - _now()))
        alive = [t.name for t in self._threads if t.is_alive() and t is not me]
        if alive:
            LOG.warning('%s: threads still running after close(): %s (a stage call is stuck)',
                        self.name, ', '.join(alive))
        return not alive

    def __enter__(self) -> 'Pipeline':
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        # Normal exit delivers what was submitted; an exception unwinds without waiting for it.
        self.close(drain=exc_type is None)

    def stats(self) -> Dict[str, Any]:
        """Counters and per-stage latency (ms) over the last `stats_window` delivered frames."""
        with self._lock:
            out: Dict[str, Any] = {
                'frames_in': self._in, 'frames_out': self._out, 'dropped': self._dropped,
                'failed': self._failed, 'in_flight': self._in - self._out - self._dropped,
                'workers': len(self._infer), 'rejected': self._rejected,
                'queued': self._queued, 'per_worker': list(self._per_worker),
            }
            if self._fault is not None:
                out['fault'] = self._fault
            if any(k is not None for k in self._sources):
                # named sources (several cameras): counters per source
                out['sources'] = {k: s.counters() for k, s in self._sources.items()}
        out['fps'] = self._rate.rate()
        out['stages'] = {k: s.summary() for k, s in self._stats.items()}
        return out

    # ------------------------------------------------------------------ stage threads
    def _guarded(self, target: Callable[..., None], *args: Any) -> None:
        """Run a stage loop; if the pipeline's own code fails, say so instead of dying silently.

        Stage callables are already caught per frame; an exception here is a bug in the
        pipeline. It is logged, kept in `stats()['fault']` (health reports it as an error) and
        the pipeline stops accepting frames rather than stalling with a dead thread.
        """
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - a dead stage thread must be visible
            LOG.critical('%s: %s thread died: %r; the pipeline stops', self.name,
                         threading.current_thread().name, exc, exc_info=True)
            with self._lock:
                self._fault = f'{threading.current_thread().name}: {exc!r}'
                self._closing = True
                for c in self._conditions():
                    c.notify_all()

    def _pre_loop(self) -> None:
        while True:
            with self._lock:
                # Take a frame only when it can move on at once: the frame being pre-processed
                # is then the freshest one, not one that waits behind a busy stage.
                while not self._stop:
                    if self._queued and len(self._infer_q) < self._infer_cap:
                        delay = self._jit_delay() if self._jit else 0.0
                        if delay <= 0.0:
                            break
                        self._c_input.wait(delay)
                    else:
                        self._c_input.wait()
                if self._stop:
                    return
                src = self._ready.popleft()  # round-robin over sources with waiting frames
                fr = src.q.popleft()
                self._queued -= 1
                if src.q:
                    self._ready.append(src)
                fr.idx = self._next_idx
                self._next_idx += 1
                self._c_space.notify_all()
            self._run_pre(fr)
            with self._lock:
                self._mean_pre = _running_mean(self._mean_pre, fr.t['pre'])
                if self._abort:
                    self._dropped += 1
                    fr.src.dropped += 1
                    self._c_done.notify_all()
                else:
                    self._infer_q.append(fr)
                    self._wake_worker()
                    continue
            self._report_drops([fr])

    def _infer_loop(self, i: int) -> None:
        fn = self._infer[i]
        g = self._group_of[i]
        cond = self._c_worker[i]
        while True:
            with self._lock:
                while not self._stop and self._direct_for != i and not self._may_take(g):
                    self._wake_worker()  # the frame may be another group's to take
                    self._waiting.append(i)
                    cond.wait()
                    if self._claimed[i]:
                        self._claimed[i] = False
                        self._claims -= 1
                        self._load[g] -= 1
                    elif i in self._waiting:  # woken by close()
                        self._waiting.remove(i)
                if self._stop:
                    return
                direct = self._direct_for == i
                if direct:  # idle fast path: this thread runs the whole frame
                    fr, self._direct, self._direct_for = self._direct, None, -1
                else:
                    fr = self._infer_q.popleft()
                    self._load[g] += 1
                    self._c_input.notify()
                self._window_used += 1
                self._busy_since[i] = _now()
                self._wake_worker()  # more frames may wait for the other groups
            if direct:
                self._run_pre(fr)
            if fr.error is None:
                fr.worker = i
                t0 = _now()
                try:
                    fr.outputs = fn(fr.tensors)
                except BaseException as e:  # noqa: BLE001
                    fr.error = e
                fr.t['infer'] = _now() - t0
            fr.tensors = None
            with self._lock:
                self._busy_since[i] = None
                self._load[g] -= 1
                if direct:
                    self._mean_pre = _running_mean(self._mean_pre, fr.t['pre'])
                if 'infer' in fr.t:
                    self._mean_infer = _running_mean(self._mean_infer, fr.t['infer'])
                if self._jit:
                    self._c_input.notify()  # a worker freed up sooner than expected
                inline = (direct and not self._abort and fr.idx == self._post_idx
                          and not self._deliver_q)
                if inline:  # the next to come out, nothing ahead: post and deliver it here
                    self._post_idx += 1
                    self._window_used -= 1
                    self._inline = True
                    self._wake_worker()
                elif self._abort:
                    self._dropped += 1
                    fr.src.dropped += 1
                    self._c_done.notify_all()
                else:
                    self._reorder[fr.idx] = fr
                    if fr.idx == self._post_idx:
                        self._c_reorder.notify()
                    continue
            if not inline:
                self._report_drops([fr])
                continue
            self._run_post(fr)
            self._deliver(fr, inline=True)

    def _post_loop(self) -> None:
        while True:
            with self._lock:
                while not self._stop and (self._inline or not (
                        self._post_idx in self._reorder
                        and len(self._deliver_q) < self._deliver_cap)):
                    self._c_reorder.wait()
                if self._stop:
                    return
                fr = self._reorder.pop(self._post_idx)
                self._post_idx += 1
                self._window_used -= 1
                self._wake_worker()
            self._run_post(fr)
            with self._lock:
                if self._abort:
                    self._dropped += 1
                    fr.src.dropped += 1
                    self._c_done.notify_all()
                else:
                    self._deliver_q.append(fr)
                    self._c_deliver.notify()
                    continue
            self._report_drops([fr])

    def _deliver_loop(self) -> None:
        while True:
            with self._lock:
                while not self._stop and not self._deliver_q:
                    self._c_deliver.wait()
                if self._stop:
                    return
                fr = self._deliver_q.popleft()
                self._c_reorder.notify()
            self._deliver(fr)

    def _run_pre(self, fr: _Frame) -> None:
        t0 = _now()
        fr.t['queue'] = t0 - fr.t_submit
        try:
            fr.tensors, fr.meta = self._preprocess(fr.item)
        except BaseException as e:  # noqa: BLE001 - one bad frame must not stop the stream
            fr.error = e
        fr.t['pre'] = _now() - t0
        fr.item = None

    def _run_post(self, fr: _Frame) -> None:
        if fr.error is None:
            t0 = _now()
            try:
                fr.result = self._postprocess(fr.outputs, fr.meta)
            except BaseException as e:  # noqa: BLE001
                fr.error, fr.result = e, None
            fr.t['post'] = _now() - t0
        fr.outputs = fr.meta = None

    def _deliver(self, fr: _Frame, inline: bool = False) -> None:
        """Call on_result for `fr` and count it; `inline`: the fast path's worker delivers."""
        t = _now()
        fr.t['total'] = t - fr.t_submit
        for k, v in fr.t.items():
            self._stats[k].add(v)
        self._rate.tick(t)
        res = FrameResult(seq=fr.seq, context=fr.context, result=fr.result, error=fr.error,
                          timings={k: fr.t.get(k, 0.0) for k in STAGES}, worker=fr.worker,
                          source=fr.src.key)
        if fr.error is not None:
            LOG.debug('%s: frame %d failed: %r', self.name, fr.seq, fr.error)
        try:
            self._on_result(res)
        except BaseException:  # noqa: BLE001 - the delivery thread must survive
            LOG.exception('%s: on_result raised for frame %d (ignored)', self.name, fr.seq)
        with self._lock:
            self._out += 1
            fr.src.frames_out += 1
            if fr.error is not None:
                self._failed += 1
                fr.src.failed += 1
            if fr.worker >= 0:
                self._per_worker[fr.worker] += 1
            if inline:
                self._inline = False
                self._c_reorder.notify()
            self._c_done.notify_all()

    def _hand_to_idle_worker(self, fr: _Frame) -> bool:
        """Give `fr` to a waiting worker if nothing else is in flight (lock held; fast path)."""
        # nothing in flight: no frame claimed, handed over or inside the window either
        if self._in - 1 != self._out + self._dropped or not self._waiting or self._closing:
            return False
        i = self._waiting.pop(0)
        fr.idx = self._next_idx
        self._next_idx += 1
        self._direct, self._direct_for = fr, i
        self._load[self._group_of[i]] += 1
        self._c_worker[i].notify()
        return True

    def _unclaimed_frame(self) -> bool:
        """Whether a pre-processed frame waits that no woken worker claimed, with room for it."""
        return (len(self._infer_q) > self._claims
                and self._window_used + self._claims < self._window)

    def _may_take(self, g: int) -> bool:
        """Whether a worker of group `g` may take the next frame now (lock held)."""
        return self._unclaimed_frame() and g in self._next_groups()

    def _next_groups(self) -> Tuple[int, ...]:
        """Return the groups the next frame may go to: the idle ones, else the first to free.

        Busy groups are ranked by the start of their oldest running call; a group with only a
        claim (its worker not yet running) ranks last. The lock is held.
        """
        low = min(self._load)
        if low == 0:
            return tuple(g for g, load in enumerate(self._load) if load == 0)
        start = {g: float('inf') for g, load in enumerate(self._load) if load == low}
        for i, t in enumerate(self._busy_since):
            g = self._group_of[i]
            if t is not None and g in start:
                start[g] = min(start[g], t)
        first = min(start.values())
        return tuple(g for g, t in start.items() if t == first)

    def _wake_worker(self) -> None:
        """Wake the idle worker that should take the next frame, if one waits (lock held).

        The chosen worker's claim counts in its group's load until it runs, so the next frame
        of a burst goes to another group.
        """
        if not self._waiting or not self._unclaimed_frame():
            return
        groups = self._next_groups()
        for k, i in enumerate(self._waiting):
            g = self._group_of[i]
            if g in groups:
                del self._waiting[k]
                self._claimed[i] = True
                self._claims += 1
                self._load[g] += 1
                self._c_worker[i].notify()
                return

    def _conditions(self) -> List[threading.Condition]:
        return [self._c_space, self._c_input, self._c_reorder, self._c_deliver, self._c_done,
                *self._c_worker]

    def _jit_delay(self) -> float:
        """Seconds until pre-processing should start so the frame meets a free worker (lock held).

        Frames already waiting for a worker claim the first workers to become free; ours gets
        the next one. Without estimates yet, or when that worker is idle, start now.
        """
        if self._mean_infer is None or self._mean_pre is None:
            return 0.0
        busy = sorted(t for t in self._busy_since if t is not None)
        k = len(self._infer_q) - (len(self._busy_since) - len(busy))
        if k < 0 or k >= len(busy):
            return 0.0
        # start one pre-processing time plus a thread wake-up early: the frame is ready as the
        # worker frees (a larger margin only ages the frame; docs/performance.md, JIT lead)
        lead = self._mean_pre * JIT_PRE_FACTOR + JIT_WAKEUP_S
        return busy[k] + self._mean_infer - lead - _now()

    def _report_drops(self, frames: Sequence[_Frame]) -> None:
        if self._on_drop is None:
            return
        for fr in frames:
            try:
                self._on_drop(fr.seq, fr.context)
            except Exception:  # noqa: B902 - a callback must not stop the pipeline
                LOG.exception('%s: on_drop raised for frame %d (ignored)', self.name, fr.seq)


def _running_mean(mean: Optional[float], value: float, alpha: float = 0.2) -> float:
    return value if mean is None else mean + alpha * (value - mean)
