"""Remote-GPU row: N clients into one Triton server running YOLOv8n on a GPU.

The GPU counterpart of benchmarks/triton_clients.py (which runs everything on the CPU). On a
machine with an NVIDIA GPU, one Triton Inference Server (pytriton; the bound function runs the
project's YOLOv8n test graph as TorchScript on the GPU, dynamic batching up to --max-batch
with --queue-delay-us) serves N clients, each one PerceptionRuntime (ROS-free, 1 worker,
`backend: triton` over gRPC, as a remote client would). Side by side, on the same cores:

- N local ONNX Runtime CPU sessions (threads = cores / N each);
- N in-process GPU sessions: the same TorchScript model called from each client's worker
  through torch, no server, no batching (the network-free reference).

Rows: per request, serial (the bare backend's `infer` on one preprocessed frame); N clients
fed flat out (full_policy block, queue 2: throughput) and each as a --rate Hz camera
(drop_oldest, queue 1: latency, share of frames delivered). Frames/s of all clients together,
submit-to-result latency p50 / p99 over every frame in the --duration s window after 1 s of
warm-up. Clients are threads of one process (as in triton_clients.py); the server is another
process on the same machine (loopback), so the network is a loopback, not a wire.

Three subcommands:

    # here (the export venv: ultralytics, torch, onnx, onnxruntime, opencv): the bundle
    .venv-export/bin/python benchmarks/triton_gpu_row.py prepare --bundle DIR \
        --wheels WHEELS --pytriton-wheel nvidia_pytriton-0.7.0-...whl \
        --numpy1-wheel numpy-1.26.4-cp312-...whl [--libpython PATH]
    # on the GPU machine (Python 3.12 with torch, onnx, onnxruntime, opencv):
    OUT=OUTDIR bash DIR/device.sh [run options]   # installs the carried wheels, runs `run`
    python3 DIR/triton_gpu_row.py run --bundle DIR --out OUTDIR [--clients 1,4,8]
    python3 DIR/triton_gpu_row.py serve --bundle DIR --grpc-port P ...   # the server alone

The wheels (the GPU machine has Python 3.12 and no network), e.g. into WHEELS:

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d WHEELS tritonclient==2.73.0 pyzmq sh \
        importlib_metadata python-rapidjson protobuf==6.33.5 gevent geventhttpclient \
        'greenlet<3.4' zope.event zope.interface brotli
    # and, elsewhere (not into WHEELS): nvidia-pytriton==0.7.0, numpy==1.26.4

--libpython carries a libpython3.12.so.1.0 (7 MiB xz) for a machine without one (Triton's
Python-backend stub links it); with it the bundle and the repository exceed the device tool's
64 MiB, so it was left out of the call (device.sh says which one the stub found).

`prepare` rebuilds the conditioned network exactly as scripts/build_test_models.py does
(same seed, same calibration frames), exports it with ultralytics' TorchScript exporter,
checks it against .cache/models/yolov8n.onnx (ONNX Runtime, max abs diff) and saves it with
the weights that the ONNX file also holds zeroed (they travel once, in the ONNX file; `run`
copies them back and checks the result against ONNX Runtime again on the GPU machine).
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
if not (HERE / 'faster_deployment_ros').is_dir():  # in the repository; the bundle has a copy
    sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))  # runtime_clients, beside it in both

from faster_deployment_ros.backends import Backend, TensorSpec  # noqa: E402
from faster_deployment_ros.tools.processes import free_ports  # noqa: E402
from runtime_clients import adapter_maker, clients, pct, serial  # noqa: E402
import numpy as np  # noqa: E402, I100
MODEL = 'yolov8n'
SKELETON = f'{MODEL}.skeleton.torchscript.xz'
WEIGHT_NAMES = f'{MODEL}.weights_from_onnx.json'
INPUT, OUTPUT = 'images', 'output0'
IN_SHAPE, OUT_SHAPE = (3, 640, 640), (84, 8400)
#: where the server and the in-process rows run the model; `cpu` only to smoke-test the script
DEVICE = os.environ.get('GPUROW_DEVICE', 'cuda')


# ---- the model -----------------------------------------------------------------------------
def load_torch_model(bundle: Path, device: str):
    """Return the TorchScript YOLOv8n on `device`, its zeroed weights filled from the ONNX file.

    Loaded straight onto `device`: the trace (made on the CPU) holds constants, such as the
    anchor points, that `Module.to` does not move; `map_location` does.
    """
    import onnx
    from onnx import numpy_helper
    import torch
    if device == 'cuda':  # fp32 as the ONNX model computes it, not TF32 (about 18 px apart)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    raw = lzma.decompress((bundle / SKELETON).read_bytes())
    model = torch.jit.load(io.BytesIO(raw), map_location=device)
    names = set(json.loads((bundle / WEIGHT_NAMES).read_text()))
    inits = {i.name: numpy_helper.to_array(i)
             for i in onnx.load(str(bundle / f'{MODEL}.onnx')).graph.initializer
             if i.name in names}
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    missing = names - set(inits)
    if missing:
        raise RuntimeError(f'{sorted(missing)[:3]}: not in {MODEL}.onnx; rebuild the bundle')
    with torch.no_grad():
        for name in names:
            tensors[name].copy_(torch.from_numpy(np.array(inits[name])))
    return model.eval()


def run_torch(model, x: np.ndarray, device: str) -> np.ndarray:
    import torch
    with torch.inference_mode():
        y = model(torch.from_numpy(x).to(device))
        if isinstance(y, (list, tuple)):
            y = y[0]
        return y.float().cpu().numpy()


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def compare(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    """Max abs differences of two (N, 84, 8400) outputs: boxes (pixels) and class scores."""
    return {'boxes_px': max_abs_diff(a[:, :4], b[:, :4]),
            'scores': max_abs_diff(a[:, 4:], b[:, 4:])}


def close_enough(diff: Dict[str, float]) -> bool:
    """Float rounding (fused convolutions, another kernel order), not another network."""
    return diff['boxes_px'] < 0.1 and diff['scores'] < 1e-3


def ort_session(path: Path, threads: int = 0):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=so, providers=['CPUExecutionProvider'])


# ---- prepare (here) ------------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> int:
    root = HERE.parent
    bundle = Path(args.bundle)
    bundle.mkdir(parents=True, exist_ok=True)
    onnx_path = root / '.cache' / 'models' / f'{MODEL}.onnx'
    sys.path.insert(0, str(root / 'scripts'))
    import build_test_models as btm
    import onnx
    import torch

    captured: Dict[str, Any] = {}

    def keep_model(model, out, stem, **kw):  # build_yolo's ONNX export step, skipped
        captured['model'] = model
        return out / f'{stem}.onnx'

    btm.export_ultralytics = keep_model
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True, warn_only=True)
    work = bundle / '_export'
    work.mkdir(exist_ok=True)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        btm.build_yolo(f'{MODEL}.yaml', work, btm.calibration_images())
        exported = Path(captured['model'].export(format='torchscript', imgsz=640, batch=1,
                                                 optimize=False, verbose=False)).resolve()
    finally:
        os.chdir(cwd)
    model = torch.jit.load(str(exported), map_location='cpu').eval()

    frames = [btm.read_frame(btm.SHARED / 'data' / 'pedestrians_plaza_1280x720_50fps.avi', i)
              for i in range(0, 80, 10)]
    x = btm.to_batch(frames[:3], 640, 640).numpy().astype(np.float32)
    ref = np.concatenate([ort_session(onnx_path).run(None, {INPUT: x[i:i + 1]})[0]
                          for i in range(len(x))])
    one = np.concatenate([run_torch(model, x[i:i + 1], 'cpu') for i in range(len(x))])
    batched = run_torch(model, x, 'cpu')
    check = {'torchscript_vs_onnx': compare(one, ref),
             'batch3_vs_batch1': compare(batched, one),
             'torch_here': torch.__version__}
    print(json.dumps(check))
    if not close_enough(check['torchscript_vs_onnx']):
        raise SystemExit('the TorchScript export does not match .cache/models/yolov8n.onnx: '
                         'rebuild the ONNX model (scripts/build_test_models.py --only yolov8n)')

    inits = {i.name: onnx.numpy_helper.to_array(i)
             for i in onnx.load(str(onnx_path)).graph.initializer}
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    zeroed = []
    with torch.no_grad():
        for name, t in tensors.items():
            w = inits.get(name)
            if w is not None and w.shape == tuple(t.shape) and np.array_equal(w, t.numpy()):
                t.zero_()
                zeroed.append(name)
    buf = io.BytesIO()
    torch.jit.save(model, buf)
    (bundle / SKELETON).write_bytes(lzma.compress(buf.getvalue(), preset=9))
    (bundle / WEIGHT_NAMES).write_text(json.dumps(sorted(zeroed)))
    shutil.copy2(onnx_path, bundle / f'{MODEL}.onnx')
    refilled = load_torch_model(bundle, 'cpu')
    # It travels xz-compressed (device.sh unpacks it): the device tool carries 64 MiB a call.
    (bundle / f'{MODEL}.onnx.xz').write_bytes(lzma.compress(onnx_path.read_bytes(), preset=9))
    check['refilled_vs_onnx'] = compare(run_torch(refilled, x[:1], 'cpu'), ref[:1])
    if not close_enough(check['refilled_vs_onnx']):
        raise SystemExit(f'the weights copied back from the ONNX file differ: {check}')
    check['zeroed_tensors'] = len(zeroed)
    check['kept_tensors'] = len(tensors) - len(zeroed)
    print(json.dumps(check))
    (bundle / 'prepare_check.json').write_text(json.dumps(check, indent=1))

    import cv2
    fdir = bundle / 'frames'
    fdir.mkdir(exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(fdir / f'{i:02d}.jpg'), f, [cv2.IMWRITE_JPEG_QUALITY, 90])

    # The package (ROS-free layers only travel too; the ros layer is not imported) and this file.
    pkg = bundle / 'faster_deployment_ros'
    if pkg.exists():
        shutil.rmtree(pkg)
    shutil.copytree(root / 'faster_deployment_ros', pkg,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    shutil.copy2(Path(__file__), bundle / Path(__file__).name)
    shutil.copy2(HERE / 'runtime_clients.py', bundle / 'runtime_clients.py')
    shutil.copy2(HERE / 'triton_gpu_row.sh', bundle / 'device.sh')

    if args.wheels:
        whl = bundle / 'whl'
        whl.mkdir(exist_ok=True)
        for w in Path(args.wheels).glob('*.whl'):
            shutil.copy2(w, whl / w.name)
    if args.pytriton_wheel.endswith('.tar.xz'):  # trimmed before
        shutil.copy2(args.pytriton_wheel, bundle / 'pytriton-trim.tar.xz')
    elif args.pytriton_wheel:
        trim_pytriton(Path(args.pytriton_wheel), bundle / 'pytriton-trim.tar.xz')
    if args.numpy1_wheel:
        trim_numpy1(Path(args.numpy1_wheel), bundle / 'numpy1-stub.tar.xz')
    if args.libpython:
        (bundle / 'libpython3.12.so.1.0.xz').write_bytes(
            lzma.compress(Path(args.libpython).read_bytes(), preset=9))
    shutil.rmtree(work, ignore_errors=True)
    (bundle / f'{MODEL}.onnx').unlink()
    size = sum(p.stat().st_size for p in bundle.rglob('*') if p.is_file())
    print(f'bundle {bundle}: {size / 2**20:.1f} MiB')
    return 0


def repack_wheel(wheel: Path, out: Path, keep) -> None:
    """Write the wheel's members for which `keep(name)` holds to an xz-compressed tar."""
    import tarfile
    import zipfile
    with zipfile.ZipFile(wheel) as zf, tarfile.open(out, 'w:xz', preset=9) as tar:
        for info in zf.infolist():
            if not keep(info.filename):
                continue
            data = zf.read(info)
            ti = tarfile.TarInfo(info.filename)
            ti.size = len(data)
            ti.mode = (info.external_attr >> 16) & 0o777 or 0o644
            tar.addfile(ti, io.BytesIO(data))


