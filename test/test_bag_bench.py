"""
`fdr-bag bench`: the peak-rate search, and one short real run of detector_node fed from a bag.

Figures are printed, never asserted: speed lives in docs/performance.md.
"""
from __future__ import annotations

import json
import os

from faster_deployment_ros.tools import bag_cli
from faster_deployment_ros.tools.bag_bench import (format_table, median_trial, peak_search,
                                                   sustained)
import pytest


def capacity(limit_hz: float, tried: list):
    """Return a node that answers every frame up to limit_hz and a third fewer above it."""
    def run(hz):
        tried.append(hz)
        n = 100
        dropped = 0 if hz <= limit_hz else 33
        return {'target_hz': hz, 'input_fps': hz, 'output_fps': hz * (n - dropped) / n,
                'frames_in': n, 'dropped': dropped, 'drop_frac': dropped / n,
                'order_violations': 0}
    return run


@pytest.mark.parametrize('limit', [7.0, 30.0, 42.0, 250.0])
def test_peak_search_brackets_the_sustained_rate(limit):
    tried = []
    best, rows = peak_search(capacity(limit, tried), start_hz=30.0, max_hz=1000.0, limit=0.05,
                             resolution=0.1, max_trials=12)
    assert best is not None and sustained(best, 0.05)
    assert best['target_hz'] <= limit
    failed = [r['target_hz'] for r in rows if not sustained(r, 0.05)]
    assert failed, 'the search must find a failing rate above the peak'
    # the reported peak is within the resolution of the lowest failing rate
    assert (min(failed) - best['target_hz']) / best['target_hz'] <= 0.1
    assert len(rows) == len(tried) <= 12


def test_peak_search_stops_at_max_hz_and_gives_up_when_nothing_is_sustained():
    best, rows = peak_search(capacity(1e9, []), 30.0, 100.0, 0.05, 0.1, 12)
    assert best['target_hz'] == 100.0 and [r['target_hz'] for r in rows] == [30.0, 60.0, 100.0]
    best, rows = peak_search(capacity(0.1, []), 30.0, 100.0, 0.05, 0.1, 12)
    assert best is None and rows[-1]['target_hz'] < 2.0
    # an order violation is never sustained
    assert not sustained({'drop_frac': 0.0, 'order_violations': 1}, 0.05)


def test_repeated_trials_count_by_their_median_drop_share():
    rows = [{'drop_frac': d, 'output_fps': 30 - d, 'dropped': int(100 * d), 'frames_in': 100}
            for d in (0.2, 0.0, 0.03)]
    med = median_trial(rows)
    assert med['drop_frac'] == 0.03 and [r['drop_frac'] for r in med['repeats']] == \
        [0.2, 0.0, 0.03]
    assert median_trial(rows[:2])['drop_frac'] == 0.0  # even count: the better of the middle
    assert median_trial(rows[:1]) is rows[0]


@pytest.mark.slow
@pytest.mark.ros
def test_bench_runs_detector_node_from_a_bag(campus_video, yolox_model, tmp_path, capsys):
    """Latency run at 10 Hz and a 2-trial peak search on 12 campus frames."""
    pytest.importorskip('rclpy')
    from faster_deployment_ros.tools.video_to_bag import video_to_bag
    bag = tmp_path / 'campus'
    video_to_bag(campus_video, bag, max_frames=24, start_ns=1_700_000_000_000_000_000)
    out = tmp_path / 'bench'
    code = bag_cli.main(['bench', str(bag), '--model', str(yolox_model), '--out', str(out),
                         '--latency-hz', '10', '--duration', '1', '--min-frames', '12',
                         '--max-trials', '2', '--graph', 'yolox test', '-p', 'workers:=1',
                         '-p', 'diagnostics_period:=0.0'])
    printed = capsys.readouterr().out
    print(printed)
    log = (out / 'detector_node.log').read_text()
    assert code == 0, log[-2000:]
    r = json.loads((out / 'bench.json').read_text())
    assert r['bag_frames'] == 24 and r['bag_hz'] == pytest.approx(10.0, rel=0.01)
    assert r['input_size'] == '480x360'
    lat = r['latency']
    assert lat['frames_in'] == 12 and lat['frames_out'] + lat['dropped'] == 12
    assert lat['order_violations'] == 0 and lat['cpu']['node_cores'] > 0
    assert len(r['trials']) <= 2 and all(t['frames_in'] >= 12 for t in r['trials'])
    assert '| Node | Input Size |' in printed and 'yolox test | 480x360 |' in printed
    assert os.path.isdir(out / 'trial_00_warmup' / 'outputs')
    assert format_table(r).splitlines()[2].startswith('| yolox test |')
