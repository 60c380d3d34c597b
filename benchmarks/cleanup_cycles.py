"""Memory across lifecycle cycles.

Configure -> activate -> a few frames -> deactivate -> cleanup, N times in one process (as a
supervisor restarting the node's model would), with the resident size (RSS) and the thread count
after each cleanup.

The glibc settings are the console node's (run_node: core.memory.reuse_large_buffers and
limit_malloc_arenas). `--no-trim` skips the heap trim the node does at cleanup
(core.memory.trim_heap) and `--all-arenas` keeps glibc's default arena count, to show what
each is for.

    nice .venv/bin/python benchmarks/cleanup_cycles.py --cycles 50 --out out/cleanup_cycles.json
"""
from __future__ import annotations

import argparse
import gc
import json
import os
from pathlib import Path
import sys
import threading

from faster_deployment_ros.ros.middleware_env import apply_camera_env, private_domain
from faster_deployment_ros.tools.processes import proc_stat
from faster_deployment_ros.tools.report import save_results

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cycles', type=int, default=50)
    ap.add_argument('--frames', type=int, default=5, help='frames processed per cycle')
    ap.add_argument('--workers', type=int, default=1)
    ap.add_argument('--model', default=str(SHARED / 'models/yolox_nano_coco_416.onnx'))
    ap.add_argument('--image', default=str(SHARED / 'data/dog_bicycle_truck.jpg'))
    ap.add_argument('--no-trim', action='store_true', help='skip the heap trim at cleanup')
    ap.add_argument('--all-arenas', action='store_true',
                    help="keep glibc's default arena count (run_node limits it)")
    ap.add_argument('--out', default='out/cleanup_cycles.json')
    args = ap.parse_args(argv)
    private_domain(os.environ)
    apply_camera_env(os.environ)

    import cv2
    from faster_deployment_ros.core.image_codec import fill_image_msg
    from faster_deployment_ros.core.memory import limit_malloc_arenas, reuse_large_buffers
    from faster_deployment_ros.ros.detector_node import DetectorNode
    from faster_deployment_ros.runtime import perception_runtime
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    reuse_large_buffers()  # what run_node does before anything else
    if not args.all_arenas:
        limit_malloc_arenas()
    if args.no_trim:
        perception_runtime.trim_heap = lambda: False
    rclpy.init()
    node = DetectorNode(parameter_overrides=[
        Parameter('model_path', value=args.model), Parameter('model_family', value='yolox'),
        Parameter('workers', value=args.workers), Parameter('queue_size', value=args.frames + 1),
        Parameter('diagnostics_period', value=0.0)])
    msg = fill_image_msg(Image(), cv2.imread(args.image, cv2.IMREAD_COLOR), 'bgr8')
    ok = TransitionCallbackReturn.SUCCESS
    rows = []
    try:
        for cycle in range(1, args.cycles + 1):
            assert node.trigger_configure() == ok and node.trigger_activate() == ok
            done = node.health.published_total + args.frames
            for i in range(args.frames):  # straight into the callback: no transport involved
                msg.header.stamp.sec = cycle * 1000 + i
                node.inputs.on_image(msg)
            node.pipeline.flush(timeout=30)
            assert node.health.published_total == done, 'frames were lost'
            assert node.trigger_deactivate() == ok and node.trigger_cleanup() == ok
            gc.collect()
            rows.append({'cycle': cycle, 'rss_mb': round(proc_stat('self').rss_bytes / 2**20, 1),
                         'threads': threading.active_count()})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    at5 = rows[min(4, len(rows) - 1)]['rss_mb']
    summary = {'cycles': len(rows), 'trim': not args.no_trim,
               'arenas_limited': not args.all_arenas, 'rss_mb_cycle1': rows[0]['rss_mb'],
               'rss_mb_cycle5': at5, 'rss_mb_last': rows[-1]['rss_mb'],
               'growth_after_cycle5_mb': round(rows[-1]['rss_mb'] - at5, 1),
               'threads_first': rows[0]['threads'], 'threads_last': rows[-1]['threads']}
    save_results(Path(args.out), summary, cycles=rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