def trim_pytriton(wheel: Path, out: Path) -> None:
    """Repack the pytriton wheel for Python 3.12 only, xz-compressed.

    Drops the Python-backend stubs of other Python versions and the bundled libpython3.13
    (the 3.13 stub's): the wheel is 55 MB, too much for the device tool's 64 MiB per call.
    """
    repack_wheel(wheel, out, lambda name: not (
        ('/python_backend_stubs/' in name and '/python_backend_stubs/3.12/' not in name)
        or name.startswith('nvidia_pytriton.libs/libpython3')))


def trim_numpy1(wheel: Path, out: Path) -> None:
    """Repack a numpy 1.26 wheel without its tests, f2py and distutils, xz-compressed.

    The Python-backend stub of pytriton 0.7 (which pins numpy<2) reads numpy-2 arrays as empty
    (its pybind11 predates numpy 2's dtype layout): Triton then answers every request with an
    empty output. device.sh gives the stub its own venv with this numpy.
    """
    skip = ('/tests/', 'numpy/f2py/', 'numpy/distutils/', 'numpy/_pyinstaller/', 'numpy/doc/')
    repack_wheel(wheel, out, lambda name: not (
        any(k in name for k in skip) or name.endswith('.pyi') or name.endswith('/')))


# ---- serve (GPU machine) -------------------------------------------------------------------
def match_python_library() -> None:
    """Put this interpreter's libpython first on LD_LIBRARY_PATH (the Python-backend stub)."""
    import sysconfig
    libdir = sysconfig.get_config_var('LIBDIR') or ''
    name = sysconfig.get_config_var('INSTSONAME') or ''
    if libdir and name and os.path.exists(os.path.join(libdir, name)):
        paths = [p for p in os.environ.get('LD_LIBRARY_PATH', '').split(':') if p]
        os.environ['LD_LIBRARY_PATH'] = ':'.join([libdir] + [p for p in paths if p != libdir])


