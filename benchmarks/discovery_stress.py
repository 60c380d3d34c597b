"""Start pairs of ROS processes together, over and over: do they match and do they exit.

Each trial starts a subscriber process and a publisher process at the same moment (as a test or
the demo starts a node and its player) in a fresh domain, waits up to 12 s for the publisher to
see the subscription, then both destroy their node and shut down. Trials alternate between the
transports compared: `profile` (config/fastdds_large_data.xml, what ros/middleware_env.py
prescribes) and `large_data` (FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA). A process that does not
exit within 20 s is a hang; with --stacks its threads' native stacks are written with gdb.

  .venv/bin/python benchmarks/discovery_stress.py --trials 400 --stacks --out out/discovery_stress
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import subprocess
import sys
import time

from faster_deployment_ros.ros.middleware_env import profile_path, profile_var, TRANSPORT_VARS

SUB = """
import sys, threading, rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
rclpy.init()
n = Node('stress_sub')
n.create_subscription(Image, '/image', lambda m: None, 1)
stop = threading.Event()  # stdin closed: stop (a signal could race rclpy's own handlers)
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    rclpy.spin_once(n, timeout_sec=0.1)
n.destroy_node()
rclpy.shutdown()
"""
PUB = """
import time, rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
rclpy.init()
n = Node('stress_pub')
p = n.create_publisher(Image, '/image', 1)
t = time.monotonic()
while p.get_subscription_count() == 0 and time.monotonic() - t < 12:
    time.sleep(0.01)
print(p.get_subscription_count(), flush=True)
n.destroy_node()
rclpy.shutdown()
"""


def mode_env(mode: str, domain: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in TRANSPORT_VARS}
    env['ROS_DOMAIN_ID'] = str(domain)
    if mode == 'profile':
        env[profile_var()] = str(profile_path())
    else:
        env['FASTDDS_BUILTIN_TRANSPORTS'] = 'LARGE_DATA'
    return env


def stacks(pid: int) -> str:
    return subprocess.run(['gdb', '-p', str(pid), '-batch', '-ex', 'thread apply all bt 25'],
                          capture_output=True, text=True).stdout


def finish(proc: subprocess.Popen, out: Path, name: str, want_stacks: bool) -> bool:
    """Wait for `proc` to exit (20 s); True if it did. A hang is killed, its stacks kept."""
    try:
        proc.wait(timeout=20)
        return True
    except subprocess.TimeoutExpired:
        if want_stacks:
            (out / f'{name}.txt').write_text(stacks(proc.pid))
        proc.kill()
        proc.wait()
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--trials', type=int, default=600)
    ap.add_argument('--modes', default='profile,large_data')
    ap.add_argument('--out', default='out/discovery_stress')
    ap.add_argument('--stacks', action='store_true', help='gdb stacks of hung processes')
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    modes = a.modes.split(',')
    counts = {m: {'trials': 0, 'unmatched': 0, 'hung': 0} for m in modes}
    for i in range(a.trials):
        mode = modes[i % len(modes)]
        env = mode_env(mode, random.randint(1, 100))
        sub = subprocess.Popen([sys.executable, '-c', SUB], env=env, stdin=subprocess.PIPE)
        pub = subprocess.Popen([sys.executable, '-c', PUB], env=env, stdout=subprocess.PIPE,
                               text=True)
        t0 = time.monotonic()
        exited = finish(pub, out, f'hang_pub_{mode}_{i}', a.stacks)
        matched = exited and pub.stdout.read().strip() not in ('', '0')
        sub.stdin.close()  # the subscriber destroys its node and shuts down
        exited = finish(sub, out, f'hang_sub_{mode}_{i}', a.stacks) and exited
        c = counts[mode]
        c['trials'] += 1
        c['unmatched'] += not matched
        c['hung'] += not exited
        if not (matched and exited):
            print(f'trial {i} {mode}: matched={matched} exited={exited} '
                  f'({time.monotonic() - t0:.1f} s)', flush=True)
        if i % 50 == 49:
            print(json.dumps(counts), flush=True)
    print(json.dumps(counts))
    (out / 'counts.json').write_text(json.dumps(counts, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
