#!/usr/bin/env python3
"""Serve an ONNX model on a Triton Inference Server (pytriton), ONNX Runtime inside, CPU.

Runs from the Triton venv (`.venv-triton`, scripts/test_assets.d/50_triton.sh), not from the
node's .venv: pytriton brings the tritonserver binary and its own pinned dependencies.

    .venv-triton/bin/python scripts/triton_onnx_server.py MODEL.onnx --name yolox_nano \
        --grpc-port 8001 [--address 127.0.0.1] [--max-batch 8] [--queue-delay-us 2000]

The model's inputs and outputs come from the ONNX file. A model with a fixed batch of 1 (the
YOLOX export) is served with dynamic batching all the same: Triton gathers the queued requests
into one batch and the bound function runs them one by one on its session; a model with a
dynamic batch dimension runs the gathered batch in one call. `--slow NAME=SECONDS` binds a
second copy that sleeps that long per batch (the tests' per-request timeout). Prints
`READY grpc=<port> http=<port>` on stdout once the server answers, then serves until SIGINT or
SIGTERM.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time

import numpy as np

ONNX_TO_NUMPY = {'tensor(float)': np.float32, 'tensor(float16)': np.float16,
                 'tensor(double)': np.float64, 'tensor(uint8)': np.uint8,
                 'tensor(int8)': np.int8, 'tensor(int32)': np.int32, 'tensor(int64)': np.int64,
                 'tensor(bool)': np.bool_}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('model', help='the .onnx model')
    ap.add_argument('--name', default='', help='model name on the server (default: file stem)')
    ap.add_argument('--address', default='127.0.0.1',
                    help='address to listen on (default 127.0.0.1; 0.0.0.0 for robots)')
    ap.add_argument('--grpc-port', type=int, default=8001)
    ap.add_argument('--http-port', type=int, default=8000)
    ap.add_argument('--metrics-port', type=int, default=8002)
    ap.add_argument('--max-batch', type=int, default=8,
                    help='dynamic batching up to this many requests (0: no batching)')
    ap.add_argument('--queue-delay-us', type=int, default=0,
                    help='how long a request may wait for others to fill a batch')
    ap.add_argument('--threads', type=int, default=0, help='ONNX Runtime intra-op threads')
    ap.add_argument('--instances', type=int, default=1,
                    help='model instances (ONNX Runtime sessions) run side by side')
    ap.add_argument('--slow', action='append', default=[], metavar='NAME=SECONDS',
                    help='also serve the model as NAME, sleeping SECONDS per batch')
    return ap.parse_args(argv)


def make_session(path: str, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return ort.InferenceSession(path, sess_options=so, providers=['CPUExecutionProvider'])


def make_infer(session, delay_s: float = 0.0):
    """Return the bound function: a batch of requests in, their outputs (same order) out."""
    from pytriton.decorators import batch
    ins = session.get_inputs()
    outs = [o.name for o in session.get_outputs()]
    fixed_batch = isinstance(ins[0].shape[0], int)  # e.g. YOLOX: batch 1 baked into the graph

    @batch
    def infer(**inputs):
        if delay_s:
            time.sleep(delay_s)
        if not fixed_batch:
            return dict(zip(outs, session.run(outs, inputs)))
        n = next(iter(inputs.values())).shape[0]
        rows = [session.run(outs, {k: v[i:i + 1] for k, v in inputs.items()}) for i in range(n)]
        return {name: np.concatenate([r[j] for r in rows]) for j, name in enumerate(outs)}
    return infer


def tensors(args_):
    """Return pytriton Tensors for ONNX Runtime's node args (the batch dimension left out)."""
    from pytriton.model_config import Tensor
    return [Tensor(name=a.name, dtype=ONNX_TO_NUMPY[a.type],
                   shape=tuple(d if isinstance(d, int) else -1 for d in a.shape[1:]))
            for a in args_]


def match_python_library() -> None:
    """Make Triton's Python-backend stub load this interpreter's libpython, not another 3.x.

    The stub links `libpython3.X.so.1.0` by name; where the system's (e.g. Debian's 3.11.2) is
    found first while the venv runs another build (pyenv's 3.11.7), the stub mixes one
    interpreter with the other's standard library and fails in multiprocessing. The server
    and its stubs inherit this environment.
    """
    import os
    import sysconfig
    libdir = sysconfig.get_config_var('LIBDIR') or ''
    name = sysconfig.get_config_var('INSTSONAME') or ''
    if libdir and name and os.path.exists(os.path.join(libdir, name)):
        paths = [p for p in os.environ.get('LD_LIBRARY_PATH', '').split(':') if p]
        os.environ['LD_LIBRARY_PATH'] = ':'.join([libdir] + [p for p in paths if p != libdir])


def main(argv=None) -> int:
    args = parse_args(argv)
    match_python_library()
    from pytriton.model_config import DynamicBatcher, ModelConfig
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    name = args.name or args.model.rsplit('/', 1)[-1].split('.')[0]
    probe = make_session(args.model, args.threads)
    config = TritonConfig(grpc_address=args.address, grpc_port=args.grpc_port,
                          http_address=args.address, http_port=args.http_port,
                          metrics_port=args.metrics_port, allow_metrics=False,
                          exit_timeout_secs=10, log_verbose=0)
    if args.max_batch > 0:
        model_config = ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher(
            max_queue_delay_microseconds=args.queue_delay_us, preserve_ordering=True))
    else:
        model_config = ModelConfig(batching=False)
    if args.max_batch <= 0:  # no batch dimension: the tensors are served as the model has them
        from pytriton.model_config import Tensor
        def full(a):  # noqa: E306
            return Tensor(name=a.name, dtype=ONNX_TO_NUMPY[a.type],
                          shape=tuple(d if isinstance(d, int) else -1 for d in a.shape))
        ins, outs = [full(a) for a in probe.get_inputs()], [full(a) for a in probe.get_outputs()]
    else:
        ins, outs = tensors(probe.get_inputs()), tensors(probe.get_outputs())

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    # No endpoint behind pytriton's access token: clients register shared memory and list
    # the models as with a stock tritonserver.
    security = TritonSecurityConfig(restricted_endpoints=[])
    with Triton(config=config, security_config=security) as triton:
        fns = [make_infer(make_session(args.model, args.threads))
               for _ in range(max(1, args.instances))]
        triton.bind(model_name=name, infer_func=fns, inputs=ins, outputs=outs,
                    config=model_config, strict=True)
        for spec in args.slow:
            slow_name, seconds = spec.split('=', 1)
            triton.bind(model_name=slow_name, infer_func=make_infer(probe, float(seconds)),
                        inputs=ins, outputs=outs, config=model_config)
        triton.run()
        print(f'READY grpc={args.grpc_port} http={args.http_port}', flush=True)
        while not stop and triton.is_alive():
            time.sleep(0.2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
