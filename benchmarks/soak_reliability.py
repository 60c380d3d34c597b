"""Soak: the console-script detector under a steady camera for N frames.

Its memory (RSS) and thread count are sampled from /proc, what came out is counted, and its
/diagnostics are followed.

Memory is judged after a warm-up (allocators and caches fill during the first minute): the
slope of RSS over the rest, in MB per minute. Not a test: it runs for minutes.

    nice .venv/bin/python benchmarks/soak_reliability.py --frames 10000 --rate 60 \
        --out out/soak_reliability.json
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time

import cv2
from faster_deployment_ros.ros.middleware_env import apply_camera_env, private_domain
from faster_deployment_ros.tools.processes import node_command, proc_stat, stop_process
from faster_deployment_ros.tools.report import save_results
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))


def proc_status(pid: int) -> dict:
    """RSS (MB) and threads of the node process; RuntimeError once it has exited."""
    st = proc_stat(pid)
    if st is None:
        raise RuntimeError(f'the node process {pid} exited during the soak')
    return {'rss_mb': st.rss_bytes / 2**20, 'threads': st.threads}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=10000)
    ap.add_argument('--rate', type=float, default=60.0, help='camera rate (Hz)')
    ap.add_argument('--policy', default='drop_oldest')
    ap.add_argument('--reliability', default='reliable', help='input QoS: reliable, best_effort')
    ap.add_argument('--warmup-s', type=float, default=60.0)
    ap.add_argument('--model', default=str(SHARED / 'models/yolox_nano_coco_416.onnx'))
    ap.add_argument('--video', default=str(SHARED / 'data/pedestrians_plaza_1280x720_50fps.avi'))
    ap.add_argument('--out', default='out/soak_reliability.json')
    args = ap.parse_args(argv)
    private_domain(os.environ)
    apply_camera_env(os.environ)

    from diagnostic_msgs.msg import DiagnosticArray
    from faster_deployment_ros.core.image_codec import fill_image_msg
    from faster_deployment_ros.tools.frames import read_frames
    import rclpy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    frames = [cv2.resize(f, (640, 360)) for f in read_frames(Path(args.video), 50, 1)]
    msgs = [fill_image_msg(Image(), f, 'bgr8') for f in frames]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        node_command(model=args.model, parameters={
            'model_family': 'yolox', 'full_policy': args.policy,
            'qos_reliability': args.reliability, 'diagnostics_period': 1.0}),
        stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    rclpy.init()
    node = rclpy.create_node('soak_peer')
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    pub = node.create_publisher(Image, 'image', QoSProfile(
        depth=10, reliability=ReliabilityPolicy.BEST_EFFORT if args.reliability == 'best_effort'
        else ReliabilityPolicy.RELIABLE))
    received = [0]
    diags: list = []
    node.create_subscription(Detection2DArray, 'detections',
                             lambda m: received.__setitem__(0, received[0] + 1), 50)
    node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    spin = threading.Thread(target=rclpy.spin, args=(node,), daemon=True)
    spin.start()
    samples = []
    try:
        while pub.get_subscription_count() == 0 and proc.poll() is None:
            time.sleep(0.1)
        t0, start_ns = time.monotonic(), time.time_ns()
        period = 1.0 / args.rate
        next_sample = t0
        for i in range(args.frames):
            target = t0 + i * period
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            m = msgs[i % len(msgs)]
            # a camera's clock: regular stamps, so stamp gaps mean frames that never arrived
            ns = start_ns + int(i * period * 1e9)
            m.header.stamp.sec, m.header.stamp.nanosec = divmod(ns, 10 ** 9)
            pub.publish(m)
            if time.monotonic() >= next_sample:
                s = proc_status(proc.pid)
                s.update(t_s=round(time.monotonic() - t0, 1), sent=i + 1, received=received[0])
                samples.append(s)
                next_sample += 10.0
        time.sleep(2.0)  # the last results and a diagnostics update
        s = proc_status(proc.pid)
        s.update(t_s=round(time.monotonic() - t0, 1), sent=args.frames, received=received[0])
        samples.append(s)
        last_status = None
        for arr in reversed(diags):
            st = [x for x in arr.status if x.name.startswith('detector')]
            if st:
                last_status = {'level': st[0].level[0], 'message': st[0].message,
                               'values': {kv.key: kv.value for kv in st[0].values
                                          if not kv.key.startswith('hop_')}}
                break
    finally:
        rc = stop_process(proc, timeout=30)
        node.destroy_node()
        rclpy.try_shutdown()
    after = [s for s in samples if s['t_s'] >= args.warmup_s] or samples
    if len(after) >= 2:
        slope = np.polyfit([s['t_s'] / 60.0 for s in after], [s['rss_mb'] for s in after], 1)[0]
    else:
        slope = float('nan')
    summary = {
        'frames_sent': args.frames, 'detections_received': received[0], 'rate_hz': args.rate,
        'policy': args.policy, 'reliability': args.reliability, 'duration_s': samples[-1]['t_s'],
        'rss_mb_first': samples[0]['rss_mb'], 'rss_mb_last': samples[-1]['rss_mb'],
        'rss_slope_mb_per_min_after_warmup': round(float(slope), 3),
        'threads_min': min(s['threads'] for s in samples),
        'threads_max': max(s['threads'] for s in samples),
        'exit_code': rc, 'last_diagnostics': last_status}
    save_results(Path(args.out), summary, samples=samples)
    return 0


if __name__ == '__main__':
    sys.exit(main())
