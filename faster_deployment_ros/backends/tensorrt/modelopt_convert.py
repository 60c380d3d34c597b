"""fp16 / int8 ONNX for strongly typed TensorRT (11.x; 10.x with `strongly_typed: true`).

TensorRT 11 removed the weak-typing builder flags: the precision is in the ONNX. fp16 comes
from ModelOpt AutoCast (`modelopt.onnx.autocast.convert_to_mixed_precision`, I/O kept float32
so adapters and the GPU decode see the same tensors), int8 from ModelOpt's explicit Q/DQ
quantization (`modelopt.onnx.quantization.quantize`, entropy calibration on CPU, the layers left
unquantized in fp16) fed with calibration tensors made by the model adapter's own
pre-processing. The converted model is cached by hash beside the engines, so it is made once.

ModelOpt (with torch and onnx) is heavy and often lives in its own environment: the conversion
runs in a child process, `python -m faster_deployment_ros.backends.tensorrt.modelopt_convert`,
with the interpreter from the `modelopt_python` option, else $FDR_MODELOPT_PYTHON, else this one.
The child imports nothing of this package but the packages' `__init__` files on its way here
and this file's standard-library top.

Contract: `convert` makes the converted ONNX at the path `converted_path` names (or returns the
one already there) or raises RuntimeError with the reason and the fix (the pip line when
ModelOpt is missing).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
from typing import Callable, List, Optional, Sequence

RECIPE = 1  # bump when the conversion settings below change
EXIT_NO_MODELOPT = 3
PIP_LINE = ('pip install "nvidia-modelopt[onnx]" (install a CPU torch first where no CUDA '
            'build is wanted, e.g. pip install torch --index-url '
            'https://download.pytorch.org/whl/cpu)')
PACKAGE_ROOT = Path(__file__).resolve().parents[3]


def modelopt_python(option: Optional[str] = None) -> str:
    return option or os.environ.get('FDR_MODELOPT_PYTHON') or sys.executable


def converted_path(cache_dir: Path, onnx_sha256: str, stem: str, precision: str,
                   calibration_id: str = '') -> Path:
    """`<cache>/<stem>-<precision>-<hash>.onnx`, the hash over everything the result depends on."""
    text = json.dumps({'model': onnx_sha256, 'precision': precision, 'recipe': RECIPE,
                       'calibration': calibration_id if precision == 'int8' else ''},
                      sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Path(cache_dir) / f'{stem}-{precision}-modelopt-{digest}.onnx'


def convert(onnx_path: Path, out_path: Path, precision: str, python: str,
            calibration: Optional[dict] = None, log: Callable[[str], None] = lambda s: None,
            version_text: str = '') -> Path:
    """Make `out_path` (unless it exists) from `onnx_path` with ModelOpt in a child process.

    calibration: input name -> stacked tensors (int8). Raises RuntimeError with the reason,
    also when another user can write the directory of `out_path` (core.private_dir).
    """
    from ...core.private_dir import private_dir, UnsafeDirectory  # not in the child
    try:  # made or checked first: a converted model planted by another user would be built
        private_dir(Path(out_path).parent, 'converted ONNX cache directory')
    except UnsafeDirectory as exc:
        raise RuntimeError(str(exc)) from None
    if out_path.is_file():
        log(f'using converted {precision} ONNX {out_path}')
        return out_path
    import numpy as np
    onnx_path, out_path = Path(onnx_path).resolve(), Path(out_path).resolve()  # child: cwd=tmp
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix='.modelopt-') as tmp:
        tmp_out = Path(tmp) / 'model.onnx'
        args = [python, '-m', 'faster_deployment_ros.backends.tensorrt.modelopt_convert',
                '--onnx', str(onnx_path), '--precision', precision, '--out', str(tmp_out)]
        if precision == 'int8':
            if not calibration:
                raise RuntimeError('int8 quantization needs calibration images')
            npz = Path(tmp) / 'calibration.npz'
            np.savez(npz, **calibration)
            args += ['--calibration', str(npz)]
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(
            [str(PACKAGE_ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
        log(f'converting {onnx_path.name} to {precision} with ModelOpt ({python})')
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=tmp)
        if proc.returncode == EXIT_NO_MODELOPT:
            trt = f'TensorRT {version_text}' if version_text else 'strongly typed TensorRT'
            raise RuntimeError(
                f'{trt} builds {precision} engines from a converted ONNX, made with NVIDIA '
                f'ModelOpt, which {python} cannot import ({proc.stderr.strip()[-300:]}). '
                f'Install it: {PIP_LINE}; or point the tensorrt option modelopt_python (or '
                f'$FDR_MODELOPT_PYTHON) at a Python that has it; or use precision fp32')
        if proc.returncode != 0 or not tmp_out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
            raise RuntimeError(f'ModelOpt {precision} conversion of {onnx_path} failed '
                               f'(exit {proc.returncode}): ' + ' | '.join(tail))
        os.replace(tmp_out, out_path)
    log(f'converted ONNX written to {out_path}')
    return out_path


def _convert_here(onnx_path: str, out: str, precision: str, calibration: Optional[str]) -> None:
    import numpy as np
    import onnx
    if precision == 'fp16':
        from modelopt.onnx.autocast import convert_to_mixed_precision
        model = convert_to_mixed_precision(onnx_path=onnx_path, low_precision_type='fp16',
                                           keep_io_types=True)
        onnx.save(model, out)
        return
    from modelopt.onnx.quantization import quantize
    with np.load(calibration) as data:
        feeds = {k: data[k] for k in data.files}
    quantize(onnx_path, quantize_mode='int8', calibration_data=feeds,
             calibration_method='entropy', calibration_eps=['cpu'], output_path=out,
             high_precision_dtype='fp16', log_level='WARNING')


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description='ONNX -> fp16 (AutoCast) / int8 (Q/DQ) with ModelOpt')
    p.add_argument('--onnx', required=True)
    p.add_argument('--precision', choices=('fp16', 'int8'), required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--calibration', default=None, help='npz: input name -> stacked tensors')
    args = p.parse_args(argv)
    try:
        import modelopt.onnx  # noqa: F401
    except ImportError as exc:
        sys.stderr.write(f'{exc}\n')
        return EXIT_NO_MODELOPT
    _convert_here(args.onnx, args.out, args.precision, args.calibration)
    return 0


def calibration_feeds(batches: List[List['object']], names: Sequence[str]) -> dict:
    """Name -> all calibration batches of that input, stacked (what quantize takes)."""
    import numpy as np
    return {n: np.concatenate([b[i] for b in batches], 0) for i, n in enumerate(names)}


if __name__ == '__main__':
    sys.exit(main())
