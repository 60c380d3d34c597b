"""ONNX -> .rknn (+ sidecar .json) with rknn-toolkit2, in the `.venv-rknn` environment.

The input normalisation is baked into the .rknn (mean/std), as Rockchip's examples do, so a
board can feed raw pixels; a preset gives each family's values and channel order:
  yolox   mean 0, std 1,   BGR  (YOLOX takes 0-255 BGR)
  yolov8  mean 0, std 255, RGB  (ultralytics takes 0-1 RGB)
  none    mean 0, std 1         (the .rknn takes exactly the ONNX input)
int8 calibration images are letterboxed the way the family's adapter does before the toolkit
reads them, so the quantiser sees what the model will see.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import tempfile
import time
from typing import Any, Dict, List

from .convert import conversion_paths, ConvertError, describe_source, package_version, Progress
from .onnx_info import write_sidecar
from ..core.hashing import file_sha256

HELP = 'ONNX -> Rockchip .rknn with rknn-toolkit2 (fp16, or int8 with calibration images)'
REQUIRES = ('rknn', 'onnx', 'onnxruntime', 'cv2')
VENV = '.venv-rknn'
PLATFORMS = ('rk3588', 'rk3576', 'rk3568', 'rk3566', 'rk3562', 'rv1103', 'rv1106', 'rk2118')

# name -> (mean, std, channel order the model takes, letterbox centred)
PRESETS: Dict[str, tuple] = {
    'yolox': (0.0, 1.0, 'bgr', False),
    'yolov8': (0.0, 255.0, 'rgb', True),
    'none': (0.0, 1.0, 'bgr', False),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('onnx', type=Path, help='the ONNX model')
    p.add_argument('-o', '--output', type=Path, default=None,
                   help='output .rknn path (the .json goes beside it); default MODEL.rknn')
    p.add_argument('--target-platform', default='rk3588', choices=PLATFORMS,
                   help='Rockchip SoC to build for (default rk3588)')
    p.add_argument('--precision', choices=('fp16', 'int8'), default='fp16')
    p.add_argument('--calibration', type=Path, default=None, metavar='LIST',
                   help='int8: a text file with one calibration image path per line')
    p.add_argument('--preset', choices=('auto',) + tuple(PRESETS), default='auto',
                   help='normalisation and channel order by model family; auto: yolov8 for '
                        "ultralytics exports (metadata 'stride'/'names'), yolox when the file "
                        'name says so, else none')
    p.add_argument('--mean', default=None, help='override the preset mean, e.g. 0 or 0,0,0')
    p.add_argument('--std', default=None, help='override the preset std, e.g. 255 or 58,57,57')
    p.add_argument('--input-shape', action='append', default=None, metavar='1,3,H,W',
                   help='shape to build for (default: the ONNX static shape)')


def resolve_preset(name: str, onnx_path: Path, metadata: Dict[str, str]) -> str:
    if name != 'auto':
        return name
    if 'stride' in metadata and 'names' in metadata:
        return 'yolov8'
    if 'yolox' in onnx_path.name.lower():
        return 'yolox'
    return 'none'


def _per_channel(text: str, channels: int) -> List[float]:
    values = [float(v) for v in str(text).split(',') if v.strip()]
    if len(values) == 1:
        values *= channels
    if len(values) != channels:
        raise ConvertError(f'mean/std {text!r} has {len(values)} values for {channels} channels')
    return values


def prepare_calibration(list_file: Path, size_hw: tuple, center: bool, out_dir: Path,
                        progress: Progress) -> Path:
    """Letterbox each listed image to the model size; returns the toolkit's dataset list."""
    import cv2
    from ..core.letterbox import letterbox

    if not list_file.is_file():
        raise ConvertError(f'calibration list {list_file} does not exist')
    base = list_file.resolve().parent
    paths = [ln.strip() for ln in list_file.read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith('#')]
    if not paths:
        raise ConvertError(f'calibration list {list_file} names no images')
    written = []
    for i, rel in enumerate(paths, 1):
        src = Path(rel) if Path(rel).is_absolute() else base / rel
        img = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if img is None:
            raise ConvertError(f'calibration image {src} cannot be read')
        boxed, _ = letterbox(img, size_hw, center=center)
        dst = out_dir / f'calib_{i:05d}.png'
        cv2.imwrite(str(dst), boxed)
        written.append(str(dst))
        progress.percent(i, len(paths), 'calibration images')
    dataset = out_dir / 'dataset.txt'
    dataset.write_text('\n'.join(written) + '\n')
    return dataset


