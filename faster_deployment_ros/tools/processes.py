"""The tools' node processes: command lines, starting, stopping, and their CPU and memory.

A node runs as its console script (``detector_node``, ``depth_node``) beside this Python when the
package is installed, else as ``python -m faster_deployment_ros.ros.<node>``. It is stopped as
Ctrl-C would (SIGINT: a clean lifecycle shutdown), then SIGTERM, then SIGKILL. CPU and memory
come from /proc (Linux): a process's CPU seconds, resident size and threads, and the whole
machine's busy time, so that a run on a shared machine can say how much was someone else's.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple,
                    Optional, Sequence, Tuple, Union)

_CLK_TCK = os.sysconf('SC_CLK_TCK')
_PAGE = os.sysconf('SC_PAGE_SIZE')


# --- command lines -------------------------------------------------------------------------------

def ros_value(value: Any) -> str:
    """Return a parameter value as `-p name:=value` wants it (booleans as true / false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def node_command(executable: str = 'detector_node', *, params_file: Optional[Path] = None,
                 model: Optional[Path] = None,
                 parameters: Union[Mapping[str, Any], Iterable[str]] = (),
                 ros_args: Sequence[str] = ()) -> List[str]:
    """Command line of one of the package's nodes (``detector_node`` or ``depth_node``).

    ``params_file``: a ``--params-file`` YAML; ``model``: sets ``model_path`` and
    ``autostart:=true`` (the node configures and activates itself); ``parameters``: more
    ``-p`` values, a mapping (name -> value) or ``name:=value`` strings, after those;
    ``ros_args``: anything else after ``--ros-args`` (remappings ``-r a:=b``, ...), last.
    """
    exe = Path(sys.executable).with_name(executable)
    cmd = ([str(exe)] if exe.is_file()
           else [sys.executable, '-m', f'faster_deployment_ros.ros.{executable}'])
    cmd.append('--ros-args')
    if params_file is not None:
        cmd += ['--params-file', str(params_file)]
    if model is not None:
        cmd += ['-p', f'model_path:={model}', '-p', 'autostart:=true']
    items = ([f'{k}:={ros_value(v)}' for k, v in parameters.items()]
             if isinstance(parameters, Mapping) else list(parameters))
    for item in items:
        cmd += ['-p', item]
    return cmd + list(ros_args)


# --- starting and stopping -----------------------------------------------------------------------

def start_process(cmd: Sequence[str], log_path: Path,
                  env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """Start ``cmd`` in its own session, stdout and stderr into ``log_path`` (truncated).

    Without ``env`` the process inherits this one's environment (apply the camera environment,
    ros.middleware_env, before starting it).
    """
    with open(log_path, 'w') as log:  # the child keeps its own descriptor
        return subprocess.Popen(list(cmd), env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_processes(procs: Sequence[subprocess.Popen], timeout: float = 10.0) -> List[int]:
    """Stop processes together: SIGINT, after ``timeout`` s SIGTERM, after 5 s more SIGKILL.

    Returns their exit codes (-9 for one that could not be reaped).
    """
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        running = [p for p in procs if p.poll() is None]
        if not running:
            break
        for p in running:
            p.send_signal(sig)
        deadline = time.monotonic() + wait
        for p in running:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                continue
    return [p.returncode if p.returncode is not None else -9 for p in procs]


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """Stop one process as stop_processes does; return its exit code."""
    return stop_processes([proc], timeout)[0]


def free_ports(n: int) -> List[int]:
    """Return `n` distinct TCP ports free on 127.0.0.1 now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def log_tail(log_path: Path, lines: int = 25) -> List[str]:
    """Return the last ``lines`` lines of a process log."""
    return Path(log_path).read_text(errors='replace').splitlines()[-lines:]


@contextlib.contextmanager
def node_process(cmd: List[str], log_path: Path, tool: str, log: Callable[[str], None],
                 env: Optional[Dict[str, str]] = None) -> Iterator[SimpleNamespace]:
    """Run a tool's node for the body of a `with`, its output in `log_path`.

    rclpy is initialised here unless this process already holds a context (in-process callers,
    e.g. tests). The body's exception is printed, not raised; the node is then stopped (SIGINT
    first) and, when the body did not finish, the last lines of its log are printed. The yielded
    `run` has `proc`, and `ok` and `code` (the node's exit code) once the `with` has ended.
    """
    from .graph_node import ros_context
    name = Path(log_path).stem
    with ros_context():
        run = SimpleNamespace(ok=False, code=None, proc=start_process(cmd, log_path, env))
        try:
            yield run
            run.ok = True
        except Exception as exc:  # noqa: BLE001 - reported with the node's log
            print(f'{tool}: {type(exc).__name__}: {exc}', file=sys.stderr)
        finally:
            run.code = stop_process(run.proc)
    log(f'{name} stopped (exit code {run.code})')
    if not run.ok:
        print(f'{tool}: {name} log (last lines):\n  ' + '\n  '.join(log_tail(log_path)),
              file=sys.stderr)


# --- CPU and memory from /proc -------------------------------------------------------------------

class ProcStat(NamedTuple):
    """One process's use so far: CPU seconds (user + system), resident bytes, threads."""

    cpu_s: float
    rss_bytes: int
    threads: int


def proc_stat(pid: Union[int, str]) -> Optional[ProcStat]:
    """Return a process's ProcStat (``'self'``: this one) from /proc; None once it is gone.

    Finished children are not counted; an exited child not yet waited for still is.
    """
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return ProcStat((int(fields[11]) + int(fields[12])) / _CLK_TCK,
                        int(fields[21]) * _PAGE, int(fields[17]))
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu_s() -> Tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine (all cores, all processes) so far.

    (0.0, 0.0) where /proc/stat cannot be read.
    """
    try:
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:9]]  # guest time is inside user's
    except OSError:
        return 0.0, 0.0
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v) - idle) / _CLK_TCK, sum(v) / _CLK_TCK


def load_avg() -> float:
    """Return the machine's 1-minute load average, rounded."""
    return round(os.getloadavg()[0], 2)


class CpuWatch:
    """CPU used from this object's creation to each read(): this process, ours, everyone else.

    read() gives, per second of wall time (cores): ``own`` (this process), ``others_ours`` (the
    processes ``other_pids``, e.g. the node under test; ``others_ours_s`` in CPU seconds),
    ``foreign`` (the rest of the machine: other users of a shared machine), ``machine_pct`` (the
    machine's busy share of all its cores, %) and ``wall_s``. ``others_ours``,
    ``others_ours_s`` and ``foreign`` are None once one of ``other_pids`` is gone.
    """

    def __init__(self, other_pids: Sequence[int] = ()) -> None:
        self.pids = list(other_pids)
        self.t0, self.own0 = time.perf_counter(), time.process_time()
        self.busy0, self.total0 = machine_cpu_s()
        self.oth0 = self._others_s()

    def _others_s(self) -> Optional[float]:
        stats = [proc_stat(p) for p in self.pids]
        return None if None in stats else sum(s.cpu_s for s in stats)

    def read(self) -> Dict[str, Optional[float]]:
        wall = max(1e-9, time.perf_counter() - self.t0)
        own = (time.process_time() - self.own0) / wall
        oth = self._others_s()
        oth_s = None if oth is None or self.oth0 is None else oth - self.oth0
        busy_s, total_s = machine_cpu_s()
        busy_s, total_s = busy_s - self.busy0, total_s - self.total0
        return {'own': own, 'others_ours': None if oth_s is None else oth_s / wall,
                'others_ours_s': oth_s,
                'foreign': None if oth_s is None else max(0.0, (busy_s - oth_s) / wall - own),
                'machine_pct': round(100.0 * busy_s / total_s, 1) if total_s > 0 else 0.0,
                'wall_s': wall}


class PeakRss(threading.Thread):
    """The largest total resident size of ``pids`` seen while running (sampled every period).

    ``start()`` it, ``stop()`` it; ``peak_bytes`` holds the figure.
    """

    def __init__(self, pids: Sequence[int], period_s: float = 0.25) -> None:
        super().__init__(daemon=True, name='peak-rss')
        self.pids, self.period_s, self.peak_bytes = list(pids), period_s, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.period_s):
            stats = [proc_stat(p) for p in self.pids]
            self.peak_bytes = max(self.peak_bytes, sum(s.rss_bytes for s in stats if s))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
