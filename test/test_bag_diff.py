"""
`fdr-bag diff`: matching and metrics on constructed messages, the CLI gate on bags.

Bags are written with rosbags; at the end, real node runs (those of test_edge_backends_node)
are diffed against each other.
"""
from __future__ import annotations

import json

import cv2
from faster_deployment_ros.tools import bag_cli
from faster_deployment_ros.tools.bag_diff import (check, depth_errors, Dets, diff_detections,
                                                  match_greedy, read_outputs, Thresholds)
import numpy as np
import pytest
from support.bag_diff import depth_image, detections_bag, write_bag

S0 = 1_700_000_000_000_000_000
GOLDEN = {
    S0: [('person', 0.90, 10, 10, 50, 110), ('person', 0.80, 100, 20, 140, 120),
         ('car', 0.70, 200, 50, 300, 120)],
    S0 + 100_000_000: [('person', 0.85, 12, 10, 52, 110)],
    S0 + 200_000_000: [],
}


def dets(*rows) -> Dets:
    return Dets([r[0] for r in rows], np.array([r[1] for r in rows], np.float64),
                np.array([r[2:] for r in rows], np.float64).reshape(-1, 4))


def frames(spec):
    return {(s, 'camera'): dets(*d) for s, d in spec.items()}


def test_greedy_matching_same_class_highest_iou_first():
    gold = dets(('person', 0.9, 0, 0, 10, 10), ('person', 0.9, 4, 0, 14, 10),
                ('car', 0.9, 0, 0, 10, 10))
    # run box 0 overlaps gold 0 (IoU 0.82) and gold 1 (0.43); run box 1 sits on gold 1 exactly.
    run = dets(('person', 0.8, 1, 0, 11, 10), ('person', 0.8, 4, 0, 14, 10),
               ('dog', 0.8, 0, 0, 10, 10))
    pairs = match_greedy(run, gold, iou=0.5)
    assert [(i, j) for i, j, _ in pairs] == [(1, 1), (0, 0)]
    assert pairs[0][2] == pytest.approx(1.0) and pairs[1][2] == pytest.approx(9 / 11)
    # the dog lies exactly on the car: another class, never paired
    assert match_greedy(run, gold, iou=0.95) == [(1, 1, pytest.approx(1.0))]
    assert match_greedy(dets(), gold) == [] and match_greedy(run, dets()) == []


def test_identical_outputs_agree_exactly():
    r = diff_detections(frames(GOLDEN), frames(GOLDEN))
    o = r['overall']
    assert (o['golden'], o['run'], o['matched']) == (4, 4, 4)
    assert o['precision'] == o['recall'] == o['mean_iou'] == 1.0
    assert o['box_drift_px_max'] == 0.0 and o['score_drift_max_abs'] == 0.0
    assert r['frames_compared'] == 3 and r['frames_missing_in_run'] == 0
    assert set(r['per_class']) == {'person', 'car'}
    assert check(r, Thresholds(min_recall=1, min_precision=1, max_box_drift_px=0,
                               max_score_drift=0, max_missing_frames=0, per_class=True)) == []


