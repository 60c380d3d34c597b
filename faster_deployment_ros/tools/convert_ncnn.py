"""ONNX -> ncnn (.param/.bin + sidecar .json) with pnnx, in the `.venv-convert` environment.

Two ONNX rewrites run before pnnx, and ONNX Runtime checks the rewritten model gives the same
outputs:
- pnnx leaves strided slices (YOLOX/YOLOv5 "Focus": x[..., ::2, ::2] and its three siblings,
  concatenated on channels) as `Tensor.slice` layers ncnn cannot load; the pattern becomes the
  same space-to-depth as Reshape -> Transpose -> Reshape, which ncnn runs natively.
- fp16: pnnx flushes weights below fp16's normal range to zero, which a conv reading raw 0-255
  pixels cannot afford; its weights are scaled up by a power of two and its input down.
Any layer pnnx still cannot map fails the conversion, named.
"""
from __future__ import annotations

import argparse
from collections import Counter
import importlib.util
from pathlib import Path
import re
import shutil
import subprocess
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from .convert import conversion_paths, ConvertError, describe_source, package_version, Progress
from .onnx_info import write_sidecar
from ..core.hashing import file_sha256

HELP = 'ONNX -> ncnn .param/.bin with pnnx (fp16 or fp32 weights)'
REQUIRES = ('onnx', 'onnxruntime', 'pnnx')
VENV = '.venv-convert'


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('onnx', type=Path, help='the ONNX model')
    p.add_argument('-o', '--output', type=Path, default=None,
                   help='output .param path (the .bin and .json go beside it); '
                        'default: MODEL.ncnn.param next to the ONNX file')
    p.add_argument('--precision', choices=('fp16', 'fp32'), default='fp16',
                   help="weight storage: fp16 (pnnx's default, boxes within a few px of ONNX "
                        'Runtime) or fp32 (within ~0.01 px)')
    p.add_argument('--input-shape', action='append', default=None, metavar='1,3,H,W',
                   help='shape to convert for, once per input (default: the ONNX static shape)')
    p.add_argument('--no-rewrite', action='store_true',
                   help='do not rewrite strided-slice space-to-depth (Focus) for ncnn')
    p.add_argument('--keep-temp', action='store_true', help="keep pnnx's intermediate files")


# --- ONNX graph rewrite: strided-slice space-to-depth -> Reshape/Transpose/Reshape --------------

