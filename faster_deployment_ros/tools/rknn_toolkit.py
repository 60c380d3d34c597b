"""rknn-toolkit2 side: build an .rknn from ONNX, and the PC-simulator server for the rknn backend.

Runs in `.venv-rknn` (the toolkit pins numpy<=1.26 and old onnx/protobuf, which the node's venv
must not get). The rknn backend reaches the simulator through `python -m
faster_deployment_ros.tools.rknn_toolkit serve`: a pipe carrying core.array_pipe messages
(small JSON headers and raw array bytes; no pickle: the two sides run different numpy majors).
The toolkit prints a lot, so the server keeps the protocol on a private copy of stdout and sends
everything else to stderr.
"""
from __future__ import annotations

from contextlib import contextmanager
import os
import sys
import time
from typing import Any, BinaryIO, Dict, Iterator, Optional, Sequence

import numpy as np

from ..core.array_pipe import recv, send

# --- building -----------------------------------------------------------------------------------


class ToolkitError(RuntimeError):
    """rknn-toolkit2 refused a step; the message names the step and quotes its log."""


@contextmanager
def captured_output(log_path: str) -> Iterator[None]:
    """Send fds 1 and 2 (the toolkit's prints and C++ logs) to `log_path` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def log_errors(log_path: Optional[str], limit: int = 12) -> str:
    """Return the toolkit's error lines (E ...) from its log, else its last lines."""
    if not log_path or not os.path.exists(log_path):
        return ''
    with open(log_path, errors='replace') as f:
        lines = [ln.rstrip() for ln in f.read().replace('\r', '\n').splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith('E ') or 'Error' in ln or 'error' in ln]
    return '\n'.join((errors or lines)[-limit:])


def build(cfg: Dict[str, Any], export_path: Optional[str] = None, simulate: bool = False,
          log_path: Optional[str] = None, progress=None):
    """Build `cfg['onnx']` with rknn-toolkit2; export it and/or keep it in the simulator.

    cfg: onnx, target_platform, mean_values, std_values, precision ('fp16' | 'int8'),
    dataset (calibration list, for int8), quant_img_rgb2bgr, inputs / input_size_list (optional).
    Returns the RKNN object with the simulator runtime initialised when `simulate`, else None.
    `progress` (a tools.convert.Progress) numbers the steps when given.
    """
    from rknn.api import RKNN

    @contextmanager
    def step(text: str) -> Iterator[None]:
        if progress is None:
            yield
        else:
            with progress.step(text):
                yield

    @contextmanager
    def quiet() -> Iterator[None]:
        if log_path:
            with captured_output(log_path):
                yield
        else:
            yield

    def check(ret: int, what: str) -> None:
        if ret != 0:
            detail = log_errors(log_path)
            raise ToolkitError(f'rknn-toolkit2 {what} failed (ret {ret})'
                               + (f':\n{detail}' if detail else ''))

    int8 = cfg.get('precision', 'fp16') == 'int8'
    with quiet():
        rknn = RKNN(verbose=False)
    try:
        with step('configuring rknn-toolkit2 for ' + cfg['target_platform']), quiet():
            check(rknn.config(mean_values=cfg.get('mean_values'), std_values=cfg.get('std_values'),
                              target_platform=cfg['target_platform'],
                              quant_img_RGB2BGR=bool(cfg.get('quant_img_rgb2bgr', False))),
                  'config')
        with step(f'loading {os.path.basename(cfg["onnx"])}'), quiet():
            check(rknn.load_onnx(model=cfg['onnx'], inputs=cfg.get('inputs'),
                                 input_size_list=cfg.get('input_size_list')), 'load_onnx')
        what = 'int8 quantisation and build' if int8 else 'fp16 build'
        with step(f'{what} (target {cfg["target_platform"]})'), quiet():
            check(rknn.build(do_quantization=int8, dataset=cfg.get('dataset') if int8 else None),
                  'build')
        if export_path:
            with step(f'writing {os.path.basename(export_path)}'), quiet():
                check(rknn.export_rknn(export_path), 'export_rknn')
        if simulate:
            with step('starting the PC simulator'), quiet():
                check(rknn.init_runtime(target=None), 'init_runtime (simulator)')
            return rknn
    except BaseException:  # noqa: B902 - released, then re-raised
        rknn.release()
        raise
    rknn.release()
    return None


# --- simulator server ---------------------------------------------------------------------------

def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Answer build / infer / close requests until the parent closes the pipe."""
    rknn = None
    log_path = os.environ.get('FDR_RKNN_LOG')
    while True:
        header, arrays = recv(inp)
        if header is None or header.get('cmd') == 'close':
            break
        try:
            if header['cmd'] == 'build':
                t0 = time.monotonic()
                if rknn is not None:
                    rknn.release()
                rknn = build(header['config'], simulate=True, log_path=log_path)
                send(out, {'ok': True, 'seconds': time.monotonic() - t0})
            elif header['cmd'] == 'infer':
                if rknn is None:
                    raise ToolkitError('infer before build')
                outs = rknn.inference(inputs=list(arrays), data_format=header.get('data_format'))
                if outs is None:
                    raise ToolkitError('inference returned nothing: ' + log_errors(log_path))
                send(out, {'ok': True}, [np.asarray(o) for o in outs])
            else:
                raise ToolkitError(f'unknown command {header["cmd"]!r}')
        except Exception as exc:  # noqa: B902 - reported to the parent (a BackendError there)
            send(out, {'ok': False, 'error': f'{type(exc).__name__}: {exc}'})
    if rknn is not None:
        rknn.release()


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ['serve']:
        sys.stderr.write('usage: python -m faster_deployment_ros.tools.rknn_toolkit serve\n')
        return 2
    proto_out = os.fdopen(os.dup(1), 'wb')
    os.dup2(2, 1)  # the toolkit's prints must not corrupt the protocol
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, proto_out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
