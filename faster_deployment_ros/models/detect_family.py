"""Infer a model's family from its I/O signature (and metadata), for `model_family: auto`.

Only unambiguous signatures are accepted; anything else raises ValueError saying what was seen
and which family parameter to set. Rules, first match wins:

* inputs `orig_target_sizes` / outputs labels + boxes + scores -> rtdetr (original export)
* one dense (1, H, W) / (1, 1, H, W) output at the input's resolution -> depth
* one (1, C, H, W) output, C > 1, at the input's resolution or 1/2, 1/4, 1/8 of it
  -> semantic_seg (per-pixel class logits)
* ultralytics metadata: head RTDETRDecoder -> rtdetr; task obb -> obb (its (1, 4 + nc + 1, N)
  output has the detector's shape); end2end -> yolov8 (YOLOv10 / YOLO26)
* (1, 4 + nc + nm, N) plus prototypes (1, nm, H / 4, W / 4) -> yolov8 (instance segmentation)
* (1, 4 + nc, N) with N the anchor count of the input at strides 8/16/32 (or dynamic) -> yolov8
* (1, N, 5 + nc) with N that anchor count (objectness + classes)           -> yolox
  ((1, N, 4 + nc) when metadata `names` has nc entries -> yolov8, transposed)
* (1, Q, 6) or (1, Q, 4 + nc) with Q not an anchor count (decoder queries, e.g. 300) -> rtdetr
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

from .depth import is_depth_signature
from .labels import parse_class_names
from .semantic_seg import is_segmentation_signature
from .yolov8 import anchor_count
from ..core.options import parse_bool
from ..core.types import static_dim, TensorSpec


def _input_hw(inputs: Sequence[TensorSpec],
              metadata: Mapping[str, str]) -> Optional[Tuple[int, int]]:
    images = [i for i in inputs if len(i.shape) == 4]
    if not images:
        return None
    h, w = static_dim(images[0].shape[2]), static_dim(images[0].shape[3])
    if h and w:
        return int(h), int(w)
    imgsz = metadata.get('imgsz')
    if imgsz:
        try:
            parts = [int(p) for p in imgsz.strip('[]() ').split(',') if p.strip()]
            return (parts[0], parts[-1]) if parts else None
        except ValueError:
            return None
    return None


def _anchor_counts(hw: Optional[Tuple[int, int]]) -> List[int]:
    if hw is None:
        return []
    return [anchor_count(hw, s) for s in ((8, 16, 32), (8, 16, 32, 64))]


def _segment_head(outputs: Sequence[TensorSpec], hw: Optional[Tuple[int, int]],
                  anchors: List[int], nc: Optional[int]) -> str:
    """Return the reason when outputs are a YOLOv8 / YOLO11 -seg head's, else ''."""
    if len(outputs) != 2 or len(outputs[1].shape) != 4 or hw is None:
        return ''
    proto = [static_dim(d) for d in outputs[1].shape]
    nm = proto[1]
    if nm is None or (proto[2], proto[3]) != (hw[0] // 4, hw[1] // 4):
        return ''
    d1, d2 = static_dim(outputs[0].shape[1]), static_dim(outputs[0].shape[2])
    for rows, n in ((d1, d2), (d2, d1)):  # (1, 4 + nc + nm, N) or transposed
        if rows is not None and n in anchors and rows > 4 + nm \
                and (nc is None or rows == 4 + nc + nm):
            return (f'output {tuple(outputs[0].shape)}: 4 box + {rows - 4 - nm} class + {nm} '
                    f'mask coefficient rows over {n} anchors, prototypes '
                    f'{tuple(outputs[1].shape)} (instance segmentation)')
    return ''


def detect_family(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                  metadata: Optional[Mapping[str, Any]] = None) -> Tuple[str, str]:
    """(family, reason) for a model's signature; ValueError when it is ambiguous."""
    metadata = {str(k): str(v) for k, v in dict(metadata or {}).items()}
    sig = (f'inputs {[(i.name, tuple(i.shape)) for i in inputs]}, '
           f'outputs {[(o.name, tuple(o.shape)) for o in outputs]}')
    out_names = {o.name for o in outputs}
    if any(i.name == 'orig_target_sizes' for i in inputs) \
            or {'labels', 'boxes', 'scores'} <= out_names:
        return 'rtdetr', ('original RT-DETR export signature (orig_target_sizes; labels, boxes, '
                          'scores)')
    if not outputs:
        raise ValueError(f'cannot infer the model family: the model has no outputs ({sig})')
    first = outputs[0]
    if is_depth_signature(inputs, outputs):
        return 'depth', f'one dense map output {tuple(first.shape)} at the input resolution'
    if is_segmentation_signature(inputs, outputs):
        return 'semantic_seg', (f'one (1, C, H, W) output {tuple(first.shape)}: {first.shape[1]} '
                                'class logits per pixel of the input')
    head = metadata.get('head', '')
    description = metadata.get('description', '').lower().replace('-', '')
    if head == 'RTDETRDecoder' or 'rtdetr' in description:
        return 'rtdetr', 'ultralytics metadata names an RT-DETR model'
    if len(first.shape) != 3 or static_dim(first.shape[0]) not in (None, 1):
        raise ValueError(f'cannot infer the model family from {sig}; set model_family '
                         '(yolox, yolov8, yolo11, rtdetr, depth_anything_v2, midas, '
                         'semantic_seg)')
    d1, d2 = static_dim(first.shape[1]), static_dim(first.shape[2])
    if metadata.get('task') == 'obb':
        return 'obb', (f'ultralytics metadata task obb: output {tuple(first.shape)} holds 4 box '
                       'rows, the class scores and an angle row')
    try:
        end2end = bool(parse_bool(metadata.get('end2end'), 'end2end', allow_auto=True))
    except ValueError:
        end2end = False
    if end2end:
        return 'yolov8', 'ultralytics metadata end2end: (1, K, 6) boxes already selected'
    hw = _input_hw(inputs, metadata)
    anchors = _anchor_counts(hw)
    names = parse_class_names(metadata['names']) if metadata.get('names') else None
    nc = len(names) if names else None
    seg = _segment_head(outputs, hw, anchors, nc)
    if seg:
        return 'yolov8', seg
    if d2 is not None and d2 in anchors and d1 is not None and d1 >= 5 and d1 < d2:
        return 'yolov8', (f'output {tuple(first.shape)}: 4 box + {d1 - 4} class rows over {d2} '
                          f'anchors of a {hw[0]}x{hw[1]} input (no objectness)')
    if d2 is None and d1 is not None and 5 <= d1 <= 1004:
        return 'yolov8', (f'output {tuple(first.shape)}: 4 box + {d1 - 4} class rows over a '
                          'dynamic anchor axis (ultralytics dynamic export)')
    if d1 is not None and d1 in anchors and d2 is not None and d2 >= 5:
        if nc is not None and d2 == 4 + nc:
            return 'yolov8', f'output {tuple(first.shape)}: transposed 4 box + {nc} class scores'
        if nc is None or d2 == 5 + nc:
            return 'yolox', (f'output {tuple(first.shape)}: {d1} anchors of a {hw[0]}x{hw[1]} '
                             f'input x (4 box + objectness + {d2 - 5} classes)')
    if d1 is not None and d1 not in anchors and d2 is not None and d2 >= 6 and d1 <= 1000:
        if d2 == 6 and nc not in (None, 2):
            return 'rtdetr', (f'output {tuple(first.shape)}: {d1} queries x '
                              '(cx, cy, w, h, score, class)')
        if d2 > 6 and (nc is None or d2 == 4 + nc):
            return 'rtdetr', (f'output {tuple(first.shape)}: {d1} queries x '
                              f'(4 box + {d2 - 4} scores)')
        if d2 == 6:
            raise ValueError(f'ambiguous output {tuple(first.shape)}: RT-DETR (cx, cy, w, h, '
                             'score, '
                             'class) or an end-to-end YOLO (x1, y1, x2, y2, score, class); set '
                             'model_family to rtdetr or yolov8')
    raise ValueError(f'cannot infer the model family from {sig}'
                     + (f' (input {hw[0]}x{hw[1]} has {anchors[0]} anchors at strides 8/16/32)'
                        if hw else ' (dynamic input size: set input_size or model_family)')
                     + '; set model_family (yolox, yolov8, yolo11, rtdetr, depth_anything_v2, '
                       'midas, semantic_seg)')


__all__ = ['detect_family']
