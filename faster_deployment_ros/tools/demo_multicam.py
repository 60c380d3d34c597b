"""`make demo-multicam`: two camera streams into ONE detector_node, a report per camera.

  python -m faster_deployment_ros.tools.demo_multicam [--model ONNX] [--rate 1.0] \
      [--duration 20] [--out out/demo-multicam] [--params config/yolox_nano_onnxruntime.yaml]

The two shared videos are two cameras: `/front/image_raw` plays the plaza video (1280x720 at its
50 fps) and `/rear/image_raw` the campus walkway (480x360 at 10 fps), both looped for
--duration seconds (x --rate). One detector_node process runs with
`inputs: [/front/image_raw, /rear/image_raw]` and publishes `/front/detections` and
`/rear/detections`; each is recorded and checked on its own: frames in / out / dropped, order
violations, foreign headers (every output must carry one of its own camera's input headers),
latency and how many frames show a person. Writes OUT/report.json and OUT/detector_node.log;
exits 1 when a camera got none, reordered or foreign outputs, 2 when an input is missing.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from .paths import DEFAULT_PARAMS, find_model, find_params, ROOT, SHARED
from .processes import node_command, node_process
from ..ros.middleware_env import apply_camera_env, private_domain

CAMERAS = (('front', 'pedestrians_plaza_1280x720_50fps.avi', 50.0),
           ('rear', 'campus_walkway_480x360_10fps.avi', 10.0))


def log(msg: str) -> None:
    print(f'[demo-multicam] {msg}', file=sys.stderr, flush=True)


def format_camera(name: str, r: Dict[str, Any]) -> str:
    from .report import format_report
    return f'camera {name} ({r["in_topic"]} -> {r["out_topic"]}):\n  ' + \
        format_report(r).replace('\n', '\n  ')


def run(args: argparse.Namespace) -> int:
    from .frames import read_frames
    model = find_model(args.model)
    params = find_params(args.params)
    videos = [SHARED / 'data' / v for _, v, _ in CAMERAS]
    missing = [str(v) for v in videos if not v.is_file()]
    if model is None:
        missing.append(f'model {args.model!r}')
    if params is None:
        missing.append(f'parameter file {args.params!r}')
    if missing:
        print('demo-multicam: not found: ' + ', '.join(missing), file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    private_domain(os.environ)
    apply_camera_env(os.environ)

    from sensor_msgs.msg import Image

    from .multicam import play_streams, serialise_images, Stream, stream_report
    streams: List[Stream] = []
    for (name, _, fps), video in zip(CAMERAS, videos):
        frames = read_frames(video, args.frames)
        log(f'{name}: {len(frames)} frames of {video.name} '
            f'({frames[0].shape[1]}x{frames[0].shape[0]}), looped at {fps * args.rate:g} fps')
        streams.append(Stream(name=name, in_topic=f'/{name}/image_raw',
                              out_topic=f'/{name}/detections',
                              payloads=serialise_images(frames, f'{name}_camera'),
                              msg_type=Image, rate=fps * args.rate, keep_output_data=True))
    inputs = '[' + ','.join(s.in_topic for s in streams) + ']'
    cmd = node_command(params_file=params, model=model, parameters=[f'inputs:={inputs}'])
    log('starting: ' + ' '.join(cmd))
    with node_process(cmd, out / 'detector_node.log', 'demo-multicam', log) as run:
        t0 = time.monotonic()
        play_streams(streams, args.duration, node_name='fdr_demo_multicam',
                     wait_timeout=args.node_timeout, log=log)
        log(f'played {args.duration:g} s after {time.monotonic() - t0 - args.duration:.1f} s '
            'of start-up')
    if not run.ok:
        return 1
    reports = {s.name: stream_report(s) for s in streams}
    report = {'cameras': reports, 'model': str(model), 'params': str(params),
              'rate': args.rate, 'duration_s': args.duration, 'node_inputs': inputs}
    (out / 'report.json').write_text(json.dumps(report, indent=2) + '\n')
    for name, r in reports.items():
        print(format_camera(name, r))
    total_in = sum(r['frames_in'] for r in reports.values())
    total_out = sum(r['frames_out'] for r in reports.values())
    print(f'one model, {len(reports)} cameras: {total_out} of {total_in} frames answered; '
          f'report: {out / "report.json"}')
    bad = [n for n, r in reports.items()
           if r['frames_out'] == 0 or r['order_violations'] or r['header_mismatches']]
    if bad:
        print(f'demo-multicam: FAILED: cameras {", ".join(bad)} got no, reordered or foreign '
              'outputs', file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m faster_deployment_ros.tools.demo_multicam',
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default=str(SHARED / 'models' / 'yolox_nano_coco_416.onnx'))
    p.add_argument('--params', default=DEFAULT_PARAMS)
    p.add_argument('--out', default=str(ROOT / 'out' / 'demo-multicam'))
    p.add_argument('--rate', type=float, default=1.0, help='replay speed (1.0 = camera rates)')
    p.add_argument('--duration', type=float, default=20.0, help='seconds to play')
    p.add_argument('--frames', type=int, default=120, help='distinct frames per camera (looped)')
    p.add_argument('--node-timeout', type=float, default=90.0)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
