"""`fdr-bag diff --masks-topic`: instance masks of real segmentation outputs, per detection.

The masks come from the yolov8n-seg test model on real frames (ONNX Runtime, the node's adapter);
the bags hold what the detector publishes (detections + instance_mask), written with rosbags.
"""
from __future__ import annotations

import json

from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.image_codec import numpy_to_image_fields
from faster_deployment_ros.core.masks import InstanceMasks
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.tools import bag_cli
from faster_deployment_ros.tools.bag_diff import check, diff_bags, Thresholds
import numpy as np
import pytest
from support.bag_diff import detection_array, header, T, write_bag
from support.golden import golden_frames, load_golden, MODELS
from support.shared_data import missing

S0 = 1_700_000_000_000_000_000


def shifted(masks: InstanceMasks, threshold: float) -> InstanceMasks:
    """Return the same masks thresholded at logit > `threshold` instead of > 0.

    An extra prototype of ones with coefficient -threshold.
    """
    protos = np.concatenate([masks._protos, np.ones((1,) + masks._protos.shape[1:],
                                                    np.float32)])
    coeffs = np.concatenate([masks._coeffs, np.full((len(masks), 1), -threshold, np.float32)],
                            1)
    return InstanceMasks.from_prototypes(coeffs, protos, masks._boxes, masks.image_hw)


@pytest.fixture(scope='module')
def outputs():
    path = MODELS / 'yolov8n-seg.onnx'
    if not path.exists():
        missing(f'{path} not built: run `bash scripts/test_assets.d/20_test_models.sh`')
    _, info = load_golden('yolov8n-seg')
    backend = create_backend('onnxruntime', str(path), threads=2)
    adapter = create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)
    dets = []
    for img in golden_frames(info).values():
        inputs, meta = adapter.preprocess(img)
        dets.append(adapter.postprocess(backend.infer(inputs), meta))
    backend.close()
    return dets


def masks_bag(path, dets, threshold: float = 0.0):
    det_msgs, mask_msgs = [], []
    for k, det in enumerate(dets):
        stamp = S0 + k * 100_000_000
        rows = [(n, float(s), *map(float, b))
                for n, s, b in zip(det.names(), det.scores, det.boxes)]
        det_msgs.append(detection_array(stamp, rows, ids=[str(i + 1) for i in range(len(det))]))
        masks = det.masks if threshold == 0.0 else shifted(det.masks, threshold)
        img = masks.render(det.scores)['instance']
        mask_msgs.append(T['sensor_msgs/msg/Image'](
            header=header(stamp), **numpy_to_image_fields(img, 'mono8')))
    return write_bag(path, {'/detections': ('vision_msgs/msg/Detection2DArray', det_msgs),
                            '/instance_mask': ('sensor_msgs/msg/Image', mask_msgs)})


def test_masks_bag_against_itself_passes_a_shifted_threshold_fails(tmp_path, outputs):
    golden = masks_bag(tmp_path / 'golden', outputs)
    same = masks_bag(tmp_path / 'same', outputs)
    shifted_bag = masks_bag(tmp_path / 'shifted', outputs, threshold=0.5)
    args = ['--masks-topic', '/instance_mask', '--min-mask-iou', '0.99', '--no-plot']
    assert bag_cli.main(['diff', str(same), str(golden), *args, '--json',
                         str(tmp_path / 'same.json')]) == 0
    report = json.loads((tmp_path / 'same.json').read_text())
    assert report['masks']['pairs'] == sum(len(d) for d in outputs) > 100
    assert report['masks']['min_iou'] == 1.0 and report['gate']['passed']
    # detections identical, masks thresholded at logit 0.5: the mask gate alone catches it
    assert bag_cli.main(['diff', str(shifted_bag), str(golden), *args, '--json',
                         str(tmp_path / 'shifted.json')]) == 1
    report = json.loads((tmp_path / 'shifted.json').read_text())
    assert report['overall']['recall'] == 1.0 and report['overall']['precision'] == 1.0
    assert report['masks']['min_iou'] < 0.99
    assert any('mask IoU' in f for f in report['gate']['failures'])


def test_min_mask_iou_without_masks_topic_fails(tmp_path, outputs):
    golden = masks_bag(tmp_path / 'golden', outputs[:1])
    report = diff_bags(golden, golden)
    assert 'masks' not in report
    fails = check(report, Thresholds(min_mask_iou=0.99))
    assert fails and '--masks-topic' in fails[0]
    assert check(diff_bags(golden, golden, masks_topic='/instance_mask'),
                 Thresholds(min_mask_iou=0.99)) == []
    assert bag_cli.main(['diff', str(golden), str(golden), '--masks-topic', '/nope',
                         '--no-plot', '--json', str(tmp_path / 'x.json')]) == 2
