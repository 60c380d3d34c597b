"""Per-frame cost of pre-processing and decode+NMS.

GPU kernels (cuda-python/NVRTC) vs the CPU reference (OpenCV/NumPy), on real 1280x720 frames and
real YOLOX-nano outputs.

GPU times are CUDA-event intervals on the stream (device time of the work), plus the host
wall time of the whole call (what a caller waits, Python launch overhead included). CPU times
are wall clock of the adapters' own code. Median and p99 over --iters calls after --warmup.

    python benchmarks/gpu_kernels_bench.py --json out.json          # needs a GPU + cuda-python
    python benchmarks/gpu_kernels_bench.py --cpu-only               # reference side only
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import sys
import time
from typing import Callable, Dict, List

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))

from faster_deployment_ros.backends import create_backend  # noqa: E402, I100
from faster_deployment_ros.models import create_adapter  # noqa: E402
from faster_deployment_ros.tools.frames import read_frames  # noqa: E402


def stats(ms: List[float]) -> Dict[str, float]:
    a = np.asarray(ms, np.float64)
    return {'median_ms': float(np.median(a)), 'p99_ms': float(np.percentile(a, 99)),
            'mean_ms': float(a.mean()), 'min_ms': float(a.min()), 'n': int(a.size)}


def time_cpu(fn: Callable[[int], object], warmup: int, iters: int) -> Dict[str, float]:
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(iters):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1e3)
    return stats(out)


def load_frames(n: int) -> List[np.ndarray]:
    frames = read_frames(SHARED / 'data' / 'pedestrians_plaza_1280x720_50fps.avi', n)
    if not frames:
        sys.exit(f'no frames: is the shared data at {SHARED}? (set FDR_SHARED)')
    return frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--iters', type=int, default=200)
    ap.add_argument('--warmup', type=int, default=20)
    ap.add_argument('--frames', type=int, default=16, help='distinct frames cycled through')
    ap.add_argument('--json', type=Path, default=None)
    ap.add_argument('--cpu-only', action='store_true')
    args = ap.parse_args()

    frames = load_frames(args.frames)
    model = SHARED / 'models' / 'yolox_nano_coco_416.onnx'
    be = create_backend('onnxruntime', str(model))
    yolox = create_adapter('yolox', be.inputs, be.outputs, be.metadata)
    metas, outs = [], []
    for f in frames:
        inputs, meta = yolox.preprocess(f)
        outs.append(np.ascontiguousarray(be.infer(inputs)[0], np.float32))
        metas.append(meta)
    from faster_deployment_ros.core.types import TensorSpec
    from faster_deployment_ros.models.yolov8 import Yolov8Adapter
    v8 = Yolov8Adapter([TensorSpec('images', (1, 3, 640, 640))],
                       [TensorSpec('o', (1, 84, 8400))], {})
    n = len(frames)

    results: Dict[str, Dict] = {
        'host': {'cpu': platform.processor() or platform.machine(), 'cores': os.cpu_count(),
                 'opencv': cv2.__version__, 'numpy': np.__version__,
                 'opencv_threads': cv2.getNumThreads()},
        'frame': '1280x720 BGR (pedestrians_plaza video)', 'iters': args.iters,
        'warmup': args.warmup, 'cpu': {}, 'gpu': {}}
    cpu = results['cpu']
    cpu['preprocess_yolox_416'] = time_cpu(lambda i: yolox.preprocess(frames[i % n]), args.warmup,
                                           args.iters)
    cpu['preprocess_yolov8_640'] = time_cpu(lambda i: v8.preprocess(frames[i % n]), args.warmup,
                                            args.iters)
    cpu['decode_nms_yolox'] = time_cpu(lambda i: yolox.postprocess([outs[i % n]], metas[i % n]),
                                       args.warmup, args.iters)
    low = create_adapter('yolox', be.inputs, be.outputs, be.metadata, conf_threshold=0.01)
    cpu['decode_nms_yolox_conf0.01'] = time_cpu(
        lambda i: low.postprocess([outs[i % n]], metas[i % n]), args.warmup, args.iters)
    results['yolox_detections_per_frame'] = {
        'conf0.3': float(np.mean([len(yolox.postprocess([o], m)) for o, m in zip(outs, metas)])),
        'conf0.01': float(np.mean([len(low.postprocess([o], m)) for o, m in zip(outs, metas)]))}

    if not args.cpu_only:
        bench_gpu(results, frames, yolox, v8, outs, metas, args)

    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + '\n')
        print(f'wrote {args.json}')
    return 0


def bench_gpu(results, frames, yolox, v8, outs, metas, args) -> None:
    from faster_deployment_ros.gpu.cuda import (DeviceBuffer, Event, get_device, PinnedBuffer,
                                                Stream)
    from faster_deployment_ros.gpu.pipeline import specs_for_adapter
    from faster_deployment_ros.gpu.postprocess import GpuDetectionDecoder
    from faster_deployment_ros.gpu.preprocess import GpuLetterbox

    dev = get_device(0)
    info = dev.info
    results['gpu_device'] = {'name': info.name, 'arch': info.arch, 'sms': info.multiprocessors,
                             'driver': info.driver_version}
    gpu = results['gpu']
    stream = Stream(dev)
    n = len(frames)
    ev = [Event(dev) for _ in range(4)]

    def run_timed(enqueue: Callable[[int], None], finish: Callable[[], None]) -> Dict:
        dev_ms, wall_ms = [], []
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            ev[0].record(stream)
            enqueue(i)
            ev[1].record(stream)
            finish()
            t1 = time.perf_counter()
            if i >= args.warmup:
                dev_ms.append(ev[0].elapsed_ms(ev[1]))
                wall_ms.append((t1 - t0) * 1e3)
        return {'device': stats(dev_ms), 'wall': stats(wall_ms)}

    for name, adapter in (('yolox_416', yolox), ('yolov8_640', v8)):
        pre, _ = specs_for_adapter(adapter)
        lb = GpuLetterbox(pre, stream, dev)
        # (a) the whole call from a host frame: upload (driver-staged) + kernel
        gpu[f'preprocess_{name}_from_host'] = run_timed(
            lambda i: lb.run(frames[i % n]), stream.synchronize)
        # (b) the same through our own pinned staging buffer (GpuLetterbox(staging='pinned'))
        lbp = GpuLetterbox(pre, stream, dev, staging='pinned')
        gpu[f'preprocess_{name}_from_host_pinned_staging'] = run_timed(
            lambda i: lbp.run(frames[i % n]), stream.synchronize)
        lbp.close()
        # (c) the kernel alone on a frame already on the GPU (e.g. from a GPU decoder/camera)
        ptr, pitch, h, w = lb.upload(frames[0])
        stream.synchronize()
        gpu[f'preprocess_{name}_kernel_only'] = run_timed(
            lambda i: lb.run_device(ptr, pitch, h, w), stream.synchronize)
        # bit-exactness of the letterbox against core.letterbox (OpenCV) on these frames
        from faster_deployment_ros.core.letterbox import letterbox
        same = total = worst = 0
        for f in frames:
            got, _ = lb.letterbox_u8(f)
            ref, _ = letterbox(f, pre.size, pad_value=pre.pad_value, center=pre.center)
            d = np.abs(got.astype(np.int16) - ref)
            same += int((d == 0).sum())
            total += d.size
            worst = max(worst, int(d.max()))
        results.setdefault('letterbox_vs_opencv', {})[name] = {
            'bit_exact_fraction': same / total, 'max_abs_diff': worst, 'frames': n}
        lb.close()

    # Host->device copy of one 1280x720x3 frame from pinned memory, alone.
    pinned = PinnedBuffer(frames[0].shape, np.uint8, dev)
    np.copyto(pinned.array, frames[0])
    dbuf = DeviceBuffer(frames[0].nbytes, dev)
    gpu['upload_1280x720_pinned'] = run_timed(lambda i: dbuf.upload(pinned.array, stream),
                                              stream.synchronize)

    # Decode + NMS of real YOLOX outputs already on the device (as TensorRT leaves them).
    _, spec = specs_for_adapter(yolox)
    dec = GpuDetectionDecoder(spec, outs[0].shape, yolox.input_size, stream, dev)
    bufs = []
    for o in outs:
        b = DeviceBuffer(o.nbytes, dev)
        b.upload(o, stream)
        bufs.append(b)
    stream.synchronize()
    gpu['decode_nms_yolox'] = run_timed(lambda i: dec.enqueue(bufs[i % n].ptr, metas[i % n]),
                                        dec.collect)
    # low threshold: many candidates through top-k + NMS
    from dataclasses import replace
    dec_low = GpuDetectionDecoder(replace(spec, conf_threshold=0.01), outs[0].shape,
                                  yolox.input_size, stream, dev)
    gpu['decode_nms_yolox_conf0.01'] = run_timed(
        lambda i: dec_low.enqueue(bufs[i % n].ptr, metas[i % n]), dec_low.collect)
    for b in bufs:
        b.close()
    dec.close()
    dec_low.close()


def print_table(r: Dict) -> None:
    print(f"\n{r['frame']}; {r['iters']} timed calls after {r['warmup']} warm-up; "
          f"CPU {r['host']['cpu']} ({r['host']['cores']} cores, OpenCV {r['host']['opencv']} "
          f"threads={r['host']['opencv_threads']})"
          + (f"; GPU {r['gpu_device']['name']}" if 'gpu_device' in r else ''))
    for k, v in r.get('letterbox_vs_opencv', {}).items():
        print(f"letterbox {k} vs OpenCV: bit-exact {100 * v['bit_exact_fraction']:.4f}% of "
              f"values, max diff {v['max_abs_diff']} over {v['frames']} frames")
    print(f"{'stage':50s} {'median ms':>10s} {'p99 ms':>10s}")
    for k, v in r['cpu'].items():
        print(f"{'cpu  ' + k:50s} {v['median_ms']:10.3f} {v['p99_ms']:10.3f}")
    for k, v in r['gpu'].items():
        d, w = v['device'], v['wall']
        print(f"{'gpu  ' + k + ' (device)':50s} {d['median_ms']:10.3f} {d['p99_ms']:10.3f}")
        print(f"{'gpu  ' + k + ' (host wall)':50s} {w['median_ms']:10.3f} {w['p99_ms']:10.3f}")


if __name__ == '__main__':
    sys.exit(main())
