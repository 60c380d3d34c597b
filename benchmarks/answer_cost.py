"""What a Python receiver pays to deserialize the detector's answers, and ORT spinning's share.

Issue #23, item 2: the outside view's transport floor answers each frame with an empty
vision_msgs/Detection2DArray, the node with the frame's detections. For 30 frames of
../shared/data/pedestrians_plaza_1280x720_50fps.avi and each model (its shipped conf): the
detections per frame, the answer's CDR size, and `rclpy.serialization.deserialize_message`
p50 (what an rclpy subscriber's take does), against the empty answer.

With --spin-ab: the same model's plain ONNX Runtime inference (2 intra-op threads, one tensor,
paced 80 ms apart), once with ORT's default spinning threads and once without (the node's
setting on <= 4 cores), alternating processes, median of 40 runs each.

  .venv/bin/python benchmarks/answer_cost.py [--spin-ab]
"""
import argparse
from pathlib import Path
import statistics
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODELS = (('yolox', ROOT.parent / 'shared/models/yolox_nano_coco_416.onnx', 0.3),
          ('yolov8', ROOT / '.cache/models/yolov8n.onnx', 0.25))
VIDEO = ROOT.parent / 'shared/data/pedestrians_plaza_1280x720_50fps.avi'


def answers() -> None:
    from faster_deployment_ros.ros.detection_msgs import to_detection_array
    from faster_deployment_ros.tools.benchmark.probe import detector, make_adapter, ort_session
    from faster_deployment_ros.tools.frames import read_frames
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2DArray

    def p50_ms(raw: bytes, repeats: int) -> float:
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            deserialize_message(raw, Detection2DArray)
            ts.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(ts)

    frames = read_frames(str(VIDEO), 30, 5)
    empty = serialize_message(Detection2DArray())
    print(f'empty answer: {len(empty)} bytes, deserialize p50 {p50_ms(empty, 200):.3f} ms')
    for family, model, conf in MODELS:
        session = ort_session(str(model), 2)
        detect = detector(session, make_adapter(session, family, conf))
        counts, sizes, costs = [], [], []
        for f in frames:
            msg = to_detection_array(detect(f), Header(frame_id='cam'))
            raw = serialize_message(msg)
            counts.append(len(msg.detections))
            sizes.append(len(raw))
            costs.append(p50_ms(raw, 20))
        print(f'{model.name} (conf {conf}): detections per frame median '
              f'{statistics.median(counts)} ({min(counts)}-{max(counts)}), '
              f'{statistics.median(sizes):.0f} bytes, deserialize p50 '
              f'{statistics.median(costs):.2f} ms')


def infer_once(model: str, spinning: str) -> float:
    import numpy as np
    from faster_deployment_ros.tools.benchmark.probe import ort_session
    s = ort_session(model, 2, spinning=spinning == '1')
    inp = s.get_inputs()[0]
    x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in inp.shape],
                                        dtype=np.float32)
    for _ in range(5):
        s.run(None, {inp.name: x})
    ts = []
    for _ in range(40):
        t0 = time.perf_counter()
        s.run(None, {inp.name: x})
        ts.append(time.perf_counter() - t0)
        time.sleep(0.08)
    return 1e3 * statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--spin-ab', action='store_true', help='also ORT spinning vs not, YOLOv8n')
    ap.add_argument('--infer-once', nargs=2, metavar=('MODEL', 'SPINNING'), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.infer_once:
        print(f'{infer_once(*args.infer_once):.2f}')
        return
    answers()
    if args.spin_ab:
        model = str(MODELS[1][1])
        for rnd in (1, 2):
            row = []
            for spinning in ('1', '0'):
                out = subprocess.run([sys.executable, __file__, '--infer-once', model, spinning],
                                     capture_output=True, text=True, check=True)
                row.append(f'{"spinning" if spinning == "1" else "no spinning"} '
                           f'{out.stdout.strip()} ms')
            print(f'{Path(model).name} inference p50, round {rnd}: ' + ', '.join(row))


if __name__ == '__main__':
    main()