def serve(args: argparse.Namespace) -> int:
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    match_python_library()
    stub_env = os.environ.get('GPUROW_STUB_ENV', '')
    if stub_env:  # the Python-backend stub's interpreter: a venv with numpy 1 (device.sh)
        import pytriton.server.triton_server as triton_server
        triton_server.get_triton_python_backend_python_env = lambda: Path(stub_env)
    device = DEVICE
    model = load_torch_model(Path(args.bundle), device)
    lock = threading.Lock()
    batches: List[int] = []

    def instance():
        """Return one model instance's function (each instance: its own stub process)."""
        @batch
        def infer(images):
            with lock:
                batches.append(len(images))
            return {OUTPUT: run_torch(model, np.ascontiguousarray(images, np.float32), device)}
        return infer

    run_torch(model, np.zeros((args.max_batch,) + IN_SHAPE, np.float32), device)  # warm-up
    config = TritonConfig(grpc_address=args.address, grpc_port=args.grpc_port,
                          http_address=args.address, http_port=args.http_port,
                          metrics_port=args.metrics_port, allow_metrics=False,
                          exit_timeout_secs=10, log_verbose=0)
    model_config = ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher(
        max_queue_delay_microseconds=args.queue_delay_us, preserve_ordering=True))
    stop: List[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    with Triton(config=config,
                security_config=TritonSecurityConfig(restricted_endpoints=[])) as triton:
        triton.bind(model_name=MODEL, infer_func=[instance() for _ in range(args.instances)],
                    inputs=[Tensor(name=INPUT, dtype=np.float32, shape=IN_SHAPE)],
                    outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=OUT_SHAPE)],
                    config=model_config, strict=True)
        triton.run()
        print(f'READY grpc={args.grpc_port} http={args.http_port} '
              f'device={device_name()}', flush=True)
        last = 0
        while not stop and triton.is_alive():
            time.sleep(0.5)
            if len(batches) != last and args.batch_log:
                with lock:
                    hist = np.bincount(batches, minlength=args.max_batch + 1)[1:]
                Path(args.batch_log).write_text(json.dumps(hist.tolist()))
                last = len(batches)
    return 0


