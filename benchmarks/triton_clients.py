"""Many clients, one Triton server, against as many local ONNX Runtime sessions on the same cores.

    PYTHONPATH=. .venv/bin/python benchmarks/triton_clients.py [--clients 1,2,4] [--duration 6]

Starts a Triton server (test/support/triton_server.py: pytriton from .venv-triton, the model in
ONNX Runtime, dynamic batching up to --max-batch) on 127.0.0.1, then:

1. per request, serial: the bare backend's `infer` on one preprocessed frame: local ONNX
   Runtime, Triton over gRPC, Triton through system shared memory (what the network and the
   server add to one inference);
2. N clients: N PerceptionRuntimes (one worker each: what N nodes or N cameras send) with
   `backend: triton` into the one server, then with `backend: onnxruntime` and
   threads = cores / N each; first fed flat out (full_policy block, queue 2) for throughput,
   then each as a --rate Hz camera (drop_oldest, queue 1, the robot default) for latency and
   the share of frames delivered. Frames/s of all clients together, submit-to-result latency
   p50 / p99 over every frame, --duration s per row after 1 s of warm-up;
3. N cameras of one node: one detector_node process (config/yolox_nano_multicam.yaml, `inputs`
   listing N camera topics) with `backend: triton` and workers N (one request in flight per
   camera, so the server can batch the cameras' frames), then the same node on local ONNX
   Runtime with --node-local-workers workers (cores / workers threads each; the YAML ships
   workers 1). Each camera a --rate Hz stream
   (tools/multicam_bench.py: the shared plaza and campus videos alternating, best effort),
   publish-to-receipt latency p50 / p99 over every camera's frames, --duration s after
   --node-warmup s; "node cores" is the node process's CPU, "server cores" the server's
   (tritonserver, pytriton and its model processes) over the same window.

--sections picks which of serial, clients, node run.

Everything (server, clients, local sessions) shares this machine's cores: on a loopback the
server cannot add compute, only batching and its overhead; read the rows as what the client
path costs, not as what a GPU server would give.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys
from typing import Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'test'))
sys.path.insert(0, str(ROOT / 'benchmarks'))

from faster_deployment_ros.backends import create_backend  # noqa: E402
from faster_deployment_ros.ros.middleware_env import apply_camera_env, private_domain  # noqa: E402
from faster_deployment_ros.tools.frames import read_frames  # noqa: E402
from faster_deployment_ros.tools.graph_node import ros_context  # noqa: E402
from faster_deployment_ros.tools.multicam_bench import camera_frames, run_scenario  # noqa: E402
from runtime_clients import adapter_maker, clients, serial  # noqa: E402, I100
from support.triton_server import triton_server  # noqa: E402

SHARED = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))


make_adapter = adapter_maker('yolox')


def fmt_cores(x) -> str:
    return '-' if x is None else f'{x:.2f}'


def process_group(pgid: int) -> List[int]:
    """Return the pids of the running processes in process group `pgid` (the server's)."""
    pids = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def node_cameras(n: int, label: str, backend: str, model: str, frames: list,
                 args: argparse.Namespace, *extra: str,
                 server_pids: Sequence[int] = ()) -> Dict[str, float]:
    """One detector_node serving `n` cameras (`inputs`) at args.rate Hz each; its totals."""
    cams = [{'name': f'tcam{i}', 'topic': f'/tcam{i}/image_raw', 'out': f'/tcam{i}/detections',
             'frames': frames[i % 2][1], 'rate': args.rate, 'phase': i / (n * args.rate)}
            for i in range(n)]
    inputs = '[' + ','.join(c['topic'] for c in cams) + ']'
    bench = argparse.Namespace(out=str(ROOT / 'out' / 'triton_clients'),
                               warmup=args.node_warmup, duration=args.duration)
    r = run_scenario(f'1 node x {n} cameras, {label}',
                     [['-p', f'inputs:={inputs}', '-p', f'backend:={backend}', *extra]],
                     cams, bench, ROOT / 'config' / 'yolox_nano_multicam.yaml', model,
                     server_pids)
    lat = r['latency_ms'] or {}
    return {'fps': r['fps_out'], 'p50': lat.get('p50', float('nan')),
            'p99': lat.get('p99', float('nan')), 'frames': r['frames_out'],
            'sent': r['frames_in'], 'cores': r['node_cores'],
            'server_cores': r['helper_cores']}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', default=str(SHARED / 'models' / 'yolox_nano_coco_416.onnx'))
    ap.add_argument('--video',
                    default=str(SHARED / 'data' / 'pedestrians_plaza_1280x720_50fps.avi'))
    ap.add_argument('--clients', default='1,2,4')
    ap.add_argument('--duration', type=float, default=6.0, help='seconds per client row')
    ap.add_argument('--iters', type=int, default=40, help='serial requests per row')
    ap.add_argument('--rate', type=float, default=10.0,
                    help='camera rate (Hz) per client for the latency rows')
    ap.add_argument('--max-batch', type=int, default=8)
    ap.add_argument('--queue-delay-us', type=int, default=2000)
    ap.add_argument('--server-threads', type=int, default=0,
                    help='ONNX Runtime threads in the server (0: its default, all cores)')
    ap.add_argument('--node-warmup', type=float, default=3.0,
                    help='seconds of each node row not measured')
    ap.add_argument('--node-local-workers', default='1,2',
                    help='workers of the local ONNX Runtime node rows (one row each)')
    ap.add_argument('--sections', default='serial,clients,node',
                    help='which parts run: serial, clients, node')
    args = ap.parse_args(argv)
    sections = {x.strip() for x in args.sections.split(',') if x.strip()}
    node_workers = [int(w) for w in args.node_local_workers.split(',') if w.strip()]
    cores = len(os.sched_getaffinity(0))
    frames = read_frames(Path(args.video), 16, step=10)
    counts = [int(c) for c in args.clients.split(',') if c.strip()]
    extra = ['--max-batch', str(args.max_batch), '--queue-delay-us', str(args.queue_delay_us),
             '--threads', str(args.server_threads)]
    print(f'{cores} cores; {Path(args.model).name}; server: Triton (pytriton) on 127.0.0.1, '
          f'ONNX Runtime CPU inside, dynamic batching up to {args.max_batch}, queue delay '
          f'{args.queue_delay_us} us')
    with create_backend('onnxruntime', args.model) as probe:
        x, _ = make_adapter(probe).preprocess(frames[0])
    with triton_server(Path(args.model), extra=extra) as server:
        if 'serial' in sections:
            print('\nper request, serial (one preprocessed 416x416 frame), ms')
            print(f'{"path":<28} {"p50":>7} {"p99":>7}')
        rows = [('local ONNX Runtime', args.model, 'onnxruntime', {}),
                ('Triton, gRPC', server.model_path(), 'triton', {'shared_memory': 'false'}),
                ('Triton, shared memory', server.model_path(), 'triton',
                 {'shared_memory': 'true'})]
        for label, path, backend, opts in rows if 'serial' in sections else ():
            r = serial(path, backend, x, args.iters, **opts)
            print(f'{label:<28} {r["p50"]:7.1f} {r["p99"]:7.1f}', flush=True)

        for rate in (0.0, args.rate) if 'clients' in sections else ():
            what = ('fed flat out (block, queue 2): throughput' if not rate else
                    f'each a {rate:g} Hz camera (drop_oldest, queue 1): latency')
            print(f'\nN clients, each one PerceptionRuntime with 1 worker, {what}, '
                  f'{args.duration:g} s')
            print(f'{"N":>2} {"path":<34} {"frames/s":>9} {"p50 ms":>8} {"p99 ms":>8} '
                  f'{"delivered":>10}')
            for n in counts:
                threads = max(1, cores // n)
                for label, path, backend, opts in (
                        ('one Triton server (batching)', server.model_path(), 'triton', {}),
                        (f'{n} local ORT, {threads} thread(s) each', args.model, 'onnxruntime',
                         {'threads': threads})):
                    r = clients(path, backend, n, frames, args.duration, rate,
                                family='yolox', **opts)
                    share = f'{r["frames"]}/{r["sent"]}' if rate else ''
                    print(f'{n:>2} {label:<34} {r["fps"]:9.1f} {r["p50"]:8.1f} '
                          f'{r["p99"]:8.1f} {share:>10}', flush=True)

        if 'node' in sections:
            print(f'\nN cameras of one detector_node (inputs), each a {args.rate:g} Hz stream, '
                  f'{args.duration:g} s after {args.node_warmup:g} s')
            print(f'{"N":>2} {"path":<34} {"frames/s":>9} {"p50 ms":>8} {"p99 ms":>8} '
                  f'{"delivered":>10} {"node cores":>10} {"server cores":>12}')
            cams = camera_frames(SHARED)
            private_domain(os.environ)
            apply_camera_env(os.environ)
            with ros_context():
                for n in counts:
                    rows = [(f'Triton, workers {n}', 'triton', server.model_path(),
                             ['-p', f'workers:={n}', '-p', 'triton.timeout_s:=5.0'],
                             process_group(server.proc.pid))]
                    for w in node_workers:  # more workers split the cores, as autotune does
                        threads = max(1, cores // w)
                        rows.append((f'local ORT, workers {w} x {threads} thread(s)',
                                     'onnxruntime', args.model,
                                     ['-p', f'workers:={w}', '-p', f'threads:={threads}'],
                                     []))
                    for label, backend, model, extra, pids in rows:
                        r = node_cameras(n, label, backend, model, cams, args, *extra,
                                         server_pids=pids)
                        print(f'{n:>2} {label:<34} {r["fps"]:9.1f} {r["p50"]:8.1f} '
                              f'{r["p99"]:8.1f} {r["frames"]:>5}/{r["sent"]:<4} '
                              f'{fmt_cores(r["cores"]):>10} {fmt_cores(r["server_cores"]):>12}',
                              flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
