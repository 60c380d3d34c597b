"""`make demo`: video -> bag -> detector_node in a live ROS 2 graph -> recorded outputs -> report.

  python -m faster_deployment_ros.tools.demo --input VIDEO --model ONNX --out out/demo \
      [--rate 1.0] [--max-frames N] [--params config/yolox_nano_onnxruntime.yaml] \
      [--masks-topic /instance_mask]

Writes OUT/report.json, OUT/outputs (MCAP bag of vision_msgs/Detection2DArray), OUT/frame_*.png
(annotated) and OUT/detector_node.log; exits 1 when outputs were reordered or mis-stamped,
2 when the input or model is missing. A ROS tool: rclpy is imported only in ``run``.

Instance masks (`make demo-masks`: a -seg model, ``publish_masks``): ``--masks-topic`` records
the detector's instance mask images (pixel = 1 + detection index, 0 none) into the same bag,
checks each against the detection array of its header (report['masks']: images, stamps
matched, order violations, pixels naming no detection) and overlays the masks on the PNGs, each
instance in the colour of its Detection2D.id (the track id with ``tracking``). Exits 1 as well
when no mask came, or a mask is reordered, mis-stamped or names a detection its array lacks.

Golden-bag regression gate (`make golden`, then `make demo-check`): ``--record-golden DIR``
keeps the run's outputs as DIR/outputs; ``--check-golden DIR`` diffs a later run against them
with `fdr-bag diff` and the limits in ``--gate`` and exits 1 when one fails. Both modes stamp
the frames from a fixed start time, run the node with a blocking queue and reliable QoS, and
replay in lockstep (each frame after the previous one's output), so every frame is processed in
both runs whatever the machine's load.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

from . import bag_diff
from .paths import DEFAULT_PARAMS, find_model, find_params, MODEL_DIRS, ROOT
from .processes import node_command, node_process

USAGE = 'make demo INPUT=/path/video.avi MODEL=/path/model.onnx'
# Golden runs: the same stamps every time, and no frame dropped between player and node.
GOLDEN_START_NS = 1_700_000_000_000_000_000
GOLDEN_QOS_DEPTH = 50
GOLDEN_NODE_PARAMS = ('full_policy:=block', 'qos_reliability:=reliable',
                      f'qos_depth:={GOLDEN_QOS_DEPTH}')
DEFAULT_GATE = ('--min-recall 0.98 --min-precision 0.98 --max-box-drift-px 2 '
                '--box-drift-stat p99 --max-score-drift 0.1')


def log(msg: str) -> None:
    print(f'[demo] {msg}', file=sys.stderr, flush=True)


def cached_bag(video: Path, out: Path, max_frames: Optional[int],
               start_ns: Optional[int] = None) -> Path:
    """out/input_bag, rebuilt only when the input file (path, size, mtime) or options change.

    ``start_ns``: stamp of the first frame (default: now).
    """
    from .video_to_bag import print_progress, video_to_bag
    st = video.stat()
    key = hashlib.sha256(json.dumps([str(video), st.st_size, st.st_mtime_ns, max_frames,
                                     start_ns]).encode()).hexdigest()[:16]
    bag, stamp = out / 'input_bag', out / 'input_bag.key'
    if bag.is_dir() and stamp.is_file() and stamp.read_text().strip() == key:
        log(f'reusing {bag} (same input)')
        return bag
    shutil.rmtree(bag, ignore_errors=True)
    log(f'converting {video} -> {bag}')
    s = video_to_bag(video, bag, topic='/image', frame_id='camera', max_frames=max_frames,
                     start_ns=start_ns, progress=print_progress(max_frames))
    print(file=sys.stderr)
    log(f'{s.frames} frames {s.width}x{s.height} @ {s.fps:g} fps')
    if s.warning:
        log(f'warning: {s.warning}')
    stamp.write_text(key + '\n')
    return bag


def wait_for_subscriber(topic: str, proc: subprocess.Popen, timeout: float) -> None:
    import rclpy
    node = rclpy.create_node('fdr_demo_probe')
    try:
        end = time.monotonic() + timeout
        while node.count_subscribers(topic) == 0:
            if proc.poll() is not None:
                raise RuntimeError(f'detector_node exited with code {proc.returncode}')
            if time.monotonic() > end:
                raise RuntimeError(f'detector_node did not subscribe {topic} in {timeout:.0f} s')
            time.sleep(0.1)
    finally:
        node.destroy_node()


def _colour(name: str) -> tuple:
    h = int(hashlib.md5(name.encode()).hexdigest()[:6], 16)
    return (64 + (h & 127), 64 + ((h >> 8) & 127), 64 + ((h >> 16) & 191))


def draw(frame: np.ndarray, det_msg: Any, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Boxes and 'class score' labels of a (rosbags) Detection2DArray on a copy of the frame.

    Tracked detections (Detection2D.id set) are labelled '#id class score'. ``mask``: the
    frame's instance mask (1 + detection index, 0 none), blended in half-transparent, each
    instance and its box in the colour of its Detection2D.id (the track id with tracking).
    """
    canvas = frame.copy()
    colours = [_colour(f'#{d.id}') for d in det_msg.detections]
    if mask is not None:
        lut = np.array([(0, 0, 0)] + colours, np.float32)
        on = (mask > 0) & (mask <= len(colours))
        canvas[on] = (0.5 * canvas[on] + 0.5 * lut[mask[on]]).astype(np.uint8)
    for k, det in enumerate(det_msg.detections):
        if not len(det.results):
            continue
        best = max(det.results, key=lambda r: r.hypothesis.score)
        c, w, h = det.bbox.center.position, det.bbox.size_x, det.bbox.size_y
        p1 = (int(round(c.x - w / 2)), int(round(c.y - h / 2)))
        p2 = (int(round(c.x + w / 2)), int(round(c.y + h / 2)))
        col = colours[k] if mask is not None else _colour(best.hypothesis.class_id)
        cv2.rectangle(canvas, p1, p2, col, 2)
        track = f'#{det.id} ' if det.id else ''
        cv2.putText(canvas, f'{track}{best.hypothesis.class_id} {best.hypothesis.score:.2f}',
                    (p1[0], max(p1[1] - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, col, 1,
                    cv2.LINE_AA)
    return canvas


def _stamp(msg: Any) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def annotate(in_bag: Path, out_bag: Path, out: Path, count: int = 4,
             masks_topic: Optional[str] = None) -> List[Path]:
    """Draw ``count`` outputs on their input frames (found by header stamp); return the PNGs.

    The outputs drawn are spread evenly over those with detections (with ``masks_topic``: and
    an instance mask image in ``out_bag``, overlaid).
    """
    from rosbags.rosbag2 import Reader

    from .bag_types import make_typestore
    from .replay import read_detection_msgs
    from ..core.image_codec import decode_compressed, msg_to_numpy, to_bgr8
    store = make_typestore()
    dets = [m for m in read_detection_msgs(out_bag, store) if len(m.detections)]
    masks: Dict[int, Any] = {}
    if masks_topic:
        with_mask = set(_read_topic(out_bag, masks_topic, store, None))
        dets = [m for m in dets if _stamp(m) in with_mask]
    if not dets or count <= 0:
        return []
    idx = np.unique(np.linspace(0, len(dets) - 1, min(count, len(dets))).round().astype(int))
    wanted = {_stamp(m): m for m in (dets[i] for i in idx)}
    if masks_topic:
        masks = _read_topic(out_bag, masks_topic, store, msg_to_numpy, keep=wanted)
    paths = []
    with Reader(in_bag) as reader:
        conns = [c for c in reader.connections if c.msgtype.startswith('sensor_msgs/msg/')]
        for conn, _, data in reader.messages(connections=conns):
            msg = store.deserialize_cdr(data, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if stamp not in wanted:
                continue
            if conn.msgtype.endswith('CompressedImage'):
                img, enc = decode_compressed(msg.format, msg.data)
            else:
                img, enc = msg_to_numpy(msg), msg.encoding
            path = out / f'frame_{len(paths):02d}_{stamp}.png'
            cv2.imwrite(str(path), draw(to_bgr8(img, enc), wanted[stamp], masks.get(stamp)))
            paths.append(path)
            if len(paths) == len(wanted):
                break
    return paths


def _read_topic(bag: Path, topic: str, store, convert, keep=None) -> Dict[int, Any]:
    """Header stamp -> ``convert(msg)`` for the messages of ``topic`` (only stamps in ``keep``).

    The stamp is read from the CDR bytes first, so messages not kept are never deserialised
    (``convert`` None: none is, the values are None).
    """
    from rosbags.rosbag2 import Reader

    from .replay import cdr_header
    out = {}
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, data in reader.messages(connections=conns):
            stamp = cdr_header(data)[0]
            if keep is None or stamp in keep:
                out[stamp] = convert and convert(store.deserialize_cdr(data, conn.msgtype))
    return out


def check_masks(bag: Path, topic: str, companion: Dict[str, Any]) -> Dict[str, Any]:
    """Check the instance mask images of ``bag`` against its detection arrays (report['masks']).

    ``companion``: replay's header statistics of the mask topic (report['topics'][topic]).
    Adds ``values_beyond_detections`` (images with a pixel value above the number of
    detections in the array of their header: a mask naming no detection), ``instances_shown``
    (instance values present over all images), ``images_with_instances`` and ``encodings``.
    """
    from rosbags.rosbag2 import Reader

    from .bag_types import make_typestore
    from .replay import read_detection_msgs
    from ..core.image_codec import msg_to_numpy
    store = make_typestore()
    counts = {(_stamp(m), str(m.header.frame_id)): len(m.detections)
              for m in read_detection_msgs(bag, store)}
    beyond = shown = with_instances = 0
    encodings: Dict[str, int] = {}
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, data in reader.messages(connections=conns):
            msg = store.deserialize_cdr(data, conn.msgtype)
            encodings[msg.encoding] = encodings.get(msg.encoding, 0) + 1
            values = np.unique(msg_to_numpy(msg))
            values = values[values > 0]
            n = counts.get((_stamp(msg), str(msg.header.frame_id)))
            beyond += bool(n is not None and values.size and int(values[-1]) > n)
            shown += int(values.size)
            with_instances += bool(values.size)
    return {'topic': topic, 'images': companion['messages'], **companion,
            'values_beyond_detections': beyond, 'instances_shown': shown,
            'images_with_instances': with_instances, 'encodings': encodings}


def mask_failures(masks: Dict[str, Any], frames_out: int) -> List[str]:
    """List what is wrong with report['masks'] (empty: nothing)."""
    fails = []
    if frames_out and not masks['images']:
        fails.append(f'no instance mask image on {masks["topic"]} (is publish_masks true and '
                     'the model a -seg export?)')
    for key, what in (('header_mismatches', 'carry the header of no detection array'),
                      ('order_violations', 'arrived out of order'),
                      ('values_beyond_detections', 'name a detection their array lacks')):
        if masks[key]:
            fails.append(f'{masks[key]} mask images {what}')
    return fails


def run(args: argparse.Namespace) -> int:
    video = Path(args.input).expanduser() if args.input else None
    model = find_model(args.model)
    params = find_params(args.params)
    missing = []
    if video is None or not video.exists():
        missing.append(f'input video {args.input!r} not found')
    if model is None:
        missing.append(f'model {args.model!r} not found (also looked in '
                       f'{", ".join(str(d) for d in MODEL_DIRS)})')
    if params is None:
        missing.append(f'parameter file {args.params!r} not found')
    if missing:
        for m in missing:
            print(f'demo: {m}', file=sys.stderr)
        print(f'demo: pass the video and an ONNX detector, e.g.\n  {USAGE}', file=sys.stderr)
        return 2

    from ..ros.middleware_env import apply_camera_env
    from .replay import play_record, ReplayConfig
    from .report import format_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    golden = args.record_golden or args.check_golden
    if args.check_golden and not (Path(args.check_golden) / 'outputs').is_dir():
        print(f'demo: no golden bag in {args.check_golden}; record one first (make golden)',
              file=sys.stderr)
        return 2
    in_bag = cached_bag(video.resolve(), out, args.max_frames,
                        GOLDEN_START_NS if golden else None)
    for stale in [out / 'outputs', out / 'report.json', out / 'diff.json', out / 'diff.png',
                  *out.glob('frame_*.png')]:
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)

    # Before this process's first ROS context: the child and we use the same transports.
    apply_camera_env(os.environ)
    env = dict(os.environ)
    rknn_python = ROOT / '.venv-rknn' / 'bin' / 'python'  # the dev tree's RKNN simulator, if any
    if rknn_python.exists():
        env.setdefault('FDR_RKNN_PYTHON', str(rknn_python))
    cmd = node_command(params_file=params, model=model,
                       parameters=GOLDEN_NODE_PARAMS if golden else ())
    log('starting: ' + ' '.join(cmd))
    report: Optional[Dict[str, Any]] = None
    with node_process(cmd, out / 'detector_node.log', 'demo', log, env) as run:
        t0 = time.monotonic()
        wait_for_subscriber('/image', run.proc, args.node_timeout)
        log(f'detector_node active after {time.monotonic() - t0:.1f} s')
        cfg = ReplayConfig(in_bag=in_bag, out_dir=out, rate=args.rate,
                           settle_timeout=args.settle_timeout, wait_timeout=args.node_timeout,
                           reliable=bool(golden), depth=GOLDEN_QOS_DEPTH if golden else 5,
                           lockstep=bool(golden),
                           companion_topics=({args.masks_topic: 'sensor_msgs/msg/Image'}
                                             if args.masks_topic else {}),
                           extra_report={'demo': {'input': str(video), 'model': str(model),
                                                  'params': str(params)}})
        report = play_record(cfg, log=log)
    if report is None:
        return 1

    fails = []
    if args.masks_topic:
        report['masks'] = check_masks(out / 'outputs', args.masks_topic,
                                      report['topics'][args.masks_topic])
        (out / 'report.json').write_text(json.dumps(report, indent=2) + '\n')
        fails = mask_failures(report['masks'], report['frames_out'])
    pngs = annotate(in_bag, out / 'outputs', out, args.frames, args.masks_topic)
    print(format_report(report))
    if args.masks_topic:
        m = report['masks']
        print(f"masks: {m['images']} images ({m['stamps_matched']} with their detection array's "
              f"header, {m['outputs_without']} arrays without one), {m['instances_shown']} "
              f"instances shown; order violations {m['order_violations']}, header mismatches "
              f"{m['header_mismatches']}, values naming no detection "
              f"{m['values_beyond_detections']}")
    if report['dropped'] > 0 and golden:
        print(f"({report['dropped']} frames got no output although the replay waited up to "
              '2 s for each: see detector_node.log)')
    elif report['dropped'] > 0:
        print(f"({report['dropped']} frames dropped: under full_policy drop_oldest the node skips "
              'to the newest frame when inference is slower than the camera; try --rate 0.5)')
    print(f'outputs: {out / "outputs"}, report: {out / "report.json"}, '
          f'{len(pngs)} annotated frames: {out}/frame_*.png')
    bad = report['order_violations'] > 0 or report['header_mismatches'] > 0
    if report['frames_out'] == 0:
        print('demo: FAILED: the node produced no outputs', file=sys.stderr)
        return 1
    if bad:
        print('demo: FAILED: outputs out of order or with foreign headers', file=sys.stderr)
        return 1
    if fails:
        print('demo: FAILED: ' + '; '.join(fails), file=sys.stderr)
        return 1
    if args.record_golden:
        return record_golden(out, Path(args.record_golden), report)
    if args.check_golden:
        log(f'fdr-bag diff {out / "outputs"} {args.check_golden} {args.gate}')
        return check_golden(out, Path(args.check_golden), args.gate)
    return 0


def record_golden(out: Path, golden: Path, report: Dict[str, Any]) -> int:
    """Keep this run's outputs as the golden bag (replacing an older one)."""
    golden.mkdir(parents=True, exist_ok=True)
    if (golden / 'outputs').exists():
        log(f'replacing the golden bag in {golden}')
        shutil.rmtree(golden / 'outputs')
    shutil.copytree(out / 'outputs', golden / 'outputs')
    (golden / 'golden.json').write_text(json.dumps(
        {'recorded_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
         'frames_in': report['frames_in'], 'frames_out': report['frames_out'],
         **report.get('demo', {})}, indent=2) + '\n')
    print(f'golden bag: {golden / "outputs"} ({report["frames_out"]} frames); check later runs '
          'with: make demo-check')
    return 0


def check_golden(out: Path, golden: Path, gate: str) -> int:
    """`fdr-bag diff` of this run's outputs against the golden bag with the limits in ``gate``."""
    diff = argparse.ArgumentParser(prog='fdr-bag diff')
    bag_diff.add_arguments(diff)
    return bag_diff.main_args(diff.parse_args(
        [str(out / 'outputs'), str(golden), '--json', str(out / 'diff.json'),
         *shlex.split(gate)]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m faster_deployment_ros.tools.demo',
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--input', help='video file (or folder of images)')
    p.add_argument('--model', help='ONNX detector (a bare file name is looked up in '
                   '../shared/models and ~/.cache/faster_deployment_ros/models)')
    p.add_argument('--out', default=str(ROOT / 'out' / 'demo'))
    p.add_argument('--rate', type=float, default=1.0, help='replay speed (1.0 = camera rate)')
    p.add_argument('--max-frames', type=int)
    p.add_argument('--params', default=DEFAULT_PARAMS, help='detector_node parameter YAML')
    p.add_argument('--frames', type=int, default=4, help='annotated PNG frames to write')
    p.add_argument('--node-timeout', type=float, default=90.0,
                   help='seconds for detector_node to load the model and subscribe')
    p.add_argument('--masks-topic', metavar='TOPIC',
                   help="record the detector's instance masks (e.g. /instance_mask, with "
                   'publish_masks true), check them against the detections and draw them')
    p.add_argument('--settle-timeout', type=float, default=15.0,
                   help='seconds to wait for outputs after the last frame')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--record-golden', metavar='DIR',
                   help="keep this run's outputs as the golden bag DIR/outputs")
    g.add_argument('--check-golden', metavar='DIR',
                   help='diff this run against the golden bag in DIR; exit 1 when a limit fails')
    p.add_argument('--gate', default=DEFAULT_GATE,
                   help=f'fdr-bag diff limits for --check-golden (default: {DEFAULT_GATE})')
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
