"""`fdr-convert tensorrt MODEL.onnx`: build a TensorRT engine ahead of time, with progress.

The engine lands in the same cache (same key) the tensorrt backend looks in, so a node started
afterwards with the same settings loads it instead of building for minutes; `-o` also copies it
to a path of your choice (with its sidecar JSON) for deployment elsewhere on an identical
device. Must run on the target device: engines are specific to the GPU and TensorRT version.
On TensorRT 11.x, fp16 and int8 first convert the ONNX with NVIDIA ModelOpt (cached beside the
engine; see backends/tensorrt/modelopt_convert.py).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import shutil

from .convert import ConvertError, Progress

HELP = ('ONNX -> TensorRT engine (fp16 / fp32 / int8 with calibration; TensorRT 8.6, 10.x, '
        '11.x), cached per GPU and version')


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('onnx', type=Path, help='the ONNX model')
    p.add_argument('-o', '--output', type=Path, default=None,
                   help='also copy the engine here (a .json sidecar goes beside it)')
    p.add_argument('--precision', choices=('fp16', 'fp32', 'int8'), default='fp16',
                   help='fp16 (default), fp32, or int8 (needs --calib-images or --calib-cache)')
    p.add_argument('--workspace', default='1GiB',
                   help='builder workspace memory limit, e.g. 512MiB, 2GiB (default 1GiB)')
    p.add_argument('--input-shape', action='append', default=None, metavar='NAME:1x3xHxW',
                   help='shape to build for, per dynamic input (default: the static ONNX shape)')
    p.add_argument('--calib-images', default=None, metavar='DIR|LIST',
                   help='int8 calibration images: a folder, or a text file with one path a line')
    p.add_argument('--calib-limit', type=int, default=0, help='use at most N calibration images')
    p.add_argument('--calib-cache', type=Path, default=None,
                   help='calibration cache file (read if present, written after calibration)')
    p.add_argument('--calib-preprocess', default='auto', metavar='FAMILY',
                   help='whose pre-processing the calibration images go through: auto (the '
                        'family of the model, inferred as the node does) or a family: yolox, '
                        'yolov8, yolo11, rtdetr, depth_anything_v2, midas')
    p.add_argument('--strongly-typed', action='store_true',
                   help='TensorRT 10.x: take fp16/int8 from a ModelOpt-converted ONNX, as 11.x '
                        'always does, instead of builder flags')
    p.add_argument('--modelopt-python', default=None, metavar='PYTHON',
                   help='the Python with nvidia-modelopt for 11.x fp16/int8 (default '
                        '$FDR_MODELOPT_PYTHON, else this one)')
    p.add_argument('--timing-cache', type=Path, default=None,
                   help='TensorRT timing cache file: reused and updated, makes rebuilds faster')
    p.add_argument('--cache-dir', type=Path, default=None,
                   help='engine cache folder (default ~/.cache/faster_deployment_ros/tensorrt '
                        'or $FDR_TRT_CACHE)')
    p.add_argument('--device', type=int, default=0, help='GPU index (default 0)')
    p.add_argument('--rebuild', action='store_true', help='build even when a cached engine fits')
    p.add_argument('--verbose', action='store_true', help="show TensorRT's builder log")


def backend_options(args: argparse.Namespace) -> dict:
    """Return the tensorrt backend options these arguments mean (same cache key as the node)."""
    opts = {'precision': args.precision, 'workspace': args.workspace, 'device': args.device,
            'rebuild': args.rebuild, 'verbose': args.verbose,
            'calibration_limit': args.calib_limit,
            'calibration_preprocess': args.calib_preprocess,
            'strongly_typed': args.strongly_typed}
    if args.modelopt_python:
        opts['modelopt_python'] = args.modelopt_python
    if args.input_shape:
        opts['input_shape'] = list(args.input_shape)
    for key, value in (('int8_calibration', args.calib_images),
                       ('calibration_cache', args.calib_cache),
                       ('timing_cache', args.timing_cache), ('cache_dir', args.cache_dir)):
        if value:
            opts[key] = str(value)
    from ..models import adapter_factory
    opts['adapter_factory'] = adapter_factory()  # int8 calibration: the family's preprocess
    return opts


def run(args: argparse.Namespace) -> int:
    from ..backends.base import BackendError
    from ..backends.tensorrt.build import prepare_engine
    from ..backends.tensorrt.options import parse_options
    from ..backends.tensorrt.versions import import_tensorrt, TrtApi

    if not args.onnx.is_file():
        raise ConvertError(f'ONNX model not found: {args.onnx}')
    progress = Progress(3)
    try:
        opts = parse_options(backend_options(args))
        with progress.step('checking TensorRT and the GPU'):
            trt = import_tensorrt()
            api = TrtApi(trt)
            from ..gpu.cuda import get_device, GpuUnavailable
            try:
                device = get_device(opts['device'])
            except GpuUnavailable as exc:
                raise ConvertError(
                    f'building a TensorRT engine needs the target GPU: {exc}') from None
            _say(f'TensorRT {api.version_text} on {device.info.name} ({device.info.arch})')
        with progress.step(f'building {opts["precision"]} engine for {args.onnx.name}'):
            path, key, _, built = prepare_engine(args.onnx, opts, api, device, log=_say)
        with progress.step('writing outputs'):
            _say(f'engine: {path}' + ('' if built else ' (already cached)'))
            _say(f'cache key {key.digest()}: TensorRT {key.tensorrt_version}, {key.gpu_name} '
                 f'sm_{key.compute_capability[0]}{key.compute_capability[1]}, {key.precision}, '
                 f'workspace {key.workspace_bytes >> 20} MiB, inputs {dict(key.input_shapes)}')
            if args.output is not None:
                args.output.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, args.output)
                side = path.with_name(path.name + '.json')
                if side.is_file():
                    shutil.copyfile(side, args.output.with_name(args.output.name + '.json'))
                _say(f'copied to {args.output}')
    except BackendError as exc:
        raise ConvertError(str(exc)) from None
    return 0


def _say(text: str) -> None:
    import sys
    sys.stderr.write(f'    {text}\n')
    sys.stderr.flush()


__all__ = ['HELP', 'add_arguments', 'backend_options', 'run']
