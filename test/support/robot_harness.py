"""The README's robot section as a robot engineer runs it: colcon, `ros2 launch`, the ros2 CLI.

ROS 2's launch system and command line come from ../shared/vendor (scripts/setup_env.sh installs
them into the venv, colcon from the index); where they are missing these tests skip, except in
CI (CI=true), where that is a failure. `build_workspace` builds the package in a colcon
workspace exactly as the README says and returns the environment `source install/setup.bash`
gives; `Launched` runs a long-lived command (`ros2 launch ...`) in its own process group and
waits on its output lines; `ros2` runs one command-line call, bounded in time.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = 'faster_deployment_ros'
VENV_BIN = Path(sys.executable).parent
README = ROOT / 'README.md'


def in_ci() -> bool:
    return os.environ.get('CI', '').lower() in ('true', '1', 'yes')


def require_ros2_tools() -> None:
    """Skip (fail in CI) unless `ros2`, `ros2 launch`, launch_testing and colcon are installed."""
    missing = [m for m in ('launch', 'launch_ros', 'launch_testing', 'ros2cli', 'ros2launch',
                           'composition_interfaces', 'colcon_core')
               if importlib.util.find_spec(m) is None]
    missing += [exe for exe in ('ros2', 'colcon') if not (VENV_BIN / exe).exists()]
    if missing:
        reason = (f'not installed: {", ".join(missing)} (scripts/setup_env.sh installs ROS 2\'s '
                  'launch and command line from ../shared/vendor, colcon from the index)')
        if in_ci():
            pytest.fail(f'{reason}; CI must have them', pytrace=False)
        pytest.skip(reason)


def shell_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Return the environment of a shell with the venv activated (its bin first on PATH)."""
    env = dict(os.environ if base is None else base)
    env['PATH'] = f'{VENV_BIN}{os.pathsep}{env.get("PATH", "")}'
    env['VIRTUAL_ENV'] = str(VENV_BIN.parent)
    env.pop('PYTHONPATH', None)  # a robot's shell has no checkout on the path
    env['PYTHONUNBUFFERED'] = '1'  # output lines arrive as they are written
    # ROS 2 itself is in the venv (the index's wheels): what sourcing /opt/ros/$ROS_DISTRO gives
    env.setdefault('AMENT_PREFIX_PATH', str(VENV_BIN.parent))
    return env


def sourced(script: Path, env: Dict[str, str]) -> Dict[str, str]:
    """Return `env` after `source script` in bash (what `source install/setup.bash` gives)."""
    out = subprocess.run(['bash', '-c', 'source "$1" && env -0', 'source', str(script)],
                         env=env, capture_output=True, timeout=60, check=True).stdout
    return dict(item.split('=', 1) for item in out.decode().split('\0') if '=' in item)


class Workspace:
    """A colcon workspace with this package built and installed (`ws/install`)."""

    def __init__(self, root: Path, env: Dict[str, str], build_log: str, seconds: float):
        self.root = root
        self.install = root / 'install'
        self.env = env
        self.build_log = build_log
        self.seconds = seconds

    @property
    def share(self) -> Path:
        return self.install / PACKAGE / 'share' / PACKAGE