def test_drift_misses_extras_and_missing_frames():
    run = {
        # person 0 moved 2 px right and scored 0.05 lower; person 1 missed; an extra dog
        S0: [('person', 0.85, 12, 10, 52, 110), ('car', 0.70, 200, 50, 300, 120),
             ('dog', 0.6, 400, 400, 450, 450)],
        # frame S0 + 100 ms missing in the run; a frame the golden bag does not have
        S0 + 200_000_000: [],
        S0 + 300_000_000: [('person', 0.9, 0, 0, 5, 5)],
    }
    r = diff_detections(frames(run), frames(GOLDEN))
    o, person = r['overall'], r['per_class']['person']
    assert r['frames_compared'] == 2
    assert r['frames_missing_in_run'] == 1 and r['frames_missing_in_golden'] == 1
    # compared frames: golden has 3 detections (person, person, car), run 3 (person, car, dog)
    assert (o['golden'], o['run'], o['matched'], o['missed'], o['false_positives']) == \
        (3, 3, 2, 1, 1)
    assert o['recall'] == pytest.approx(2 / 3) and o['precision'] == pytest.approx(2 / 3)
    assert person['recall'] == 0.5 and person['precision'] == 1.0
    assert person['box_drift_px_max'] == pytest.approx(2.0)
    assert person['score_drift_mean'] == pytest.approx(-0.05)
    assert person['mean_iou'] == pytest.approx(38 / 42)
    assert r['per_class']['dog']['precision'] == 0.0 and r['per_class']['dog']['recall'] is None
    assert r['per_class']['car']['box_drift_px_max'] == 0.0
    fails = check(r, Thresholds(min_recall=0.98, max_box_drift_px=1.0, max_missing_frames=0))
    assert len(fails) == 3 and 'recall 0.6667 < 0.98' in fails[1]
    assert check(r, Thresholds(min_recall=0.6, max_box_drift_px=2.0)) == []
    assert check(r, Thresholds(min_recall=0.6, per_class=True)) != []  # person recall 0.5
    rows = {f['stamp_ns']: f for f in r['per_frame']}
    assert rows[S0]['matched'] == 2 and rows[S0 + 100_000_000]['missing_in'] == 'run'


def test_id_switches_with_golden_ids_as_truth(tmp_path, capsys):
    # two people walking; the run swaps their ids at the 4th frame and gives person b a new id
    # at the 6th: golden b is matched to run 2, then 1, then 7 (2 switches), golden a to 1, 2
    # (1 switch)
    frames_, gold_ids, run_ids = {}, {}, {}
    for k in range(8):
        s = S0 + k * 100_000_000
        frames_[s] = [('person', 0.9, 10 + 5 * k, 10, 50 + 5 * k, 110),
                      ('person', 0.8, 300 - 5 * k, 20, 340 - 5 * k, 120)]
        gold_ids[s] = ['1', '2']
        run_ids[s] = ['1', '2'] if k < 3 else ['2', '1'] if k < 5 else ['2', '7']
    golden = detections_bag(tmp_path / 'golden', frames_, ids=gold_ids)
    run = detections_bag(tmp_path / 'run', frames_, ids=run_ids)
    r = diff_detections(read_outputs(run).frames, read_outputs(golden).frames)
    assert r['tracked'] == {'run': True, 'golden': True}
    assert r['tracks'] == {'id_switches': 3, 'golden_tracks': 2, 'run_tracks': 3,
                           'golden_tracks_matched': 2}
    assert [f['id_switches'] for f in r['per_frame']] == [0, 0, 0, 2, 0, 1, 0, 0]
    assert r['overall']['recall'] == 1.0  # the boxes themselves agree
    same = diff_detections(read_outputs(golden).frames, read_outputs(golden).frames)
    assert same['tracks']['id_switches'] == 0
    args = ['diff', str(run), str(golden), '--no-plot', '--json', str(tmp_path / 'd.json')]
    assert bag_cli.main(args + ['--max-id-switches', '3']) == 0
    assert 'ID switches 3 (golden ids as truth)' in capsys.readouterr().out
    assert bag_cli.main(args + ['--max-id-switches', '2']) == 1
    assert '3 ID switches > 2' in capsys.readouterr().out
    # untracked bags: no track metrics, and the limit says why it cannot be checked
    plain = detections_bag(tmp_path / 'plain', frames_)
    r = diff_detections(read_outputs(plain).frames, read_outputs(golden).frames)
    assert r['tracks'] is None and r['tracked'] == {'run': False, 'golden': True}
    assert bag_cli.main(['diff', str(plain), str(golden), '--no-plot', '--json',
                         str(tmp_path / 'p.json'), '--max-id-switches', '0']) == 1
    assert 'needs track ids (Detection2D.id) in both bags (run: no, golden: yes)' in \
        capsys.readouterr().out


