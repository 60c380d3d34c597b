"""The one parameter table: every parameter a perception node reads, declared once.

Each `Param` carries its default (which fixes its type), description, the range or choices a
value must respect, and when it applies:

- `startup`: read once when the node starts; a change needs a restart (set requests refused);
- `runtime`: a configured node applies a change to the next frame;
- `reconfigure`: read at configure; a change while configured is refused with "needs
  reconfigure" (deactivate, cleanup, set, configure), since accepting a value the running
  pipeline ignores would make get_parameters lie.

Declaration (ros/params.py), validation (`check`, at configure and on every set request), the
runtime configuration (`runtime.config.RuntimeConfig`) and runtime application are all driven by
this table; `test/test_parameters.py` checks every YAML in config/ and the README against it.
ROS-free: values are plain Python values as rclpy hands them over.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

STARTUP, RUNTIME, RECONFIGURE = 'startup', 'runtime', 'reconfigure'
APPLIES = (STARTUP, RUNTIME, RECONFIGURE)

FULL_POLICIES = ('drop_oldest', 'block')
WORKER_MODES = ('threads', 'processes')
INPUT_TYPES = ('raw', 'compressed')
RELIABILITIES = ('best_effort', 'reliable')
CLASS_ID_MODES = ('name', 'index')
DEPTH_OUTPUTS = ('auto', 'relative_inverse', 'metric_from_inverse', 'metric')
COLORMAPS = ('inferno', 'magma', 'turbo', 'jet', 'viridis')
RESIZE_MODES = ('letterbox', 'stretch')
#: Parameters the node itself, rclpy or launch tooling own: never "unknown", never validated.
FOREIGN = ('use_sim_time', 'start_type_description_service')
FOREIGN_PREFIXES = ('qos_overrides.',)
#: Backend options (`<backend>.<option>`) that name a file or an executable the node reads,
#: writes or runs: fixed when the node starts, so a graph client cannot redirect them.
SENSITIVE_OPTIONS = ('cache_dir', 'timing_cache', 'modelopt_python')
#: Longest string or list a client may set (a parameter is never a payload).
MAX_TEXT = 4096
MAX_LIST = 1024


class ParameterError(ValueError):
    """A parameter has a value the node cannot work with; the message names it and the fix."""


@dataclass(frozen=True)
class Param:
    """One parameter: default (and so type), description, accepted values, when it applies."""

    name: str
    default: Any
    description: str
    applies: str = RECONFIGURE
    lo: Optional[float] = None      # inclusive lower bound (numbers)
    hi: Optional[float] = None      # inclusive upper bound (numbers)
    lo_open: bool = False           # lo itself is not accepted (> lo)
    choices: Tuple[str, ...] = ()   # accepted strings
    #: names a file or executable: fixed when the node starts (read-only for graph clients)
    read_only: bool = False
    #: text replacing the generated range phrase ("must lie in [0, 1] ...")
    range_text: str = ''

    @property
    def kind(self) -> str:
        """'bool', 'int', 'float', 'str', 'str[]' or 'int[]' (from the default)."""
        d = self.default
        if isinstance(d, bool):
            return 'bool'
        if isinstance(d, int):
            return 'int'
        if isinstance(d, float):
            return 'float'
        if isinstance(d, str):
            return 'str'
        return 'int[]' if d and isinstance(d[0], int) else 'str[]'

    def constraints(self) -> str:
        """Human-readable accepted values (for `ros2 param describe` and error messages)."""
        if self.range_text:
            return self.range_text
        if self.choices:
            return 'one of ' + ', '.join(self.choices)
        if self.kind in ('int', 'float'):
            what = 'an integer' if self.kind == 'int' else 'a finite number'
            parts = []
            if self.lo is not None:
                parts.append(f'{">" if self.lo_open else ">="} {_num(self.lo)}')
            if self.hi is not None:
                parts.append(f'<= {_num(self.hi)}')
            return f'{what} ' + ' and '.join(parts) if parts else what
        return {'bool': 'true or false', 'str': 'a string', 'str[]': 'a list of strings',
                'int[]': 'a list of integers'}[self.kind]


def _num(v: float) -> str:
    return f'{int(v)}' if float(v).is_integer() else f'{v:g}'


def _p(name, default, description, applies=RECONFIGURE, **kw) -> Tuple[str, Param]:
    return name, Param(name, default, description, applies, **kw)


COMMON: Dict[str, Param] = dict([
    _p('autostart', False, 'configure and activate on start', STARTUP),
    _p('model_path', '', 'model file (.onnx, .param, .rknn, .engine), or '
       'triton://HOST:PORT/MODEL for a model on a Triton server'),
    _p('model_family', 'auto', 'model family; auto infers it from the model signature'),
    _p('backend', 'onnxruntime', 'inference backend: onnxruntime, ncnn, rknn, tensorrt, triton'),
    _p('workers', 1, 'inference workers (sessions / contexts / NPU cores); results stay in order',
       lo=1, hi=64),
    _p('threads', 0, 'threads per inference worker; 0 lets the runtime decide', lo=0, hi=256),
    _p('worker_mode', 'threads', 'threads: workers are threads of the node, which pre- and '
       'post-processes every frame; processes: each worker is a process of its own doing pre + '
       'infer + post of whole frames (frames through shared memory): for many workers on a '
       'fast CPU model, where one interpreter cannot feed them; not with pinned workers (rknn) '
       'or the GPU path', choices=WORKER_MODES),
    _p('queue_size', 1, 'input queue length before the full policy applies (1: with '
       'drop_oldest only the newest frame waits, the low-latency choice)', lo=1, hi=1000),
    _p('full_policy', 'drop_oldest', 'when the input queue is full: drop_oldest or block',
       choices=FULL_POLICIES),
    _p('input_type', 'raw', 'raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)',
       choices=INPUT_TYPES),
    _p('inputs', [''], "several cameras, one model: image topics, each camera's results in its "
       'namespace (/front/image_raw -> /front/detections); an entry ending in /compressed is a '
       'CompressedImage topic; empty: the single image topic'),
    _p('qos_reliability', 'best_effort', 'input QoS reliability: best_effort or reliable',
       choices=RELIABILITIES),
    _p('qos_depth', 1, 'input QoS history depth (1: DDS keeps only the newest frame, so no '
       'stale frame waits there); outputs keep at least 10', lo=1, hi=1000),
    _p('input_size', [0, 0], 'model input [height, width] for models with dynamic shapes',
       range_text="[height, width], both in 1..16384, or [0, 0] for the model's own"),
    _p('diagnostics_period', 1.0, 'seconds between /diagnostics updates; 0 disables them',
       STARTUP, lo=0.0, hi=3600.0),
    _p('autotune', False, 'at configure, measure the model and choose workers, threads and '
       'queue_size for camera_rate within latency_budget_ms (overrides them)'),
    _p('camera_rate', 30.0, 'expected input rate in Hz of each camera (autotune)',
       lo=0.0, hi=10000.0),
    _p('latency_budget_ms', 100.0, 'accepted latency, frame in to result out, in ms (autotune)',
       lo=0.0, hi=1e6),
    _p('autotune_image', '', 'image to time pre/post-processing on (autotune); empty: a '
       'synthetic 1280x720 frame'),
    _p('bit_depth', 16, 'significant bits of 16-bit input (mono16, 16UC1, rgb16, bayer_*16): '
       "that range maps to 0..255; 16 is cv_bridge's convention, 10 or 12 for sensors that put "
       'fewer bits in 16-bit words', RUNTIME, lo=1, hi=16),
    _p('bond_heartbeat_period', 0.1, "seconds between bond heartbeats to Nav2's "
       'lifecycle_manager (bond opened on activate, broken on deactivate); 0 disables it',
       lo=0.0, hi=60.0),
    _p('max_input_pixels', 7680 * 4320, 'frames with more pixels are refused before decoding '
       '(raw width x height, jpeg/png header size); 0 = no limit', RUNTIME, lo=0, hi=2 ** 40),
    _p('diagnostics_window', 5.0, 'seconds of recent frames the /diagnostics level and fps use',
       RUNTIME, lo=0.0, lo_open=True, hi=600.0),
    _p('diagnostics_stale_after', 3.0, 'seconds without input before /diagnostics says STALE',
       RUNTIME, lo=0.0, lo_open=True, hi=3600.0),
    _p('camera_info_tolerance_ms', 0.0, 'camera_info (and, for 3D detections, the registered '
       'depth image) matched to the frame by stamp: 0 exact, else the nearest within this many '
       'ms', RUNTIME, lo=0.0, hi=1000.0),
    _p('diagnostics_max_latency_ms', 500.0, 'median input age + pipeline time above this: WARN '
       'on /diagnostics; 0 = no check', RUNTIME, lo=0.0, hi=1e7),
])

_THRESHOLD = ("must lie in [0, 1] (or be negative, down to -1, for the model family's "
              'reference default)')
DETECTOR: Dict[str, Param] = dict([
    _p('conf_threshold', -1.0, "minimum detection score; negative: the model family's "
       'reference default (YOLOX 0.3, YOLOv8/YOLO11/RT-DETR 0.25)', RUNTIME, lo=-1.0, hi=1.0,
       range_text=_THRESHOLD),
    _p('nms_threshold', -1.0, "IoU threshold of class-aware NMS; negative: the family's "
       'reference default (YOLOX 0.45, YOLOv8/YOLO11 0.7; RT-DETR has no NMS)', RUNTIME,
       lo=-1.0, hi=1.0, range_text=_THRESHOLD),
    _p('max_detections', 300, 'most detections per frame', RUNTIME, lo=1, hi=100000),
    _p('class_names', [''], 'class names in index order; empty uses the model metadata or COCO'),
    _p('labels_file', '', 'text file with one class name per line (instead of class_names)',
       STARTUP, read_only=True),
    _p('class_id_mode', 'name', 'ObjectHypothesis.class_id as the class name or its index',
       RUNTIME, choices=CLASS_ID_MODES),
    _p('publish_debug_image', False, 'also publish debug_image (bgr8) with drawn boxes', RUNTIME),
    _p('classes', [''], 'publish only detections of these classes (names, or indices with '
       'class_id_mode: index); empty: all', RUNTIME),
    _p('gpu_pipeline', True, 'letterbox, decode and NMS on the GPU when the backend offers it '
       '(tensorrt); false keeps them on the CPU'),
    _p('tracking', False, 'ByteTrack per camera: Detection2D.id carries a stable track id and '
       'only detections of confirmed tracks are published (lower conf_threshold to 0.1 so '
       'low-score detections can continue tracks); ids restart on activate'),
    _p('publish_detections_3d', False, 'also publish detections_3d (vision_msgs/'
       "Detection3DArray, metres in the image's optical frame) from the detections, the "
       "camera's registered depth image (depth_topic: 16UC1 mm or 32FC1 m, aligned to the "
       'image) and its camera_info, matched by stamp'),
    _p('depth_topic', 'depth_registered/image_rect', 'publish_detections_3d: the depth image '
       "aligned to the camera's image, beside it (/front/image_raw -> "
       '/front/depth_registered/image_rect)'),
    _p('depth_wait_ms', 200.0, "publish_detections_3d: how long a frame's 3D detections wait "
       'for a depth image (or camera_info) that has not arrived yet, e.g. from a depth model '
       'slower than the detector; frames behind it wait too, so detections_3d stay in order; '
       '0: only what is already there', lo=0.0, hi=10000.0),
    _p('track_buffer', 30, 'frames at 30 Hz (scaled by camera_rate) a lost track is kept for '
       'finding it again (tracking)', lo=0, hi=100000),
    _p('publish_masks', False, 'instance segmentation models (YOLOv8/YOLO11 -seg): also publish '
       'instance_mask (mono8/mono16, 1 + detection index, 0 none), semantic_mask (mono8 class '
       'id, 255 none) and mask_confidence (mono8 score x 255) at the source resolution; each '
       'made only while subscribed'),
])

DEPTH: Dict[str, Param] = dict([
    _p('depth_output', 'auto', "auto (metric when the model's metadata says depth_kind: "
       'metric, else relative_inverse), relative_inverse (a relative model as it gives it: '
       'larger = nearer, no unit), metric_from_inverse (a relative model: 1 / (depth_scale * '
       'out + depth_shift), metres) or metric (a metric model: out * depth_scale, metres); a '
       "choice that contradicts the model's depth_kind fails configure", choices=DEPTH_OUTPUTS),
    _p('depth_scale', 0.0, 'scale of the metric conversion; 0: not given (1 for a model whose '
       'metadata says depth_kind: metric; metric_from_inverse, and metric on a model without '
       'depth_kind metadata, need it set)', lo=0.0, hi=1e9),
    _p('depth_shift', 0.0, 'shift of metric_from_inverse', lo=-1e9, hi=1e9),
    _p('keep_aspect_ratio', True, 'dynamic-shape models: keep the frame aspect when resizing'),
    _p('publish_colored', False, 'also publish depth_colored (bgr8 colour map) for viewing'),
    _p('colormap', 'inferno', 'depth_colored colour map: ' + ', '.join(COLORMAPS),
       choices=COLORMAPS),
    _p('publish_points', False, "also publish points (sensor_msgs/PointCloud2, the image's "
       "optical frame, metres) from metric depth and each camera's camera_info: "
       'depth_image_proc point_cloud_xyz formula; needs metric depth (a metric model, or '
       'metric_from_inverse)'),
    _p('points_stride', 2, 'points: every n-th pixel in each direction (1: full density)',
       RUNTIME, lo=1, hi=64),
    _p('points_rgb', False, "points: add the source frame's colour (rgb field)", RUNTIME),
])

SEGMENTATION: Dict[str, Param] = dict([
    ('class_names', DETECTOR['class_names']),
    ('labels_file', DETECTOR['labels_file']),
    _p('resize_mode', 'letterbox', 'fixed-size models: letterbox (aspect kept, centred, the '
       'padding cropped off the logits) or stretch (plain resize to the input size)',
       choices=RESIZE_MODES),
    _p('min_confidence', 0.0, 'pixels whose class probability is lower get class 255 (none) '
       'in segmentation; 0 keeps every pixel', RUNTIME, lo=0.0, hi=1.0),
    _p('publish_confidence', True, 'also publish segmentation_confidence (mono8, the argmax '
       "class's softmax probability x 255)"),
])

TASKS: Dict[str, Dict[str, Param]] = {'detection': DETECTOR, 'depth': DEPTH,
                                      'segmentation': SEGMENTATION}


def table(task: str) -> Dict[str, Param]:
    """Every parameter of a node of `task` ('detection', 'depth', 'segmentation'): common first.

    `backend` takes the names registered in backends/ at the time of the call.
    """
    from ..backends import available_backends
    backend = replace(COMMON['backend'], choices=tuple(available_backends()))
    return {**COMMON, 'backend': backend, **TASKS[task]}


def check(param: Param, value: Any) -> Any:
    """Return `value` as the parameter's type, or raise ParameterError saying what to send.

    Numbers must be finite and inside the range (NaN compares false with everything, so it is
    refused explicitly); integers must be integers (a float with an integral value is refused
    too: a typo like 2.5 must not become 2); floats take integers; strings and lists are
    bounded in length; lists hold one type.
    """
    name, kind = param.name, param.kind
    rule = param.constraints()
    want = f'{name}={_show(value)}: ' + (rule if rule.startswith('must') else f'must be {rule}')
    if kind == 'bool':
        if not isinstance(value, bool):
            raise ParameterError(want)
        return value
    if kind in ('int', 'float'):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(want)
        if kind == 'int' and not isinstance(value, int):
            raise ParameterError(want)
        if isinstance(value, float) and not math.isfinite(value):
            raise ParameterError(want)
        lo, hi = param.lo, param.hi
        if lo is not None and (value < lo or (param.lo_open and value == lo)):
            raise ParameterError(want)
        if hi is not None and value > hi:
            raise ParameterError(want)
        return float(value) if kind == 'float' else int(value)
    if kind == 'str':
        if not isinstance(value, str) or len(value) > MAX_TEXT or '\x00' in value:
            raise ParameterError(want)
        if param.choices and value not in param.choices:
            raise ParameterError(f'{name}={value!r}: choose one of {", ".join(param.choices)}')
        return value
    # lists (rclpy hands arrays over as lists or array.array)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ParameterError(want)
    items = list(value)
    if len(items) > MAX_LIST:
        raise ParameterError(f'{name}: {len(items)} entries, at most {MAX_LIST}')
    if kind == 'int[]':
        if any(isinstance(v, bool) or not isinstance(v, int) for v in items):
            raise ParameterError(want)
        if name == 'input_size' and any(items) and (
                len(items) != 2 or min(items) <= 0 or max(items) > 16384):
            raise ParameterError(want)
        return [int(v) for v in items]
    if any(not isinstance(v, str) or len(v) > MAX_TEXT or '\x00' in v for v in items):
        raise ParameterError(want)
    return items


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + '...'


def backend_option_fixed_at_start(name: str) -> bool:
    """Whether `<backend>.<option>` names a file or executable (fixed once the node starts)."""
    return '.' in name and name.rsplit('.', 1)[1] in SENSITIVE_OPTIONS


def is_foreign(name: str) -> bool:
    """Parameters rclpy, launch or QoS overrides own: not ours to validate or report."""
    return name in FOREIGN or name.startswith(FOREIGN_PREFIXES)


def unknown(names: Iterable[str], params: Mapping[str, Param],
            backends: Sequence[str]) -> List[str]:
    """Names that no code reads (most likely typos): not in the table, not a backend option."""
    prefixes = tuple(b + '.' for b in backends)
    return sorted(n for n in names if n not in params and not is_foreign(n)
                  and not n.startswith(prefixes))


def refusal(param: Optional[Param], name: str, configured: bool) -> Optional[str]:
    """Why a set request for `name` is refused in this state (None: it may be set).

    `param` is None for backend options (`<backend>.<option>`, read at configure).
    """
    if param is not None and param.applies == STARTUP and param.name != 'autostart':
        return f'{name} is read when the node starts: restart it with the new value'
    if param is None and backend_option_fixed_at_start(name):
        return f'{name} is read when the node starts: restart it with the new value'
    applies = RECONFIGURE if param is None else param.applies
    if configured and applies == RECONFIGURE:
        return f'needs reconfigure: {name} (deactivate, cleanup, set it, configure)'
    return None


def review(changes: Sequence[Tuple[str, Any]], params: Mapping[str, Param], configured: bool,
           is_option: Callable[[str], bool]) -> Dict[str, Any]:
    """Return {name: checked value} for the changes the node reads; raise for the first refused.

    A change is refused when its value fails `check` or `refusal` says it cannot be set in
    this state (`configured`). Backend options (`is_option(name)`) are taken as they are (their
    backend checks them at configure); other names (rclpy's, QoS overrides, unknown ones) are
    left out: nothing reads them.
    """
    accepted = {}
    for name, value in changes:
        param = params.get(name)
        if param is None and not is_option(name):
            continue
        value = check(param, value) if param is not None else value
        why = refusal(param, name, configured)
        if why:
            raise ParameterError(why)
        accepted[name] = value
    return accepted