def _const_values(graph) -> Dict[str, 'object']:
    from onnx import numpy_helper
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == 'Constant':
            for attr in node.attribute:
                if attr.name == 'value':
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _slice_params(node, consts, rank: int) -> Optional[Dict[int, Tuple[int, int, int]]]:
    """Axis -> (start, end, step) of a Slice, or None when not constant."""
    from onnx import helper
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if 'starts' in attrs:  # opset < 10
        starts, ends = attrs['starts'], attrs['ends']
        axes = attrs.get('axes', list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        def get(i, default=None):
            if len(node.input) > i and node.input[i]:
                v = consts.get(node.input[i])
                return None if v is None else [int(x) for x in v.reshape(-1)]
            return default
        starts, ends = get(1), get(2)
        if starts is None or ends is None:
            return None
        axes = get(3, list(range(len(starts))))
        steps = get(4, [1] * len(starts))
        if axes is None or steps is None:
            return None
    return {(a + rank) % rank: (s, e, st) for a, s, e, st in zip(axes, starts, ends, steps)}


def rewrite_focus(model, input_shapes: Dict[str, List[int]]) -> int:
    """Rewrite each 4-way strided-slice + channel-concat space-to-depth in place; return count."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = _const_values(graph)
    producer = {out: n for n in graph.node for out in n.output}
    shapes = dict(input_shapes)
    count = 0
    for concat in [n for n in graph.node if n.op_type == 'Concat']:
        axis = next((helper.get_attribute_value(a) for a in concat.attribute
                     if a.name == 'axis'), 0)
        if len(concat.input) != 4 or axis not in (1, -3):
            continue
        offsets, sources = [], set()
        for name in concat.input:
            spans: Dict[int, Tuple[int, int, int]] = {}
            node = producer.get(name)
            while node is not None and node.op_type == 'Slice':
                params = _slice_params(node, consts, 4)
                if params is None or set(params) & set(spans):
                    break
                spans.update(params)
                name = node.input[0]
                node = producer.get(name)
            sources.add(name)
            ok = set(spans) == {2, 3} and all(st == 2 and s in (0, 1) and e >= 2 ** 30
                                              for s, e, st in spans.values())
            offsets.append((spans[2][0], spans[3][0]) if ok else None)
        if None in offsets or len(sources) != 1 \
                or sorted(offsets) != [(0, 0), (0, 1), (1, 0), (1, 1)]:
            continue
        src = sources.pop()
        shape = shapes.get(src)
        if shape is None or len(shape) != 4 or shape[2] % 2 or shape[3] % 2:
            continue
        n, c, h, w = shape
        # Group k of the concat holds offset (dy, dx); a transpose can order groups dx-major
        # (YOLOX/YOLOv5) or dy-major (pixel-unshuffle style). Other orders are left alone.
        if offsets == [(0, 0), (1, 0), (0, 1), (1, 1)]:
            perm = [0, 4, 2, 1, 3]   # (n, c*h/2, dy, w/2, dx) -> (n, dx, dy, c*h/2, w/2)
        elif offsets == [(0, 0), (0, 1), (1, 0), (1, 1)]:
            perm = [0, 2, 4, 1, 3]
        else:
            continue
        tag = f'fdr_s2d_{count}'
        graph.initializer.extend([
            numpy_helper.from_array(np.array([n, c * h // 2, 2, w // 2, 2], np.int64),
                                    f'{tag}_shape5'),
            numpy_helper.from_array(np.array([n, 4 * c, h // 2, w // 2], np.int64),
                                    f'{tag}_shape4'),
        ])
        new_nodes = [
            helper.make_node('Reshape', [src, f'{tag}_shape5'], [f'{tag}_r5'],
                             name=f'{tag}_reshape5'),
            helper.make_node('Transpose', [f'{tag}_r5'], [f'{tag}_t'], perm=perm,
                             name=f'{tag}_transpose'),
            helper.make_node('Reshape', [f'{tag}_t', f'{tag}_shape4'], [concat.output[0]],
                             name=f'{tag}_reshape4'),
        ]
        idx = list(graph.node).index(concat)
        graph.node.remove(concat)
        for k, node in enumerate(new_nodes):
            graph.node.insert(idx + k, node)
        count += 1
    if count:
        _remove_dead(graph)
    return count


# Ops that only move data: a conv behind them still sees the raw input values.
_DATA_MOVES = {'Reshape', 'Transpose', 'Slice', 'Concat', 'Split', 'Identity', 'Flatten',
               'Squeeze', 'Unsqueeze', 'SpaceToDepth', 'DepthToSpace'}
FP16_MIN_NORMAL = 2.0 ** -14


def protect_fp16_input_convs(model) -> int:
    """Scale up the weights of convs that read the raw input, so fp16 keeps them; returns count.

    pnnx's fp16 writer flushes weights below fp16's normal range (2**-14) to zero. A conv on
    unnormalised 0-255 pixels (YOLOX) has many such weights, and losing them moves boxes by tens
    of pixels. conv(x * 2**-k, W * 2**k) == conv(x, W) exactly (powers of two), so the weights
    are multiplied by 2**k and a Mul by 2**-k goes in front of the conv.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: Dict[str, int] = Counter(i for n in graph.node for i in n.input)
    raw = {i.name for i in graph.input if i.name not in inits}
    for node in graph.node:  # graph.node is topologically sorted
        if node.op_type in _DATA_MOVES and node.input and node.input[0] in raw:
            raw.update(node.output)
    count = 0
    for conv in [n for n in graph.node if n.op_type == 'Conv' and n.input[0] in raw]:
        weight = inits.get(conv.input[1])
        if weight is None or uses[weight.name] != 1:
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)
        nz = np.abs(w[w != 0])
        if nz.size == 0 or nz.min() >= FP16_MIN_NORMAL:
            continue
        k = int(np.ceil(np.log2(FP16_MIN_NORMAL / nz.min())))
        k = min(k, int(np.floor(np.log2(2.0 ** 14 / nz.max()))))  # stay far below fp16's max
        if k < 1:
            continue
        tag = f'fdr_fp16scale_{count}'
        weight.CopyFrom(numpy_helper.from_array((w * np.float32(2.0 ** k)).astype(np.float32),
                                                weight.name))
        graph.initializer.append(numpy_helper.from_array(np.array(2.0 ** -k, np.float32), tag))
        mul = helper.make_node('Mul', [conv.input[0], tag], [f'{tag}_out'], name=f'{tag}_mul')
        graph.node.insert(list(graph.node).index(conv), mul)
        conv.input[0] = f'{tag}_out'
        count += 1
    return count


def _remove_dead(graph) -> None:
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def _check_rewrite(original: Path, rewritten: Path, inputs: List[dict]) -> float:
    """Largest output difference between the two models, relative to the output's magnitude."""
    import numpy as np
    import onnxruntime as ort
    rng = np.random.default_rng(0)
    feeds = {i['name']: rng.uniform(0, 255, i['shape']).astype(i['dtype']) for i in inputs}
    a = ort.InferenceSession(str(original), providers=['CPUExecutionProvider']).run(None, feeds)
    b = ort.InferenceSession(str(rewritten), providers=['CPUExecutionProvider']).run(None, feeds)
    return max(float(np.abs(x.astype(np.float64) - y).max() / (np.abs(x).max() + 1e-12))
               for x, y in zip(a, b))


# --- pnnx ---------------------------------------------------------------------------------------