def test_box_drift_percentile_gate_lets_one_outlier_pass():
    gold = {S0 + i: [('person', 0.9, 10, 10, 50, 110)] for i in range(200)}
    run = dict(gold)
    run[S0] = [('person', 0.9, 10, 10, 50, 90)]  # one box 20 px shorter (IoU 0.8)
    r = diff_detections(frames(run), frames(gold))
    o = r['overall']
    assert o['box_drift_px_max'] == 20.0 and o['box_drift_px_p99'] == 0.0
    assert check(r, Thresholds(max_box_drift_px=2)) == \
        ['overall: box drift (max) 20.000 px > 2 px']
    assert check(r, Thresholds(max_box_drift_px=2, box_drift_stat='p99')) == []


def test_oriented_boxes_compared_as_rotated_rectangles(tmp_path, capsys):
    """A regression in theta alone is caught; another description of the same box is not one."""
    golden = {S0 + k: [('plane', 0.9, 100, 100, 300, 140, 0.5),
                       ('ship', 0.8, 400, 300, 460, 320, -0.3)] for k in range(5)}
    # the same rectangles described as (h, w, theta + pi/2) and (w, h, theta + pi)
    same = {s: [('plane', 0.9, 180, 20, 220, 220, 0.5 + np.pi / 2),
                ('ship', 0.8, 400, 300, 460, 320, -0.3 + np.pi)] for s in golden}
    # the plane turned by 0.25 rad more: centre and size unchanged
    turned = {s: [('plane', 0.9, 100, 100, 300, 140, 0.75), golden[s][1]] for s in golden}
    gbag = detections_bag(tmp_path / 'golden', golden)
    r = diff_detections(read_outputs(detections_bag(tmp_path / 'same', same)).frames,
                        read_outputs(gbag).frames)
    assert r['oriented'] and 'rotated' in r['matching']
    o = r['overall']
    assert o['matched'] == 10 and o['mean_iou'] == pytest.approx(1.0, abs=1e-6)
    assert o['box_drift_px_max'] == pytest.approx(0.0, abs=1e-6)
    r = diff_detections(read_outputs(detections_bag(tmp_path / 'turned', turned)).frames,
                        read_outputs(gbag).frames)
    plane = r['per_class']['plane']
    # a 200x40 bar turned by 0.25 rad about its centre: IoU ~0.58, corners ~25 px away
    assert plane['mean_iou'] < 0.7 and plane['box_drift_px_max'] > 20
    assert r['per_class']['ship']['box_drift_px_max'] == pytest.approx(0.0, abs=1e-9)
    args = ['diff', str(tmp_path / 'turned'), str(gbag), '--no-plot', '--json',
            str(tmp_path / 'd.json'), '--max-box-drift-px', '2']
    assert bag_cli.main(args) == 1
    assert 'box drift (max)' in capsys.readouterr().out
    assert bag_cli.main(args[:-2] + ['--min-recall', '1', '--iou', '0.7']) == 1  # IoU < 0.7
    assert bag_cli.main(['diff', str(tmp_path / 'same'), str(gbag), '--no-plot', '--json',
                         str(tmp_path / 'e.json'), '--max-box-drift-px', '0.001',
                         '--min-recall', '1', '--iou', '0.99']) == 0
    # read as axis-aligned (theta ignored) the turned plane would pass: theta is what caught it
    flat = {k: Dets(d.classes, d.scores, d.boxes, d.ids) for k, d in
            read_outputs(tmp_path / 'turned').frames.items()}
    gflat = {k: Dets(d.classes, d.scores, d.boxes, d.ids) for k, d in
             read_outputs(gbag).frames.items()}
    assert diff_detections(flat, gflat)['overall']['box_drift_px_max'] == 0.0


def test_depth_errors_on_valid_pixels_only():
    gold = np.full((4, 5), 2.0)
    gold[0, 0] = 0.0          # invalid in golden
    run = gold * 1.1
    run[1, 1] = np.nan        # invalid in the run
    run[2, 2] = 3.0           # ratio 1.5: outside delta < 1.25
    e = depth_errors(run, gold)
    assert e['valid_pixels'] == 18
    assert e['abs_rel'] == pytest.approx((17 * 0.1 + 0.5) / 18)
    assert e['delta1'] == pytest.approx(17 / 18)
    assert depth_errors(run[:3], gold)['shape_mismatch'] == [[3, 5], [4, 5]]


