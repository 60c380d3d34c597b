"""ROS-free runtime between the models / backends and the ROS nodes and tools.

- `parameters`: the one parameter table (defaults, types, ranges, when each applies);
- `config`: `RuntimeConfig`, what a runtime is built from;
- `perception_runtime`: `PerceptionRuntime`, backends per worker + adapter + pipeline;
- `tasks`: what detection and depth make of their parameters (adapter, runtime changes);
- `telemetry`: per-node and per-camera accounting and per-hop latency;
- `workers`: a worker's backend, and the whole-frame worker of a worker process.
"""
from .config import RuntimeConfig
from .parameters import (check, COMMON, DEPTH, DETECTOR, Param, ParameterError, RECONFIGURE,
                         refusal, RUNTIME, STARTUP, table, TASKS)
from .perception_runtime import PerceptionRuntime
from .tasks import class_filter, DepthTask, DetectionTask, SegmentationTask, TASK_CLASSES
from .telemetry import CameraStats, HOPS, Telemetry
from .workers import create_worker_backend

__all__ = ['RuntimeConfig', 'check', 'COMMON', 'DEPTH', 'DETECTOR', 'Param', 'ParameterError',
           'RECONFIGURE', 'refusal', 'RUNTIME', 'STARTUP', 'table', 'TASKS',
           'create_worker_backend', 'PerceptionRuntime', 'class_filter', 'DepthTask',
           'DetectionTask', 'SegmentationTask', 'TASK_CLASSES', 'CameraStats', 'HOPS',
           'Telemetry']
