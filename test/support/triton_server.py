"""A real Triton Inference Server for tests and benchmarks: scripts/triton_onnx_server.py.

The server runs in its own process group from `.venv-triton` (scripts/test_assets.d/50_triton.sh:
pytriton with its tritonserver binary, ONNX Runtime), bound to 127.0.0.1 on free ports. Where it
cannot start (no venv, no binary, no permission) `start` calls `shared_data.missing`: a skip
here, a failure in CI.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
import signal
import socket
import subprocess
import tempfile
import time
from typing import Iterator, Optional, Sequence

from faster_deployment_ros.tools.processes import free_ports
from support.shared_data import missing, ROOT

PYTHON = Path(os.environ.get('FDR_TRITON_PYTHON', ROOT / '.venv-triton' / 'bin' / 'python'))
SCRIPT = ROOT / 'scripts' / 'triton_onnx_server.py'
START_TIMEOUT_S = 120.0


class TritonServer:
    """One server process serving `model` as `name` (plus `extra` args); start, stop, restart."""

    def __init__(self, model: Path, name: str = 'yolox_nano', extra: Sequence[str] = ()) -> None:
        self.model, self.name, self.extra = Path(model), name, list(extra)
        self.grpc_port, self.http_port, self.metrics_port = free_ports(3)
        self.proc: Optional[subprocess.Popen] = None
        self._log = tempfile.NamedTemporaryFile('w+', prefix='triton-', suffix='.log',
                                                delete=False)

    @property
    def url(self) -> str:
        return f'127.0.0.1:{self.grpc_port}'

    def model_path(self, name: str = '') -> str:
        return f'triton://{self.url}/{name or self.name}'

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors='replace')[-n:]

    def start(self) -> 'TritonServer':
        """Start the server and wait until it serves (READY on its stdout)."""
        if not PYTHON.exists():
            missing(f'{PYTHON} not found: the Triton server venv is built by '
                    'scripts/test_assets.d/50_triton.sh (make test-assets)')
        self._log.seek(0)
        self._log.truncate()
        cmd = [str(PYTHON), str(SCRIPT), str(self.model), '--name', self.name,
               '--address', '127.0.0.1', '--grpc-port', str(self.grpc_port),
               '--http-port', str(self.http_port), '--metrics-port', str(self.metrics_port),
               *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if 'READY grpc=' in self.log_tail(10_000):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        missing(f'the Triton server did not start within {START_TIMEOUT_S:g} s '
                f'({" ".join(cmd)}):\n{self.log_tail()}')
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL to its process group) and wait for it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # tritonserver and its stubs, if still there
        proc.wait()
        # A killed server leaves its Python-backend regions (named after the pytriton process).
        for region in Path('/dev/shm').glob(f'pytrtion{proc.pid}-*'):
            with contextlib.suppress(OSError):
                region.unlink()
        self._wait_port_closed()

    def _wait_port_closed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(('127.0.0.1', self.grpc_port)) != 0:
                    return
            time.sleep(0.1)

    def close(self) -> None:
        self.stop()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


@contextlib.contextmanager
def triton_server(model: Path, name: str = 'yolox_nano',
                  extra: Sequence[str] = ()) -> Iterator[TritonServer]:
    """Yield a started TritonServer; always stopped on exit."""
    server = TritonServer(model, name, extra)
    try:
        yield server.start()
    finally:
        server.close()


__all__ = ['PYTHON', 'TritonServer', 'free_ports', 'triton_server']