def test_cli_gate_on_bags(tmp_path, capsys):
    golden = detections_bag(tmp_path / 'golden', GOLDEN)
    same = detections_bag(tmp_path / 'same', GOLDEN)
    worse = dict(GOLDEN)
    worse[S0] = GOLDEN[S0][:2]  # the car is lost
    worse_bag = detections_bag(tmp_path / 'worse', worse)

    args = ['--min-recall', '0.98', '--min-precision', '0.98', '--max-box-drift-px', '2',
            '--max-missing-frames', '0']
    assert bag_cli.main(['diff', str(same), str(golden), *args]) == 0
    out = capsys.readouterr().out
    assert 'gate passed' in out and 'ALL' in out
    report = json.loads((tmp_path / 'diff.json').read_text())
    assert report['gate']['passed'] and report['overall']['recall'] == 1.0
    png = cv2.imread(str(tmp_path / 'diff.png'))
    assert png is not None and png.shape[0] > 100

    js = tmp_path / 'w' / 'worse.json'
    assert bag_cli.main(['diff', str(worse_bag), str(golden), *args, '--json', str(js)]) == 1
    out = capsys.readouterr().out
    assert 'GATE FAILED' in out and 'car' in out
    report = json.loads(js.read_text())
    assert not report['gate']['passed'] and report['per_class']['car']['recall'] == 0.0
    assert report['overall']['recall'] == pytest.approx(0.75)
    assert (tmp_path / 'w' / 'worse.png').is_file()
    # no limits given: report only, exit 0
    assert bag_cli.main(['diff', str(worse_bag), str(golden), '--no-plot',
                         '--json', str(tmp_path / 'x.json')]) == 0


