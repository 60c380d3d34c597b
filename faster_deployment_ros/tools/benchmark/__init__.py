"""fdr-benchmark: one model, real frames, every way of running it, in one run.

Sections (each can be skipped): the bare backend per stage (pre, infer, post) for each thread
count; a plain serial loop (what most nodes do); the ordered pipeline with 1..N workers at full
speed and at the camera rate; the auto-tuner's choice; ultralytics' own predict loop on the same
ONNX file; end to end through ROS 2 (a publisher -> the node process -> a subscriber, latency
from the frame's header stamp to receipt): the latency budget per hop next to a transport floor
and the bare model paced at the same rate, the overload case, saturation against the pipeline
alone. Writes benchmark.json and benchmark.png and prints the targets.

One idea per module: `cli` (arguments, section order), `common` (frames, model, summaries),
`measure` (bare / serial / pipeline / ultralytics), `ros_harness` (node processes, publisher,
per-hop budget), `outside_view` (`--outside-view`: the node as an outside observer measures it,
every part in its own process) with `probe` (those processes: publisher, receiver, plain ONNX
Runtime), `report` (targets, charts), `echo_node` (the transport floor); CPU accounting
and node command lines are tools.processes'. ROS is imported only in the ROS sections: without
rclpy they are skipped.

  fdr-benchmark --model ../shared/models/yolox_nano_coco_416.onnx --out out/bench
"""
from .cli import build_parser, main, parse_configs
from .common import guess_family, lat_summary, load_frames, Model, Progress
from .measure import bare_reference, bench_bare, bench_serial, flatness, run_pipeline, windows
from .report import plot, plot_points, print_targets, targets

__all__ = ['main', 'build_parser', 'parse_configs', 'Model', 'Progress', 'guess_family',
           'lat_summary', 'load_frames', 'bare_reference', 'bench_bare', 'bench_serial',
           'flatness', 'run_pipeline', 'windows', 'plot', 'plot_points', 'print_targets',
           'targets']