def run(args: argparse.Namespace) -> int:
    from . import rknn_toolkit as tk

    src, out, given = conversion_paths(args, args.onnx.resolve().with_suffix('.rknn'), '.rknn')
    if args.precision == 'int8' and args.calibration is None:
        raise ConvertError('int8 needs --calibration LIST (a text file of image paths)')
    out.parent.mkdir(parents=True, exist_ok=True)
    int8 = args.precision == 'int8'
    # The toolkit's output is sent to a log while it works: progress keeps its own stderr copy.
    progress = Progress(6 + int8, stream=os.fdopen(os.dup(2), 'w'))
    t0 = time.monotonic()

    with progress.step(f'reading {src.name}'):
        info = describe_source(src, given)
        if len(info['inputs']) != 1 or len(info['inputs'][0]['shape']) != 4:
            raise ConvertError('only single-image models (one NCHW input) are supported, not '
                               f'inputs {[(i["name"], i["shape"]) for i in info["inputs"]]}')
    preset = resolve_preset(args.preset, src, info['metadata'])
    mean, std, order, center = PRESETS[preset]
    shape = info['inputs'][0]['shape']
    channels = shape[1]
    mean_v = _per_channel(args.mean if args.mean is not None else str(mean), channels)
    std_v = _per_channel(args.std if args.std is not None else str(std), channels)

    work = Path(tempfile.mkdtemp(prefix='fdr-rknn-'))
    log_path = work / 'rknn-toolkit2.log'
    dataset = None
    if int8:
        keep = out.with_name(out.stem + '.calibration')
        keep.mkdir(exist_ok=True)
        with progress.step(f'letterboxing calibration images ({preset}, {order.upper()})'):
            dataset = prepare_calibration(args.calibration, tuple(shape[2:]), center, keep,
                                          progress)
    cfg: Dict[str, Any] = {
        'onnx': str(src), 'target_platform': args.target_platform, 'precision': args.precision,
        'mean_values': [mean_v], 'std_values': [std_v],
        # the toolkit reads calibration images as RGB; BGR models want them swapped back
        'quant_img_rgb2bgr': order == 'bgr',
        'dataset': str(dataset) if dataset else None,
        'inputs': [info['inputs'][0]['name']], 'input_size_list': [shape],
    }
    try:
        tk.build(cfg, export_path=str(out), log_path=str(log_path), progress=progress)
    except tk.ToolkitError as exc:
        raise ConvertError(f'{src.name} cannot be built for {args.target_platform}: {exc}\n'
                           f'(full toolkit log: {log_path})') from None
    with progress.step('writing the sidecar'):
        sidecar = write_sidecar(out, {
            'format': 'rknn', 'precision': args.precision, 'target_platform': args.target_platform,
            'source': src.name, 'source_sha256': file_sha256(src), 'source_path': str(src),
            'inputs': info['inputs'], 'outputs': info['outputs'], 'metadata': info['metadata'],
            'preset': preset, 'channel_order': order, 'mean_values': [mean_v],
            'std_values': [std_v], 'data_format': 'nchw',
            'build': {k: v for k, v in cfg.items() if k != 'onnx'},
            'converter': {'tool': 'rknn-toolkit2', 'version': package_version('rknn-toolkit2')},
        })
    log_path.unlink(missing_ok=True)
    try:
        work.rmdir()
    except OSError:
        pass
    print(f'wrote {out} and {sidecar.name} ({args.precision}, {args.target_platform}, preset '
          f'{preset}) in {time.monotonic() - t0:.1f} s')
    return 0