def test_replay_out_dir_and_topic_selection(tmp_path, capsys):
    from support.bag_diff import detection_array
    two = write_bag(tmp_path / 'run' / 'outputs', {
        '/a/detections': ('vision_msgs/msg/Detection2DArray', [detection_array(S0, [])]),
        '/b/detections': ('vision_msgs/msg/Detection2DArray',
                          [detection_array(S0, [('person', 0.5, 0, 0, 9, 9)])])})
    assert bag_cli.main(['diff', str(tmp_path / 'run'), str(two), '--no-plot']) == 2
    assert 'several output topics' in capsys.readouterr().err
    assert read_outputs(tmp_path / 'run', '/b/detections').frames[(S0, 'camera')].classes == \
        ['person']
    assert bag_cli.main(['diff', str(tmp_path / 'run'), str(two), '--no-plot',
                         '--topic', '/b/detections', '--min-recall', '1']) == 0
    assert bag_cli.main(['diff', str(tmp_path / 'nothing'), str(two)]) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_depth_bags(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gold = [rng.uniform(1, 5, (6, 8)) for _ in range(3)]
    golden = write_bag(tmp_path / 'golden', {'/depth': (
        'sensor_msgs/msg/Image', [depth_image(S0 + i, d) for i, d in enumerate(gold)])})
    run = write_bag(tmp_path / 'run', {'/depth': (
        'sensor_msgs/msg/Image', [depth_image(S0 + i, d * 1.02) for i, d in enumerate(gold)])})
    assert bag_cli.main(['diff', str(run), str(golden), '--max-abs-rel', '0.03',
                         '--min-delta1', '0.99', '--json', str(tmp_path / 'd.json')]) == 0
    report = json.loads((tmp_path / 'd.json').read_text())
    assert report['kind'] == 'depth' and report['frames_compared'] == 3
    assert report['overall']['abs_rel'] == pytest.approx(0.02, rel=1e-4)
    assert report['overall']['delta1'] == 1.0
    assert bag_cli.main(['diff', str(run), str(golden), '--max-abs-rel', '0.01',
                         '--json', str(tmp_path / 'd2.json')]) == 1
    assert 'abs_rel 0.02 > 0.01' in capsys.readouterr().out


# --- real node runs ------------------------------------------------------------------------------
# The YOLOX-nano runs of test_edge_backends_node (detector_node on 12 campus frames, reliable
# QoS, blocking queue: no frame dropped), shared with it within a session, diffed with the CLI.
# The figures printed here are the ones in docs/edge_backends.md.

@pytest.fixture(scope='module')
def edge(campus_video, yolox_model, tmp_path_factory):
    pytest.importorskip('rclpy')
    from support.edge_assets import converted
    import test_edge_backends_node as e
    bag = e.campus_bag(campus_video, tmp_path_factory)

    def run(backend: str, precision: str, *extra: str):
        if backend == 'onnxruntime':
            model = yolox_model
        else:
            model = converted(backend, yolox_model, precision, tmp_path_factory.mktemp('m'))
        return e.run_outputs(bag, tmp_path_factory.mktemp('node') / backend,
                             f'yolox_nano_{backend}.yaml', model, *extra)
    return run


def diff(run_bag, golden_bag, tmp_path, name, *limits) -> tuple:
    js = tmp_path / f'{name}.json'
    code = bag_cli.main(['diff', str(run_bag), str(golden_bag), '--json', str(js), *limits])
    r = json.loads(js.read_text())
    o = r['overall']
    print(f'{name}: exit {code}, golden {o["golden"]}, run {o["run"]}, precision '
          f'{o["precision"]}, recall {o["recall"]}, mean IoU {o["mean_iou"]}, score drift '
          f'{o["score_drift_max_abs"]}, box drift {o["box_drift_px_max"]} px '
          f'(p95 {o["box_drift_px_p95"]})')
    return code, r


GATE = ['--min-recall', '0.98', '--min-precision', '0.98', '--max-box-drift-px', '2',
        '--max-score-drift', '0.05', '--max-missing-frames', '0']
# (backend, precision, extra, largest box drift px, largest score drift) measured here + margin
EDGE_CASES = [
    ('ncnn', 'fp32', (), 0.01, 1e-4),
    ('ncnn', 'fp16', (), 0.5, 0.02),
    ('rknn', 'fp16', ('rknn.simulator:=true',), 0.5, 0.02),
]


@pytest.mark.ros
@pytest.mark.parametrize('backend,precision,extra,max_px,max_score', EDGE_CASES,
                         ids=[f'{b}-{p}' for b, p, *_ in EDGE_CASES])
def test_edge_backend_runs_pass_the_gate_against_onnxruntime(edge, tmp_path, backend, precision,
                                                             extra, max_px, max_score):
    golden = edge('onnxruntime', 'fp32')
    code, r = diff(edge(backend, precision, *extra), golden, tmp_path,
                   f'{backend}-{precision} vs onnxruntime', *GATE)
    o = r['overall']
    assert code == 0, r['gate']
    assert r['frames_compared'] == 12 and o['golden'] >= 24
    assert o['recall'] == 1.0 and o['precision'] == 1.0
    assert o['box_drift_px_max'] <= max_px and o['score_drift_max_abs'] <= max_score
    assert (tmp_path / f'{backend}-{precision} vs onnxruntime.png').is_file()


@pytest.mark.ros
def test_ncnn_fp16_against_rknn_fp16(edge, tmp_path):
    code, r = diff(edge('ncnn', 'fp16'), edge('rknn', 'fp16', 'rknn.simulator:=true'), tmp_path,
                   'ncnn-fp16 vs rknn-fp16', *GATE)
    assert code == 0, r['gate']
    assert r['overall']['recall'] == 1.0 and r['overall']['box_drift_px_max'] <= 0.5


@pytest.mark.ros
def test_raised_conf_threshold_fails_the_gate(edge, tmp_path):
    """A configuration that loses detections: conf_threshold 0.3 -> 0.6 on the same model."""
    golden = edge('onnxruntime', 'fp32')
    code, r = diff(edge('onnxruntime', 'fp32', 'conf_threshold:=0.6'), golden, tmp_path,
                   'onnxruntime conf 0.6 vs 0.3', *GATE)
    o = r['overall']
    assert code == 1 and not r['gate']['passed']
    assert any('recall' in f for f in r['gate']['failures'])
    assert o['recall'] < 0.98
    # what it still finds is what the golden run found, unmoved
    assert o['precision'] == 1.0 and o['box_drift_px_max'] == 0.0