def pnnx_executable() -> Path:
    spec = importlib.util.find_spec('pnnx')
    for loc in (spec.submodule_search_locations or []) if spec else []:
        exe = Path(loc) / 'pnnx'
        if exe.exists():
            return exe
    found = shutil.which('pnnx')
    if found:
        return Path(found)
    raise ConvertError('the pnnx executable was not found '
                       '(pip install pnnx in the converter venv)')


# ncnn layer types are plain identifiers; pnnx writes ops it could not map under their torch
# names (Tensor.slice, F.xxx, torch.xxx, aten::xxx, pnnx.xxx).
_UNMAPPED = re.compile(r'[.:]')


def unsupported_layers(param_text: str) -> Counter:
    kinds: Counter = Counter()
    for line in param_text.splitlines()[2:]:
        parts = line.split()
        if parts and _UNMAPPED.search(parts[0]):
            kinds[parts[0]] += 1
    return kinds


def _shape_arg(shapes: List[List[int]]) -> str:
    return ','.join('[' + ','.join(str(d) for d in s) + ']' for s in shapes)


def run(args: argparse.Namespace) -> int:
    import onnx

    onnx_path = args.onnx.resolve()
    src, out_param, given = conversion_paths(
        args, onnx_path.with_name(onnx_path.stem + '.ncnn.param'), '.param')
    out_bin = out_param.with_suffix('.bin')
    progress = Progress(4)
    t0 = time.monotonic()

    with progress.step(f'reading {src.name}'):
        info = describe_source(src, given)
        model = onnx.load(str(src))
    tmp = Path(tempfile.mkdtemp(prefix='fdr-ncnn-'))
    try:
        work = tmp / 'model.onnx'
        rewrites: List[str] = []
        with progress.step('rewriting for ncnn (strided-slice space-to-depth, fp16 input convs)'):
            if not args.no_rewrite:
                n = rewrite_focus(model, {i['name']: i['shape'] for i in info['inputs']})
                if n:
                    rewrites.append(f'strided-slice space-to-depth -> reshape/permute x{n}')
                n = protect_fp16_input_convs(model) if args.precision == 'fp16' else 0
                if n:
                    rewrites.append(f'fp16: input conv weights scaled by 2^k x{n}')
            if rewrites:
                onnx.save(model, str(work))
                diff = _check_rewrite(src, work, info['inputs'])
                if diff > 1e-5:
                    raise ConvertError(f'the graph rewrite changed the outputs (relative diff '
                                       f'{diff:.2g}); convert with --no-rewrite')
                rewrites.append(f'ONNX Runtime check: relative diff {diff:.2g}')
            else:
                shutil.copyfile(src, work)
        with progress.step(f'converting with pnnx ({args.precision} weights)'):
            cmd = [str(pnnx_executable()), str(work),
                   f'inputshape={_shape_arg([i["shape"] for i in info["inputs"]])}',
                   f'fp16={1 if args.precision == "fp16" else 0}',
                   f'ncnnparam={out_param}', f'ncnnbin={out_bin}',
                   f'pnnxparam={tmp / "m.pnnx.param"}', f'pnnxbin={tmp / "m.pnnx.bin"}',
                   f'pnnxpy={tmp / "m_pnnx.py"}', f'pnnxonnx={tmp / "m.pnnx.onnx"}',
                   f'ncnnpy={tmp / "m_ncnn.py"}']
            out_param.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
            (tmp / 'pnnx.log').write_text(proc.stdout)
            if proc.returncode != 0 or not out_param.exists():
                tail = '\n'.join(proc.stdout.splitlines()[-15:])
                raise ConvertError(f'pnnx failed (exit {proc.returncode}):\n{tail}')
        with progress.step('checking layers and writing the sidecar'):
            bad = unsupported_layers(out_param.read_text())
            if bad:
                kinds = ', '.join(f'{k} (x{v})' for k, v in bad.items())
                hints = [ln.strip() for ln in proc.stdout.splitlines()
                         if 'not supported' in ln or 'unsupported' in ln.lower()]
                out_param.unlink(missing_ok=True)
                out_bin.unlink(missing_ok=True)
                raise ConvertError(
                    f'{src.name} has layers ncnn cannot run after conversion: {kinds}'
                    + (f'; pnnx said: {"; ".join(sorted(set(hints))[:5])}' if hints else ''))
            for i, spec in enumerate(info['inputs']):
                spec['blob'] = f'in{i}'
            for i, spec in enumerate(info['outputs']):
                spec['blob'] = f'out{i}'
            sidecar = write_sidecar(out_param, {
                'format': 'ncnn', 'precision': args.precision,
                'source': src.name, 'source_sha256': file_sha256(src),
                'inputs': info['inputs'], 'outputs': info['outputs'],
                'metadata': info['metadata'],
                'converter': {'tool': 'pnnx', 'version': package_version('pnnx'),
                              'rewrites': rewrites},
            })
    finally:
        if args.keep_temp:
            print(f'intermediate files kept in {tmp}')
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f'wrote {out_param}, {out_bin.name}, {sidecar.name} in {time.monotonic() - t0:.1f} s')
    return 0
