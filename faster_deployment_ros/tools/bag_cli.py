"""
`fdr-bag`: make image bags from videos, replay them through a node and record its outputs.

Commands:
  fdr-bag from-video INPUT OUT_BAG [--topic /image] [--fps F] [--max-frames N] [--compressed]
  fdr-bag play-record IN_BAG OUT_DIR [--rate R] [--in-topic /image] [--out-topic /detections]
  fdr-bag info BAG
  fdr-bag diff RUN_BAG GOLDEN_BAG [--topic T] [--min-recall R] [--max-box-drift-px PX] ...
  fdr-bag bench IN_BAG --model MODEL [--params YAML] [--drop-limit 0.05] [--latency-hz 30]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import List, Optional

from . import bag_bench, bag_diff


def _from_video(a: argparse.Namespace) -> int:
    import cv2

    from .video_to_bag import print_progress, summary_dict, video_to_bag
    total = None
    src = Path(a.input)
    if src.is_file():
        cap = cv2.VideoCapture(str(src))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        cap.release()
    if a.max_frames is not None:
        total = min(total or a.max_frames, a.max_frames)
    out = Path(a.out_bag)
    if out.exists():
        print(f'fdr-bag: {out} exists; remove it first', file=sys.stderr)
        return 2
    s = video_to_bag(src, out, topic=a.topic, frame_id=a.frame_id, encoding=a.encoding,
                     max_frames=a.max_frames, compressed=a.compressed, fps=a.fps,
                     jpeg_quality=a.quality, progress=print_progress(total))
    print(file=sys.stderr)
    if s.warning:
        print(f'fdr-bag: warning: {s.warning}', file=sys.stderr)
    print(json.dumps(summary_dict(s), indent=2))
    return 0


def _play_record(a: argparse.Namespace) -> int:
    import os

    from ..ros.middleware_env import apply_camera_env
    from .replay import play_record, ReplayConfig, ReplayError
    from .report import format_report
    apply_camera_env(os.environ)  # the transports the README prescribes for the node too
    cfg = ReplayConfig(in_bag=Path(a.in_bag), out_dir=Path(a.out_dir), in_topic=a.in_topic,
                       out_topic=a.out_topic, out_type=a.out_type, bag_topic=a.bag_topic,
                       rate=a.rate, reliable=a.reliable, depth=a.depth,
                       wait_timeout=a.wait_timeout, settle_timeout=a.timeout,
                       idle_timeout=a.idle_timeout, publish_mode=a.publish_mode,
                       max_frames=a.max_frames, lockstep=a.lockstep)
    try:
        report = play_record(cfg, log=lambda s: print(s, file=sys.stderr))
    except ReplayError as exc:
        print(f'fdr-bag play-record: {exc}', file=sys.stderr)
        return 1
    print(format_report(report))
    print(f'report: {Path(a.out_dir) / "report.json"}')
    return 0


def _info(a: argparse.Namespace) -> int:
    from rosbags.rosbag2 import Reader
    with Reader(Path(a.bag)) as r:
        info = {'path': a.bag, 'messages': r.message_count, 'duration_s': r.duration / 1e9,
                'start_ns': r.start_time,
                'topics': {c.topic: {'type': c.msgtype, 'count': c.msgcount}
                           for c in r.connections}}
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='fdr-bag', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)

    v = sub.add_parser('from-video', help='video file or image folder -> MCAP bag')
    v.add_argument('input', help='video file (anything OpenCV reads) or a folder of images')
    v.add_argument('out_bag', help='bag directory to create')
    v.add_argument('--topic', default='/image')
    v.add_argument('--frame-id', default='camera')
    v.add_argument('--encoding', default='bgr8', choices=['bgr8', 'rgb8', 'mono8', 'bgra8',
                                                          'rgba8'])
    v.add_argument('--max-frames', type=int)
    v.add_argument('--fps', type=float, help='frame rate (image folders: default 10; '
                   "videos: overrides the file's rate)")
    v.add_argument('--compressed', nargs='?', const='jpeg', choices=['jpeg', 'png'],
                   help='write sensor_msgs/CompressedImage (jpeg unless png is given)')
    v.add_argument('--quality', type=int, default=90, help='jpeg quality')
    v.set_defaults(func=_from_video)

    r = sub.add_parser('play-record', help='play a bag into the graph, record the outputs')
    r.add_argument('in_bag')
    r.add_argument('out_dir', help='gets outputs/ (MCAP bag) and report.json')
    r.add_argument('--rate', type=float, default=1.0, help='playback speed; 0 = no waiting')
    r.add_argument('--in-topic', default='/image')
    r.add_argument('--out-topic', default='/detections')
    r.add_argument('--out-type', default='vision_msgs/msg/Detection2DArray')
    r.add_argument('--bag-topic', help='image topic inside the bag (default: --in-topic, or '
                   "the bag's only image topic)")
    r.add_argument('--reliable', action='store_true', help='publish reliable, not best effort')
    r.add_argument('--depth', type=int, default=5, help='publisher history depth')
    r.add_argument('--timeout', type=float, default=10.0,
                   help='seconds to wait for outputs after the last frame')
    r.add_argument('--idle-timeout', type=float, default=2.0,
                   help='stop waiting once no output came for this long')
    r.add_argument('--wait-timeout', type=float, default=30.0,
                   help='seconds to wait for the node under test to appear')
    r.add_argument('--publish-mode', choices=['raw', 'msg'], default='raw',
                   help="raw: the bag's CDR bytes (cheapest); msg: rclpy messages built from "
                   'the frames with one reused buffer')
    r.add_argument('--max-frames', type=int)
    r.add_argument('--lockstep', action='store_true',
                   help="publish each frame only after the previous one's output arrived (or "
                   '--idle-timeout passed): every frame is processed, for golden-bag runs')
    r.set_defaults(func=_play_record)

    i = sub.add_parser('info', help='topics and counts of a bag')
    i.add_argument('bag')
    i.set_defaults(func=_info)

    d = sub.add_parser('diff', help="compare a run's outputs with a golden bag; non-zero exit "
                       'when a limit fails', description='Pairs outputs by header (stamp, '
                       'frame_id), then detections by class and IoU (greedy, highest IoU first); '
                       'depth images on pixels valid in both. Exit 0: passed, 1: a limit failed, '
                       '2: unreadable input.')
    bag_diff.add_arguments(d)
    d.set_defaults(func=bag_diff.main_args)

    b = sub.add_parser('bench', help='peak fps (< drop limit) and latency at 30 Hz of a node fed '
                       'from a bag, in the form of ros2_benchmark / Isaac ROS tables')
    bag_bench.add_arguments(b)
    b.set_defaults(func=bag_bench.main_args)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == '__main__':
    sys.exit(main())
