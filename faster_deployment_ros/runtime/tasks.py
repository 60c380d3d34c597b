"""What a node of one task makes of its parameters: the adapter and its per-frame settings.

A task is built from the checked values of its parameter table (runtime/parameters.py). It makes
the model adapter for the runtime (`make_adapter`, no side effects: autotune calls it for every
measured session), is bound to the running model's adapter (`bind`), checks a change of its runtime
parameters against the running model (`check_change`, before anything is applied), applies it
(`apply`), and finishes each frame's result (`finish`, e.g. the class filter). ROS-free; the nodes
add publishing.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .parameters import ParameterError
from ..core.tracking import ByteTracker
from ..core.types import Detections
from ..models import create_adapter, resolve_family
from ..models.depth import DepthKindError

Log = Callable[[str], None]
DEPTH_FAMILIES = ('depth', 'depth_anything_v2', 'midas')
SEGMENTATION_FAMILIES = ('semantic_seg',)
NODE_OF_TASK = {'detection': 'detector_node', 'depth': 'depth_node',
                'segmentation': 'segmentation_node'}


def class_filter(value: Sequence[str], class_names: Sequence[str],
                 mode: str) -> Optional[frozenset]:
    """Return the class indices `classes` keeps (None: all); unknown entries are an error."""
    wanted = [str(c).strip() for c in (value or []) if str(c).strip()]
    if not wanted:
        return None
    names = list(class_names or [])
    keep = set()
    for c in wanted:
        if mode == 'index' or c.isdigit():
            if not c.isdigit() or int(c) >= len(names):
                raise ParameterError(f'classes: {c!r} is not a class index of this model '
                                     f'(0..{len(names) - 1}); with class_id_mode: index give '
                                     'indices, with name give class names')
            keep.add(int(c))
        elif c in names:
            keep.add(names.index(c))
        else:
            more = ', ...' if len(names) > 8 else ''
            raise ParameterError(f'classes: {c!r} is not a class of this model (it has '
                                 f'{", ".join(names[:8])}{more})')
    return frozenset(keep)


class Task:
    """Common part: the values, and what every task answers."""

    task = ''

    def __init__(self, values: Mapping[str, Any], log: Log = print) -> None:
        self.values: Dict[str, Any] = dict(values)
        self.log = log
        self.adapter: Any = None

    def make_adapter(self, model_family: str, model_path: str, backend: Any,
                     input_size: Optional[tuple]) -> Any:
        raise NotImplementedError

    def bind(self, adapter: Any) -> None:
        """Use `adapter` (the running model's) for runtime changes and `finish`."""
        self.adapter = adapter

    def wants_image(self) -> bool:
        """Whether `finish` needs the decoded source image (e.g. for a debug overlay)."""
        return False

    def check_change(self, name: str, value: Any, values: Mapping[str, Any],
                     gpu_path: bool) -> None:
        """Raise ParameterError if runtime parameter `name` cannot take `value` now.

        `values` are all parameter values as they would be after the change (combinations
        that are valid alone but not together are refused here).
        """

    def apply(self, name: str, value: Any) -> None:
        """Apply an accepted runtime change of a task parameter to the next frame."""
        self.values[name] = value

    def finish(self, result: Any, camera: int = 0) -> Any:
        """Return camera `camera`'s result as published (called in delivery order per camera)."""
        return result

    def reset(self) -> None:
        """Forget per-stream state (e.g. tracks): the node calls it on activate and cleanup."""

    def _check_task(self, adapter: Any, model_path: str) -> Any:
        if adapter.task != self.task:
            raise ParameterError(f'{model_path} is a {adapter.task} model; use the '
                                 f'{NODE_OF_TASK[adapter.task]}')
        return adapter

    @staticmethod
    def _create(family: str, backend: Any, knobs: Dict[str, Any],
                input_size: Optional[tuple]) -> Any:
        """Return `family`'s adapter for `backend`'s tensors with `knobs` (+ `input_size`)."""
        if input_size:
            knobs = dict(knobs, input_size=tuple(input_size))
        return create_adapter(family, backend.inputs, backend.outputs, backend.metadata,
                              **knobs)

    def _family(self, model_family: str, model_path: str, backend: Any,
                families: Sequence[str]) -> str:
        """Return `model_family`, or for 'auto' the one the model's signature implies (logged).

        An inferred family of another task is refused, naming the node that runs it.
        """
        if model_family not in ('auto', ''):
            return model_family
        family, reason = resolve_family(model_family, backend.inputs, backend.outputs,
                                        backend.metadata)
        self.log(f'model_family auto -> {family} ({reason})')
        if family not in families:
            task = 'depth' if family in DEPTH_FAMILIES else \
                'segmentation' if family in SEGMENTATION_FAMILIES else 'detection'
            raise ParameterError(f'{model_path} looks like a {family} model ({task}), not a '
                                 f'{self.task} one; use the {NODE_OF_TASK[task]}')
        return family


def read_class_names(values: Mapping[str, Any]) -> Optional[List[str]]:
    """Class names from `labels_file` (one per line) or `class_names`; None: the model's own."""
    names: List[str] = [n for n in (values['class_names'] or []) if n]
    labels_file = values['labels_file']
    if labels_file:
        path = Path(labels_file)
        if not path.is_file():
            raise ParameterError(f'labels_file {labels_file!r} does not exist: give a text '
                                 'file with one class name per line')
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return names or None


class DetectionTask(Task):
    """2D detection: thresholds, class names and filter, class id mode, debug image, tracking."""

    task = 'detection'
    THRESHOLDS = ('conf_threshold', 'nms_threshold', 'max_detections')

    def __init__(self, values: Mapping[str, Any], log: Log = print) -> None:
        super().__init__(values, log)
        self.class_names = read_class_names(self.values)
        self.keep_classes: Optional[frozenset] = None
        self.trackers: Dict[int, ByteTracker] = {}  # per camera, with `tracking`

    @property
    def class_id_mode(self) -> str:
        return self.values['class_id_mode']

    @property
    def debug(self) -> bool:
        return bool(self.values['publish_debug_image'])

    def wants_image(self) -> bool:
        return self.debug

    def make_adapter(self, model_family, model_path, backend, input_size):
        v = self.values
        knobs: Dict[str, Any] = {'max_detections': v['max_detections'],
                                 'class_names': self.class_names}
        for name in ('conf_threshold', 'nms_threshold'):  # negative: the family's default
            if v[name] >= 0.0:
                knobs[name] = v[name]
        adapter = self._check_task(self._create(model_family, backend, knobs, input_size),
                                   model_path)
        class_filter(v['classes'], adapter.class_names, self.class_id_mode)  # fail at configure
        return adapter

    def bind(self, adapter: Any) -> None:
        super().bind(adapter)
        self.keep_classes = class_filter(self.values['classes'], adapter.class_names,
                                         self.class_id_mode)

    def check_change(self, name, value, values, gpu_path):
        if self.adapter is None:
            return
        if name in self.THRESHOLDS:
            if gpu_path:
                raise ParameterError(f'needs reconfigure: {name} (the GPU decode holds it)')
            if not hasattr(self.adapter, name):
                raise ParameterError(f'{name} does not apply to {self.adapter.family} models '
                                     '(no such step in their decoding)')
        if name in ('classes', 'class_id_mode'):
            class_filter(values['classes'], self.adapter.class_names, values['class_id_mode'])

    def apply(self, name, value):
        super().apply(name, value)
        if name in self.THRESHOLDS and self.adapter is not None:
            if name != 'max_detections' and value < 0.0:  # back to the family's own
                value = inspect.signature(type(self.adapter)).parameters[name].default
            self.adapter.set_thresholds(**{name: value})
        elif name in ('classes', 'class_id_mode') and self.adapter is not None:
            self.keep_classes = class_filter(self.values['classes'], self.adapter.class_names,
                                             self.class_id_mode)

    def finish(self, det: Detections, camera: int = 0) -> Detections:
        keep = self.keep_classes
        if keep is not None and len(det):
            det = det.select(np.isin(det.class_ids, list(keep)))
        if self.values['tracking']:  # after the filter: tracks of the published classes only
            tracker = self.trackers.get(camera)
            if tracker is None:
                tracker = self.trackers[camera] = ByteTracker(
                    self.values['camera_rate'], track_buffer=self.values['track_buffer'])
            det = tracker.update(det)
        return det

    def reset(self) -> None:
        self.trackers = {}


class DepthTask(Task):
    """Monocular depth: output kind, metric scale / shift, aspect handling, colour view.

    The depth kind is resolved by the adapter (models/depth.py: `depth_output` against the
    model's `depth_kind` metadata); a contradiction fails configure with the adapter's message.
    `depth_scale` 0 means not given.
    """

    task = 'depth'
    POINTS_NEED_METRIC = ('publish_points needs metric depth: use a metric model (metadata '
                          'depth_kind: metric, or depth_output: metric with depth_scale), or '
                          'depth_output: metric_from_inverse with depth_scale / depth_shift '
                          'fitted, or publish_points: false')

    def __init__(self, values: Mapping[str, Any], log: Log = print) -> None:
        super().__init__(values, log)
        if values['publish_points'] and values['depth_output'] == 'relative_inverse':
            raise ParameterError(self.POINTS_NEED_METRIC)

    def wants_image(self) -> bool:
        return bool(self.values['publish_points'] and self.values['points_rgb'])

    def make_adapter(self, model_family, model_path, backend, input_size):
        v = self.values
        knobs = {'output': v['depth_output'], 'depth_scale': v['depth_scale'] or None,
                 'depth_shift': v['depth_shift'], 'keep_aspect_ratio': v['keep_aspect_ratio']}
        family = self._family(model_family, model_path, backend, DEPTH_FAMILIES)
        try:
            adapter = self._create(family, backend, knobs, input_size)
        except DepthKindError as e:
            raise ParameterError(f'{model_path}: {e}') from e
        adapter = self._check_task(adapter, model_path)
        if v['publish_points'] and adapter.output == 'relative_inverse':
            raise ParameterError(self.POINTS_NEED_METRIC)
        return adapter

    def bind(self, adapter: Any) -> None:
        super().bind(adapter)
        kind, max_depth = adapter.depth_kind, adapter.max_depth
        why = ('no depth_kind metadata' if kind is None else f'metadata depth_kind: {kind}'
               + (f', max_depth {max_depth:g} m' if max_depth else ''))
        unit = 'metres' if adapter.output != 'relative_inverse' else 'relative, no unit'
        self.log(f'depth_output {self.values["depth_output"]} -> {adapter.output} ({unit}; '
                 f'{why})')


class SegmentationTask(Task):
    """Semantic segmentation: class names, resize mode, the confidence floor (runtime)."""

    task = 'segmentation'

    def __init__(self, values: Mapping[str, Any], log: Log = print) -> None:
        super().__init__(values, log)
        self.class_names = read_class_names(self.values)

    def make_adapter(self, model_family, model_path, backend, input_size):
        v = self.values
        knobs: Dict[str, Any] = {'resize_mode': v['resize_mode'],
                                 'min_confidence': v['min_confidence'],
                                 'class_names': self.class_names}
        family = self._family(model_family, model_path, backend, SEGMENTATION_FAMILIES)
        try:
            adapter = self._create(family, backend, knobs, input_size)
        except ValueError as exc:
            if 'class' in str(exc) and self.class_names:
                raise ParameterError(f'class_names / labels_file: {exc}') from exc
            raise
        return self._check_task(adapter, model_path)

    def apply(self, name, value):
        super().apply(name, value)
        if name == 'min_confidence' and self.adapter is not None:
            self.adapter.set_thresholds(min_confidence=value)


TASK_CLASSES = {'detection': DetectionTask, 'depth': DepthTask,
                'segmentation': SegmentationTask}