# ---- run (GPU machine) ---------------------------------------------------------------------
class TorchGpuBackend(Backend):
    """Backend `torch_gpu`: the TorchScript YOLOv8n on CUDA in this process (no server).

    model_path is the bundle directory. Every instance shares one loaded model (inference
    only; torch runs concurrent calls from the workers' threads on the default stream).
    """

    name = 'torch_gpu'
    uses_threads = False
    _models: Dict[str, Any] = {}
    _lock = threading.Lock()

    def __init__(self, model_path: str, **options: Any) -> None:
        super().__init__(model_path, **options)
        with TorchGpuBackend._lock:
            if model_path not in TorchGpuBackend._models:
                TorchGpuBackend._models[model_path] = load_torch_model(Path(model_path), DEVICE)
        self.model = TorchGpuBackend._models[model_path]
        self._inputs = [TensorSpec(INPUT, (1,) + IN_SHAPE, np.dtype(np.float32))]
        self._outputs = [TensorSpec(OUTPUT, (1,) + OUT_SHAPE, np.dtype(np.float32))]

    def infer(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        return [run_torch(self.model, np.ascontiguousarray(inputs[0], np.float32), DEVICE)]


def device_name() -> str:
    import torch
    return torch.cuda.get_device_name(0) if DEVICE == 'cuda' else DEVICE


def sync() -> None:
    import torch
    if DEVICE == 'cuda':
        torch.cuda.synchronize()


make_adapter = adapter_maker('yolov8')


def start_server(args: argparse.Namespace, out: Path):
    """Start `serve` in its own process group; return (process, grpc port, log path) or None."""
    grpc, http, metrics = free_ports(3)
    log = out / 'server.log'
    cmd = [sys.executable, str(Path(__file__).resolve()), 'serve', '--bundle', args.bundle,
           '--grpc-port', str(grpc), '--http-port', str(http), '--metrics-port', str(metrics),
           '--max-batch', str(args.max_batch), '--queue-delay-us', str(args.queue_delay_us),
           '--batch-log', str(out / 'batches.json'), '--instances', str(args.instances)]
    fh = open(log, 'w')
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + args.server_timeout
    while time.monotonic() < deadline:
        if 'READY grpc=' in log.read_text(errors='replace'):
            return proc, grpc, log
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    print(f'SERVER FAILED (exit {proc.poll()}); its log, last 4000 characters:\n'
          f'{log.read_text(errors="replace")[-4000:]}', flush=True)
    stop_server(proc)
    return None


def stop_server(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run(args: argparse.Namespace) -> int:
    import cv2
    import torch
    from faster_deployment_ros.backends import create_backend, register_backend
    bundle, out = Path(args.bundle).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    register_backend('torch_gpu', Path(__file__).stem, 'TorchGpuBackend')
    cores = len(os.sched_getaffinity(0))
    gpu = device_name()
    report: Dict[str, Any] = {'gpu': gpu, 'cores': cores, 'torch': torch.__version__,
                              'args': vars(args), 'serial': {}, 'clients': [], 'gpu_only': {}}
    frames = [cv2.imread(str(p)) for p in sorted((bundle / 'frames').glob('*.jpg'))]
    with create_backend('onnxruntime', str(bundle / f'{MODEL}.onnx')) as probe:
        x, _ = make_adapter(probe).preprocess(frames[0])
    print(f"{gpu}; {cores} cores; torch {torch.__version__}; {MODEL} 640x640 (the project's "
          f'test graph); server: Triton (pytriton), TorchScript on the GPU, dynamic batching up '
          f'to {args.max_batch}, queue delay {args.queue_delay_us} us, '
          f'{args.instances} model instance(s)', flush=True)

    # The model: TorchScript on the GPU against ONNX Runtime on the CPU (the clients' decode
    # is the same only where the outputs are).
    model = load_torch_model(bundle, DEVICE)
    ref = ort_session(bundle / f'{MODEL}.onnx').run(None, {INPUT: x[0]})[0]
    got = run_torch(model, x[0], DEVICE)
    xb = np.concatenate([x[0]] * 8)
    report['check'] = {'gpu_vs_onnxruntime': compare(got, ref),
                       'batch8_vs_batch1': compare(run_torch(model, xb, DEVICE),
                                                   np.concatenate([got] * 8))}
    print('check:', json.dumps(report['check']), flush=True)
    if not close_enough(report['check']['gpu_vs_onnxruntime']):
        print('WARNING: the GPU model does not compute what the ONNX model does', flush=True)
    for b in (1, 8):
        xt = torch.from_numpy(np.concatenate([x[0]] * b)).to(DEVICE)
        with torch.inference_mode():
            for _ in range(10):
                model(xt)
            sync()
            times = []
            for _ in range(args.gpu_iters):
                t0 = time.perf_counter()
                model(xt)
                sync()
                times.append(time.perf_counter() - t0)
        report['gpu_only'][f'batch{b}'] = {'p50': pct(times, 50), 'p99': pct(times, 99)}
    print('GPU only (model on a device tensor, synchronised), ms:',
          json.dumps(report['gpu_only']), flush=True)
    del model

    started = start_server(args, out)
    url = f'triton://127.0.0.1:{started[1]}/{MODEL}' if started else ''
    report['server'] = bool(started)
    for shm in ('false', 'auto') if started else ():
        try:  # the served model's answer, as the clients receive it
            with create_backend('triton', url, shared_memory=shm) as b:
                report['check'][f'triton_shm_{shm}_vs_onnxruntime'] = dict(
                    compare(b.infer(x)[0], ref), shared_memory=b.shared_memory)
        except Exception as exc:  # noqa: B902 - reported; the rows then tell the same
            report['check'][f'triton_shm_{shm}_vs_onnxruntime'] = str(exc)
    if started:
        print('check:', json.dumps(report['check']), flush=True)
    try:
        print('\nper request, serial (one preprocessed 640x640 frame), ms', flush=True)
        print(f'{"path":<34} {"p50":>7} {"p99":>7}')
        rows = [('in-process torch, GPU', str(bundle), 'torch_gpu', {}),
                (f'local ONNX Runtime, CPU {cores} thr', str(bundle / f'{MODEL}.onnx'),
                 'onnxruntime', {'threads': cores})]
        if started:
            rows += [('Triton GPU server, gRPC', url, 'triton', {'shared_memory': 'false'}),
                     ('Triton GPU server, shm if it can', url, 'triton',
                      {'shared_memory': 'auto'})]
        for label, path, backend, opts in rows:
            try:
                r = serial(path, backend, x, args.iters, **opts)
            except Exception as exc:  # noqa: B902 - a row that fails is reported, not fatal
                print(f'{label:<34} failed: {exc}', flush=True)
                continue
            report['serial'][label] = r
            shm = '' if r['shared_memory'] is None else f' (shared memory {r["shared_memory"]})'
            print(f'{label:<34} {r["p50"]:7.2f} {r["p99"]:7.2f}{shm}', flush=True)

        counts = [int(c) for c in args.clients.split(',') if c.strip()]
        for rate in (0.0, args.rate):
            what = ('fed flat out (block, queue 2): throughput' if not rate else
                    f'each a {rate:g} Hz camera (drop_oldest, queue 1): latency')
            print(f'\nN clients, each one PerceptionRuntime with 1 worker, {what}, '
                  f'{args.duration:g} s', flush=True)
            print(f'{"N":>2} {"path":<36} {"frames/s":>9} {"p50 ms":>8} {"p99 ms":>8} '
                  f'{"delivered":>10}')
            for n in counts:
                threads = max(1, cores // n)
                paths = []
                if started:  # gRPC as from another computer; shared memory as on one host
                    paths += [('one Triton GPU server, gRPC', url, 'triton',
                               {'shared_memory': 'false'}),
                              ('one Triton GPU server, shm', url, 'triton',
                               {'shared_memory': 'auto'})]
                paths += [(f'{n} in-process torch GPU, no server', str(bundle), 'torch_gpu', {}),
                          (f'{n} local ORT CPU, {threads} thr each',
                           str(bundle / f'{MODEL}.onnx'), 'onnxruntime', {'threads': threads})]
                for label, path, backend, opts in paths:
                    try:
                        r = clients(path, backend, n, frames, args.duration, rate, **opts)
                    except Exception as exc:  # noqa: B902
                        print(f'{n:>2} {label:<36} failed: {exc}', flush=True)
                        continue
                    report['clients'].append(dict(r, n=n, rate=rate, path=label))
                    share = f'{r["frames"]}/{r["sent"]}' if rate else ''
                    print(f'{n:>2} {label:<36} {r["fps"]:9.1f} {r["p50"]:8.1f} '
                          f'{r["p99"]:8.1f} {share:>10}', flush=True)
                    (out / 'gpurow.json').write_text(json.dumps(report, indent=1))
    finally:
        if started:
            stop_server(started[0])
            batches = out / 'batches.json'
            if batches.exists():
                report['server_batch_sizes'] = json.loads(batches.read_text())
                print('server batch sizes (count of batches of 1..max):',
                      report['server_batch_sizes'], flush=True)
        (out / 'gpurow.json').write_text(json.dumps(report, indent=1))
    return 0


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('prepare', help='build the bundle (here, the export venv)')
    p.add_argument('--bundle', required=True)
    p.add_argument('--wheels', default='', help='folder of cp312 wheels to carry')
    p.add_argument('--pytriton-wheel', default='', help='the nvidia-pytriton wheel to trim')
    p.add_argument('--numpy1-wheel', default='',
                   help='a numpy 1.26 cp312 wheel for the Triton Python-backend stub')
    p.add_argument('--libpython', default='',
                   help='a libpython3.12.so.1.0 to carry for a GPU machine without one')
    s = sub.add_parser('serve', help='the Triton server with the GPU model')
    s.add_argument('--bundle', required=True)
    s.add_argument('--address', default='127.0.0.1')
    s.add_argument('--grpc-port', type=int, default=8001)
    s.add_argument('--http-port', type=int, default=8000)
    s.add_argument('--metrics-port', type=int, default=8002)
    s.add_argument('--batch-log', default='', help='write the batch-size histogram here')
    r = sub.add_parser('run', help='the benchmark (GPU machine)')
    r.add_argument('--bundle', required=True)
    r.add_argument('--out', required=True)
    r.add_argument('--clients', default='1,4,8')
    r.add_argument('--duration', type=float, default=4.0, help='seconds per client row')
    r.add_argument('--iters', type=int, default=100, help='serial requests per row')
    r.add_argument('--rate', type=float, default=30.0, help='camera rate (Hz) per client')
    r.add_argument('--gpu-iters', type=int, default=50, help='model-only timings per batch')
    r.add_argument('--server-timeout', type=float, default=120.0)
    for q in (s, r):
        q.add_argument('--max-batch', type=int, default=8)
        q.add_argument('--queue-delay-us', type=int, default=1000)
        q.add_argument('--instances', type=int, default=1,
                       help='model instances in the server (batches run in parallel)')
    return ap.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return {'prepare': prepare, 'serve': serve, 'run': run}[args.cmd](args)


if __name__ == '__main__':
    sys.exit(main())
