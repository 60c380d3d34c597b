"""`make demo-masks`: instance masks and track ids of the real detector_node on the plaza video.

The demo driver runs the detector (the yolov8n-seg test model, config/yolov8n_seg_tracking.yaml:
publish_masks + tracking) in a subprocess, records detections and instance_mask into one bag and
checks them; here its report is checked against the bag itself, and the PNGs against the input
frames. The test model's weights are random: its masks are shapes, but real ones of its outputs.
"""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
from faster_deployment_ros.core.image_codec import msg_to_numpy
from faster_deployment_ros.tools.bag_types import make_typestore
from faster_deployment_ros.tools.demo import mask_failures
from faster_deployment_ros.tools.report import companion_report, Record
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from support.golden import model_path
from support.shared_data import ROOT


def key(msg):
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, str(msg.header.frame_id)


def test_companion_report_counts_foreign_reordered_and_missing_headers():
    outputs = [Record(s, 'cam', s) for s in (10, 20, 30, 40)]
    masks = [Record(10, 'cam', 11), Record(30, 'cam', 31), Record(20, 'cam', 32),
             Record(30, 'other', 33), Record(30, 'cam', 34)]
    rep = companion_report(outputs, masks)
    assert rep == {'messages': 5, 'stamps_matched': 4, 'header_mismatches': 1, 'duplicates': 1,
                   'order_violations': 2, 'outputs_without': 1}  # 30 -> 20, 30 -> 30; 40 none
    good = {'topic': '/instance_mask', 'images': 4, 'header_mismatches': 0,
            'order_violations': 0, 'values_beyond_detections': 0}
    assert mask_failures(good, 4) == []
    assert 'no instance mask image' in mask_failures({**good, 'images': 0}, 4)[0]
    assert mask_failures({**good, 'header_mismatches': 2, 'values_beyond_detections': 1}, 4) == [
        '2 mask images carry the header of no detection array',
        '1 mask images name a detection their array lacks']


@pytest.mark.slow
@pytest.mark.ros
def test_demo_masks_on_plaza(plaza_video, tmp_path):
    """12 plaza frames at a quarter of the camera rate: masks, stamps, pixel values, PNGs."""
    model = model_path('yolov8n-seg')
    out = tmp_path / 'demo-masks'
    cmd = [sys.executable, '-m', 'faster_deployment_ros.tools.demo', '--input', str(plaza_video),
           '--model', str(model), '--out', str(out), '--max-frames', '12', '--rate', '0.25',
           '--params', str(ROOT / 'config' / 'yolov8n_seg_tracking.yaml'),
           '--masks-topic', '/instance_mask', '--frames', '2', '--node-timeout', '60']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads((out / 'report.json').read_text())
    n = rep['frames_out']
    assert rep['frames_in'] == 12 and n >= 1
    assert rep['order_violations'] == 0 and rep['header_mismatches'] == 0
    masks = rep['masks']
    assert masks['images'] == masks['stamps_matched'] == n, masks
    assert masks['outputs_without'] == masks['header_mismatches'] == 0
    assert masks['order_violations'] == masks['values_beyond_detections'] == 0
    assert masks['images_with_instances'] >= 1 and masks['encodings'] == {'mono8': n}
    assert 'masks: ' in proc.stdout

    # The bag itself: one mask per detection array, same header, pixels = 1 + detection index
    # inside that detection's box; Detection2D.id a track id.
    store = make_typestore()
    dets, images = {}, {}
    with Reader(out / 'outputs') as reader:
        for conn, _, data in reader.messages():
            msg = store.deserialize_cdr(data, conn.msgtype)
            if conn.topic == '/detections':
                dets[key(msg)] = msg
            else:
                assert conn.topic == '/instance_mask'
                images[key(msg)] = msg_to_numpy(msg).reshape(msg.height, msg.width)
    assert set(images) == set(dets) and len(images) == n
    shown = 0
    for k, img in images.items():
        det = dets[k].detections
        assert all(d.id.isdigit() for d in det)  # tracking: the track id
        for v in np.unique(img)[1:].tolist():
            assert v <= len(det)
            ys, xs = np.nonzero(img == v)
            c, d = det[v - 1].bbox.center.position, det[v - 1].bbox
            assert c.x - d.size_x / 2 - 1 <= xs.min() and xs.max() <= c.x + d.size_x / 2 + 1
            assert c.y - d.size_y / 2 - 1 <= ys.min() and ys.max() <= c.y + d.size_y / 2 + 1
            shown += 1
    assert shown == masks['instances_shown']

    # PNGs: drawn on the frame of their stamp, every mask pixel tinted.
    pngs = sorted(out.glob('frame_*.png'))
    assert 1 <= len(pngs) <= 2
    with Reader(out / 'input_bag') as r:
        frames = {ts: msg_to_numpy(store.deserialize_cdr(d, c.msgtype))
                  for c, ts, d in r.messages()}
    for png in pngs:
        stamp = int(png.stem.split('_')[-1])
        img, src = cv2.imread(str(png)), frames[stamp]  # bag time == header stamp
        mask = images[(stamp, 'camera')]
        changed = np.any(img != src, axis=2)
        assert mask.any() and changed[mask > 0].mean() > 0.95
        assert changed[mask == 0].mean() < changed[mask > 0].mean()
