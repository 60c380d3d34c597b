"""Clean shutdown under load, measured.

The console-script detector under a 60 Hz camera, stopped by SIGINT or SIGTERM while frames are in
flight, N times per signal and queue policy.

Counts exit codes, the time from the signal to the exit, tracebacks and "Failed to publish"
lines in the node's output. docs/reliability.md quotes its summary.

    nice .venv/bin/python benchmarks/shutdown_runs.py --runs 50 --out out/shutdown_runs.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import cv2
from faster_deployment_ros.ros.middleware_env import apply_camera_env, private_domain
from faster_deployment_ros.tools.processes import node_command
from faster_deployment_ros.tools.report import save_results
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))


def one_run(rclpy, model: Path, frame: np.ndarray, policy: str, sig: int) -> dict:
    from faster_deployment_ros.core.image_codec import fill_image_msg
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            node_command(model=model, parameters={
                'model_family': 'yolox', 'full_policy': policy,
                'qos_reliability': 'best_effort', 'diagnostics_period': 0.5}),
            stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT),
            env=dict(os.environ, PYTHONUNBUFFERED='1'))
        node = rclpy.create_node('shutdown_runs_peer')
        pub = node.create_publisher(Image, 'image', 5)
        got = threading.Event()
        node.create_subscription(Detection2DArray, 'detections', lambda m: got.set(), 10)
        msg = fill_image_msg(Image(), frame, 'bgr8')
        answered = False
        try:
            deadline = time.monotonic() + 60
            while not got.is_set() and time.monotonic() < deadline and proc.poll() is None:
                pub.publish(msg)
                rclpy.spin_once(node, timeout_sec=1 / 60)
            answered = got.is_set()
            for _ in range(random.randint(3, 20)):  # frames in flight, at a random moment
                pub.publish(msg)
                rclpy.spin_once(node, timeout_sec=1 / 60)
            t0 = time.monotonic()
            proc.send_signal(sig)
            stacks = ''
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stacks = py_spy_dump(proc.pid)  # where it hangs, for the record
                proc.kill()
                rc = 'hung'
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            node.destroy_node()
        out.seek(0)
        text = out.read().decode(errors='replace')
    return {'policy': policy, 'signal': signal.Signals(sig).name, 'rc': rc,
            'exit_s': round(elapsed, 3), 'answered': answered,
            'traceback': 'Traceback' in text, 'failed_to_publish': 'Failed to publish' in text,
            'tail': text[-600:] if (rc != 0 or 'Traceback' in text) else '', 'stacks': stacks}


def py_spy_dump(pid: int) -> str:
    """Return the Python stacks of every thread of `pid` (py-spy, when installed)."""
    exe = Path(sys.executable).with_name('py-spy')
    if not exe.exists():
        return ''
    try:
        return subprocess.run([str(exe), 'dump', '--pid', str(pid)], capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f'py-spy failed: {exc}'


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=50, help='runs per signal and policy')
    ap.add_argument('--model', default=str(SHARED / 'models/yolox_nano_coco_416.onnx'))
    ap.add_argument('--image', default=str(SHARED / 'data/dog_bicycle_truck.jpg'))
    ap.add_argument('--policies', default='drop_oldest,block')
    ap.add_argument('--signals', default='SIGINT,SIGTERM')
    ap.add_argument('--out', default='out/shutdown_runs.json')
    args = ap.parse_args(argv)
    private_domain(os.environ)
    apply_camera_env(os.environ)
    import rclpy
    rclpy.init()
    frame = cv2.imread(args.image, cv2.IMREAD_COLOR)
    runs = []
    try:
        for policy in args.policies.split(','):
            for sig in [signal.Signals[n] for n in args.signals.split(',')]:
                for i in range(args.runs):
                    r = one_run(rclpy, Path(args.model), frame, policy, sig)
                    runs.append(r)
                    print(json.dumps({k: v for k, v in r.items() if k not in ('tail', 'stacks')}),
                          flush=True)
                    if r['stacks']:
                        print(r['stacks'], flush=True)
    finally:
        rclpy.try_shutdown()
    summary = {}
    for policy in args.policies.split(','):
        for sig in args.signals.split(','):
            rs = [r for r in runs if r['policy'] == policy and r['signal'] == sig]
            times = sorted(r['exit_s'] for r in rs)
            summary[f'{policy} {sig}'] = {
                'runs': len(rs), 'exit_0': sum(r['rc'] == 0 for r in rs),
                'tracebacks': sum(r['traceback'] for r in rs),
                'failed_to_publish': sum(r['failed_to_publish'] for r in rs),
                'exit_s_median': times[len(times) // 2] if times else None,
                'exit_s_max': times[-1] if times else None,
                'over_2s': sum(t > 2.0 for t in times)}
    save_results(Path(args.out), summary, runs=runs)
    return 0 if all(s['exit_0'] == s['runs'] and not s['tracebacks'] and not s['over_2s']
                    for s in summary.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