def clone_working_tree(dest: Path) -> None:
    """Copy what `git clone <this repo>` gives from the working tree (uncommitted work too).

    The files git tracks plus new ones it does not ignore; nothing ignored (.venv, .cache,
    build outputs) travels.
    """
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=ROOT,
                           capture_output=True, check=True, timeout=60).stdout.decode()
    for rel in filter(None, files.split('\0')):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def build_workspace(base: Path) -> Workspace:
    """README: cd ~/ros2_ws/src && git clone ...; colcon build --packages-select ...; source."""
    ws = base / 'ros2_ws'
    clone_working_tree(ws / 'src' / PACKAGE)
    env = shell_env()
    start = time.monotonic()
    proc = subprocess.run(['colcon', 'build', '--packages-select', PACKAGE], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'colcon build failed:\n{log[-4000:]}'
    seconds = time.monotonic() - start
    return Workspace(ws, sourced(ws / 'install' / 'setup.bash', env), log, seconds)


def ros2(env: Dict[str, str], *args: str, timeout: float = 60.0,
         check: bool = True, discovery: float = 60.0) -> subprocess.CompletedProcess:
    """Run `ros2 ARGS` (stdout and stderr apart); a non-zero exit fails unless check=False.

    A command that names a node answers "Node not found" and does nothing while the ros2 daemon
    has not discovered that node yet (a daemon started by an earlier command discovers on its
    own schedule); such an answer is repeated for up to `discovery` seconds.
    """
    deadline = time.monotonic() + discovery
    while True:
        try:
            proc = subprocess.run(['ros2', *args], env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f'ros2 {" ".join(args)} still running after {timeout} s; '
                                 f'output: {exc.stdout!r} {exc.stderr!r}') from None
        unseen = proc.returncode != 0 and \
            (proc.stdout + proc.stderr).strip().endswith('Node not found')
        if not unseen or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # polling an external process's discovery: no event to wait on
    if check:
        assert proc.returncode == 0, (f'ros2 {" ".join(args)} exited {proc.returncode}:\n'
                                      f'{proc.stdout}{proc.stderr}')
    return proc


def ros2_until(env: Dict[str, str], args: Sequence[str], done: Callable[[str], bool],
               timeout: float = 60.0) -> str:
    """Repeat a read-only `ros2 ARGS` until `done(stdout + stderr)` (discovery) or `timeout`."""
    deadline = time.monotonic() + timeout
    text = ''
    while time.monotonic() < deadline:
        proc = ros2(env, *args, timeout=max(5.0, deadline - time.monotonic()), check=False,
                    discovery=0)
        text = proc.stdout + proc.stderr
        if done(text):
            return text
    raise AssertionError(f'ros2 {" ".join(args)}: not as expected within {timeout} s; last '
                         f'output:\n{text}')


def stop_daemon(env: Dict[str, str]) -> None:
    """Stop the ros2 daemon the command line started for this domain (it outlives the calls)."""
    subprocess.run(['ros2', 'daemon', 'stop'], env=env, capture_output=True, timeout=30)


class Launched:
    """A long-running command (`ros2 launch ...`) in its own process group, read line by line.

    `wait_for(pattern)` blocks until a line matches (or the process exits, or the timeout);
    `stop()` sends SIGINT to the whole group as Ctrl-C would, then SIGKILL if it lingers. Use
    it as a context manager so the processes are stopped whatever happens.
    """

    def __init__(self, cmd: List[str], env: Dict[str, str], cwd: Optional[Path] = None):
        self.cmd = cmd
        self.lines: List[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors='replace',
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, name='launched-reader', daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip('\n'))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self, last: int = 80) -> str:
        with self._cond:
            return '\n'.join(self.lines[-last:])

    def wait_for(self, pattern: str, timeout: float = 60.0, start: int = 0) -> re.Match:
        """Return the match of the first line (from index `start`) matching `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = regex.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(left, 0.5))
        raise AssertionError(f'no line matching {pattern!r} within {timeout} s from '
                             f'{" ".join(self.cmd)} (exit code {self.proc.poll()}); output:\n'
                             f'{self.output()}')

    def mark(self) -> int:
        """Return how many lines came so far (wait_for(start=...) then sees only later ones)."""
        with self._cond:
            return len(self.lines)

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """SIGINT to the process group, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:  # children that outlived their launcher too
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)
        self._reader.join(10)
        return self.proc.returncode

    def __enter__(self) -> 'Launched':
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def readme_robot_commands() -> List[str]:
    """Every command line of the README's "On a robot" section.

    Its code blocks, and the `...` spans of its usage notes (up to "What of this runs here").

    Backslash-continued lines are joined; `a && b` are separate commands.
    """
    text = README.read_text()
    section = text.split('## On a robot', 1)[1].split('\n## ', 1)[0]
    commands: List[str] = []
    for block in re.findall(r'```bash\n(.*?)```', section, re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            commands += [' '.join(c.split()) for c in line.split('&&') if c.strip()]
    usage = section.split('#### What of this runs here', 1)[0]  # not the notes on the tests
    for span in re.findall(r'`((?:ros2 \S+|colcon|sudo|pip|source|cd) [^`]+)`', usage):
        commands.append(' '.join(span.split()))
    return commands


def flatten(params: dict, prefix: str = '') -> Dict[str, object]:
    """{'onnxruntime': {'providers': [...]}} -> {'onnxruntime.providers': [...]} (ROS names)."""
    out: Dict[str, object] = {}
    for key, value in params.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(flatten(value, name + '.'))
        else:
            out[name] = value
    return out


def yaml_parameters(path: Path) -> Dict[str, object]:
    """Return the parameters of a node YAML (its one entry, `/**` or a node name), flat."""
    import yaml
    doc = yaml.safe_load(Path(path).read_text())
    (entry,) = doc.values()
    return flatten(entry['ros__parameters'])


LOAD_LINE = re.compile(
    r'^Set parameter (?P<name>\S+) (?P<ok>successful|failed)(?:: (?P<why>.*))?$', re.M)


def param_load(env: Dict[str, str], node: str, path: Path) -> Dict[str, Optional[str]]:
    """`ros2 param load NODE PATH`: {parameter: None if set, else the node's reason}.

    Fails unless the command answered for every parameter of the file and every rejection
    came with a reason.
    """
    proc = ros2(env, 'param', 'load', node, str(path), timeout=90)
    text = proc.stdout + proc.stderr
    results = {m['name']: (None if m['ok'] == 'successful' else (m['why'] or ''))
               for m in LOAD_LINE.finditer(text)}
    expected = yaml_parameters(path)
    assert set(results) == set(expected), (
        f'ros2 param load {path.name}: answered for {sorted(results)}, the file has '
        f'{sorted(expected)}:\n{text}')
    silent = [name for name, why in results.items() if why is not None and not why.strip()]
    assert not silent, f'{path.name}: {silent} rejected without a reason:\n{text}'
    return results


def param_dump(env: Dict[str, str], node: str) -> Dict[str, object]:
    """`ros2 param dump NODE` parsed: the node's parameters, flattened."""
    import yaml
    text = ros2(env, 'param', 'dump', node, timeout=60).stdout
    doc = yaml.safe_load(text)
    assert list(doc) == [node], f'ros2 param dump {node} printed another node:\n{text}'
    return flatten(doc[node]['ros__parameters'])


def same_value(a: object, b: object) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            abs(float(a) - float(b)) < 1e-9
    return a == b


class FrameStream:
    """Publish real frames on `topic` at `rate_hz` from a thread until stopped (rclpy node)."""

    def __init__(self, topic: str, frames: Sequence, rate_hz: float = 10.0,
                 frame_id: str = 'stream'):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from faster_deployment_ros.core.image_codec import fill_image_msg
        from sensor_msgs.msg import Image
        self.node = rclpy.create_node(f'frame_stream_{os.getpid()}_{time.monotonic_ns()}')
        self.pub = self.node.create_publisher(Image, topic, 5)
        self.msgs = []
        for frame in frames:
            msg = fill_image_msg(Image(), frame, 'bgr8')
            msg.header.frame_id = frame_id
            self.msgs.append(msg)
        self.count = 0
        self.node.create_timer(1.0 / rate_hz, self._publish)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name='frame-stream', daemon=True)
        self._thread.start()

    def _publish(self) -> None:
        msg = self.msgs[self.count % len(self.msgs)]
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
        self.count += 1

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def stop(self) -> None:
        from support.ros_nodes import destroy_node
        self._stop.set()
        self._thread.join(10)
        self.executor.remove_node(self.node)
        destroy_node(self.node)

    def __enter__(self) -> 'FrameStream':
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def video_frames(path: Path, n: int) -> list:
    import cv2
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert frames, f'no frame decoded from {path}'
    return frames


def replay(bag: Path, out_dir: Path, in_topic: str, out_topic: str,
           out_type: str = 'vision_msgs/msg/Detection2DArray', idle_timeout: float = 15.0,
           **kw) -> dict:
    """Replay a recording into a running node in lockstep and record its outputs (report).

    Each frame goes out once the previous one's output came, or `idle_timeout` passed.
    """
    from faster_deployment_ros.tools.replay import play_record, ReplayConfig
    cfg = ReplayConfig(in_bag=bag, out_dir=out_dir, in_topic=in_topic, out_topic=out_topic,
                       out_type=out_type, rate=0.0, lockstep=True, wait_timeout=60.0,
                       idle_timeout=idle_timeout, settle_timeout=max(10.0, idle_timeout),
                       node_name=f'robot_replay_{os.getpid()}_{time.monotonic_ns()}', **kw)
    return play_record(cfg, log=lambda s: None)


def launched_pid(launch: Launched, executable: str, timeout: float = 60.0) -> int:
    """Return the pid `ros2 launch` reports for `executable` ('process started with pid')."""
    m = launch.wait_for(rf'\[{re.escape(executable)}-\d+\]: process started with pid \[(\d+)\]',
                        timeout)
    return int(m.group(1))
