"""Record golden results: each family's REFERENCE pre/post-processing on real frames.

How they are made (run in `.venv-export`, after scripts/build_test_models.py):

  .venv-export/bin/python scripts/make_golden.py            # -> test/fixtures/golden_*.npz

The models are the random-weight builds of build_test_models.py (deterministic: the same wheels
give the same bytes); every fixture records the sha256 of the model it was made with, and the
tests use it only for that model. If a rebuild ever differs (other wheels), the asset step runs
this script again with `--out .cache/golden`, and the tests prefer the fixture that matches.

The frames: ../shared/data/dog_bicycle_truck.jpg (768x576), frame 30 of
pedestrians_plaza_1280x720_50fps.avi and frame 10 of campus_walkway_480x360_10fps.avi (their
sha256 is recorded too). The network itself runs in ONNX Runtime (the tests run the same
file); everything around it is the reference's own code:

* yolov8n / yolo11n: ultralytics 8.4's DetectionPredictor methods themselves — `preprocess`
  (LetterBox, BGR->RGB, /255) and `postprocess` (non_max_suppression with conf, iou 0.7,
  max_det 300; scale_boxes) — on a predictor whose model is replaced by the ONNX session.
  ultralytics picks its own TorchNMS ("matches torchvision exactly") since torchvision is not
  importable beside the CPU torch. Recorded at conf 0.25 (default; yolo11n also at 0.05),
  plus the pre-NMS candidate counts at 0.25 and 0.05.
* yolo11n-obb: ultralytics' OBBPredictor (the same `preprocess`; `postprocess` with
  non_max_suppression(rotated=True): best class, classes offset by cls * 7680 on the centre,
  TorchNMS.fast_nms with batch_probiou at iou 0.7; then scale_boxes(xywh=True) on the centre
  and size, the angle untouched). Recorded as Results.obb: xywhr (angle in [-pi/4, 3pi/4) as
  the head emits it, not regularised), conf, cls, at conf 0.25 and 0.05, plus candidates.
* yolov8n-seg / yolo11n-seg: ultralytics 8.4's SegmentationPredictor the same way, with
  `retina_masks=True` (the masks at the source resolution: ops.process_mask_native, which
  upsamples the prototype logits with ops.scale_masks and crops them to the source-pixel boxes;
  the default path makes them at the 640x640 input instead). Its `keep` step drops detections
  whose mask is empty; the recorded boxes / scores / classes are what it returns. The masks of
  MASKS_PER_FRAME of them (evenly spread over the score order: `mask_index`) are stored, each as
  its tight bounding rectangle (y0, y1, x0, x1) and the np.packbits of that rectangle, a frame's
  concatenated, so the fixture stays small.
* yolo26n: the same predictor on the NMS-free (end2end, 1x300x6) export: score > conf, max_det.
* rtdetr-l: RTDETRPredictor's `preprocess` (LetterBox scale_fill: stretched resize) and
  `postprocess` (score > conf, boxes x original size; no NMS).
* rtdetr-l-legacy: ultralytics 8.3's RTDETRPredictor.postprocess for the (1, 300, 4 + nc)
  output, transcribed below (8.4 no longer has it); same pre-processing.
* rtdetr-l-orig: the original RT-DETR deploy flow (references/deploy/rtdetr_onnxruntime.py):
  images + orig_target_sizes=[[w, h]] in, labels/boxes/scores out, kept where score > conf.
  Its PIL resize is NOT reproduced: the frame is resized with cv2 bilinear as the adapter does,
  so this fixture checks the I/O handling and decode, not the PIL resampling.
* depth_anything_v2_vits: the official code's transform (depth_anything_v2.util.transform:
  Resize lower_bound / multiple of 14 / INTER_CUBIC on the 0-1 RGB float image,
  NormalizeImage, PrepareForNet) with keep_aspect_ratio=False since the ONNX input is a fixed
  518x518, then `infer_image`'s F.interpolate(bilinear, align_corners=True) back.
* depth_anything_v2_metric_hypersim_vits: the official metric model (metres); the same flow
  as depth_anything_v2_vits, which its metric_depth code shares (infer_image / image2tensor).
* midas_small_style: MiDaS v2.1 small's run.py flow (read_image: RGB / 255; Resize 256,
  keep_aspect_ratio, multiple of 32, upper_bound, INTER_CUBIC; ImageNet NormalizeImage;
  F.interpolate(bicubic, align_corners=False) back) on a dynamic-shape model.

* lraspp_mobilenet_v3_large: torchvision's own LR-ASPP forward (the network rebuilt in torch
  by build_test_models.lraspp_net, checked against the ONNX file's logits) on the frame
  letterboxed into 384x640 (core/letterbox.py's centred letterbox, grey 114, loaded by path),
  RGB / 255, ImageNet mean/std; the letterbox padding cropped off the logits, then
  F.interpolate(bilinear, align_corners=False) to the source size, argmax and softmax, as
  torchvision's segmentation references do. campus10 also with a plain (stretched) resize.
  Stored: the class mask at full resolution and the confidence (probability x 255, rounded)
  on every 4th row and column.

Depth maps are stored on a 32x24 grid of source pixels (corners included) to stay small.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
from pathlib import Path
import sys
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('YOLO_OFFLINE', '1')
os.environ.setdefault('YOLO_CONFIG_DIR', str(ROOT / '.cache' / 'ultralytics-config'))
os.environ.setdefault('YOLO_VERBOSE', 'False')
sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_test_models import file_sha256, read_frame, SHARED  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# conf thresholds recorded per model: the default everywhere, and 0.05 (hundreds of boxes, the
# max_det cap) where it adds a case. Kept few so the fixtures stay small.
DET_CONFS = {'yolov8n': (0.25,), 'yolo11n': (0.25, 0.05), 'yolo26n': (0.25,),
             'yolo11n-obb': (0.25, 0.05),
             'yolov8n-seg': (0.25,), 'yolo11n-seg': (0.25,),
             'rtdetr-l': (0.25, 0.05),
             'rtdetr-l-legacy': (0.25,), 'rtdetr-l-orig': (0.25,)}
CANDIDATE_CONFS = (0.25, 0.05)  # pre-NMS candidate counts of the YOLO models
GRID = (24, 32)  # rows, cols of the depth sample grid
MASKS_PER_FRAME = 6  # instance masks stored per frame (the boxes of all are)


def golden_frames() -> dict:
    data = SHARED / 'data'
    return {
        'dog': cv2.imread(str(data / 'dog_bicycle_truck.jpg')),
        'plaza30': read_frame(data / 'pedestrians_plaza_1280x720_50fps.avi', 30),
        'campus10': read_frame(data / 'campus_walkway_480x360_10fps.avi', 10),
    }


def frame_hash(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


def grid_index(h: int, w: int):
    rows = np.linspace(0, h - 1, GRID[0]).round().astype(np.int64)
    cols = np.linspace(0, w - 1, GRID[1]).round().astype(np.int64)
    return rows, cols


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=['CPUExecutionProvider'])


def ultralytics_predictor(kind: str, sess, conf: float):
    """Return a real ultralytics predictor whose model is the ONNX session's stand-in."""
    from ultralytics.models.rtdetr.predict import RTDETRPredictor
    from ultralytics.models.yolo.detect.predict import DetectionPredictor
    from ultralytics.models.yolo.obb.predict import OBBPredictor
    from ultralytics.nn.autobackend import check_class_names, default_class_names
    from ultralytics.utils import ops

    meta = sess.get_modelmeta().custom_metadata_map
    cls = {'rtdetr': RTDETRPredictor, 'obb': OBBPredictor}.get(kind, DetectionPredictor)
    p = cls(overrides={'conf': conf, 'iou': 0.7, 'max_det': 300, 'imgsz': 640, 'verbose': False,
                       'save': False})
    # AutoBackend's reading of the metadata (ast.literal_eval, check_class_names): the OBB
    # predictor takes nc from it.
    names = (check_class_names(ast.literal_eval(meta['names'])) if meta.get('names')
             else default_class_names())
    p.model = SimpleNamespace(names=names, stride=32,
                              format='onnx', dynamic=False, fp16=False, channels=3,
                              end2end=meta.get('end2end') == 'True')  # as AutoBackend reads it
    p.device = torch.device('cpu')
    p.imgsz = (640, 640)
    p.batch = (['frame'],)
    p._feats = None
    _ = ops  # the predictor's postprocess calls ops.scale_boxes itself
    return p


def run_ultralytics(kind: str, sess, img: np.ndarray, conf: float):
    p = ultralytics_predictor(kind, sess, conf)
    im = p.preprocess([img])
    out = sess.run(None, {sess.get_inputs()[0].name: im.numpy()})
    res = p.postprocess(torch.from_numpy(out[0]), im, [img])[0]
    if kind == 'obb':
        b = res.obb
        return (b.xywhr.numpy().astype(np.float32), b.conf.numpy().astype(np.float32),
                b.cls.numpy().astype(np.int64), out[0], im.numpy())
    b = res.boxes
    return (b.xyxy.numpy().astype(np.float32), b.conf.numpy().astype(np.float32),
            b.cls.numpy().astype(np.int64), out[0], im.numpy())


def legacy_rtdetr_postprocess(pred: torch.Tensor, orig: np.ndarray, conf: float):
    """Ultralytics 8.3.x RTDETRPredictor.postprocess, for the (bs, 300, 4 + nc) export."""
    from ultralytics.utils import ops

    nd = pred.shape[-1]
    bboxes, scores = pred.split((4, nd - 4), dim=-1)
    bbox, score = bboxes[0], scores[0]
    bbox = ops.xywh2xyxy(bbox)
    max_score, cls = score.max(-1, keepdim=True)
    idx = max_score.squeeze(-1) > conf
    out = torch.cat([bbox, max_score, cls], dim=-1)[idx]
    oh, ow = orig.shape[:2]
    out[..., [0, 2]] *= ow
    out[..., [1, 3]] *= oh
    return out[:, :4].numpy(), out[:, 4].numpy(), out[:, 5].numpy().astype(np.int64)


def golden_detection(name: str, path: Path, frames: dict) -> dict:
    sess = session(path)
    rec = {}
    for key, img in frames.items():
        for conf in DET_CONFS[name]:
            tag = f'{key}@{conf}'
            if name in ('yolov8n', 'yolo11n', 'yolo26n', 'rtdetr-l', 'yolo11n-obb'):
                kind = ('rtdetr' if name.startswith('rtdetr')
                        else 'obb' if name.endswith('-obb') else 'detect')
                boxes, scores, cls, raw, im = run_ultralytics(kind, sess, img, conf)
                if kind != 'rtdetr' and raw.shape[1] != 300:  # not for the NMS-free head
                    scores_rows = raw[0, 4:-1] if kind == 'obb' else raw[0, 4:]
                    for c in CANDIDATE_CONFS:
                        rec[f'{key}@{c}/candidates'] = np.array((scores_rows.max(0) > c).sum())
                rec[f'{key}/input_sum'] = np.array(im.astype(np.float64).sum())
            elif name == 'rtdetr-l-legacy':
                p = ultralytics_predictor('rtdetr', sess, conf)
                im = p.preprocess([img])
                raw = sess.run(None, {'images': im.numpy()})[0]
                boxes, scores, cls = legacy_rtdetr_postprocess(torch.from_numpy(raw), img, conf)
            elif name == 'rtdetr-l-orig':
                h, w = img.shape[:2]
                x = cv2.resize(img, (640, 640), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
                x = (x.astype(np.float32) / 255.0).transpose(2, 0, 1)[None].copy()
                labels, bxs, scr = sess.run(None, {'images': x, 'orig_target_sizes':
                                                   np.array([[w, h]], np.int64)})
                keep = scr[0] > conf
                boxes, scores, cls = bxs[0][keep], scr[0][keep], labels[0][keep].astype(np.int64)
            else:
                raise ValueError(name)
            if name.endswith('-obb'):
                rec[f'{tag}/xywhr'] = np.asarray(boxes, np.float32).reshape(-1, 5)
            else:
                rec[f'{tag}/boxes'] = np.asarray(boxes, np.float32).reshape(-1, 4)
            rec[f'{tag}/scores'] = np.asarray(scores, np.float32)
            rec[f'{tag}/classes'] = np.asarray(cls, np.int64)
            print(f'  {name} {tag}: {len(scores)} boxes', flush=True)
    return rec


def pack_masks(masks: np.ndarray):
    """(N, H, W) masks -> (rects (N, 4) y0, y1, x0, x1 of each mask's pixels, packed bits)."""
    rects, bits = [], []
    for m in masks.astype(bool):
        ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if not ys.size:
            rects.append((0, 0, 0, 0))
            continue
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        rects.append((y0, y1, x0, x1))
        bits.append(np.packbits(m[y0:y1, x0:x1].reshape(-1)))
    return (np.asarray(rects, np.int32).reshape(-1, 4),
            np.concatenate(bits) if bits else np.zeros(0, np.uint8))


def golden_segment(name: str, path: Path, frames: dict) -> dict:
    import ast

    from ultralytics.models.yolo.segment.predict import SegmentationPredictor

    sess = session(path)
    meta = sess.get_modelmeta().custom_metadata_map
    rec = {}
    for key, img in frames.items():
        for conf in DET_CONFS[name]:
            tag = f'{key}@{conf}'
            p = SegmentationPredictor(overrides={
                'conf': conf, 'iou': 0.7, 'max_det': 300, 'imgsz': 640, 'verbose': False,
                'save': False, 'retina_masks': True})
            p.model = SimpleNamespace(names=ast.literal_eval(meta['names']), stride=32,
                                      format='onnx', dynamic=False, fp16=False, channels=3,
                                      end2end=False)
            p.device = torch.device('cpu')
            p.imgsz = (640, 640)
            p.batch = (['frame'],)
            p._feats = None
            im = p.preprocess([img])
            out = sess.run(None, {sess.get_inputs()[0].name: im.numpy()})
            res = p.postprocess([torch.from_numpy(o) for o in out], im, [img])[0]
            b = res.boxes
            masks = (res.masks.data.numpy() if res.masks is not None
                     else np.zeros((0,) + img.shape[:2], np.uint8))
            index = np.unique(np.linspace(0, len(masks) - 1, MASKS_PER_FRAME).round()
                              .astype(np.int64)) if len(masks) else np.zeros(0, np.int64)
            rects, bits = pack_masks(masks[index])
            rec[f'{key}/input_sum'] = np.array(im.numpy().astype(np.float64).sum())
            rec[f'{tag}/boxes'] = b.xyxy.numpy().astype(np.float32).reshape(-1, 4)
            rec[f'{tag}/scores'] = b.conf.numpy().astype(np.float32)
            rec[f'{tag}/classes'] = b.cls.numpy().astype(np.int64)
            rec[f'{tag}/mask_index'] = index
            rec[f'{tag}/mask_rects'] = rects
            rec[f'{tag}/mask_bits'] = bits
            print(f'  {name} {tag}: {len(masks)} instances, {len(index)} masks stored',
                  flush=True)
    return rec


def golden_depth(name: str, path: Path, frames: dict) -> dict:
    from depth_anything_v2_shim import reference_transforms

    Resize, NormalizeImage, PrepareForNet = reference_transforms()
    sess = session(path)
    norm = NormalizeImage(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    if name.startswith('depth_anything_v2'):
        resize = Resize(width=518, height=518, resize_target=False, keep_aspect_ratio=False,
                        ensure_multiple_of=14, resize_method='lower_bound',
                        image_interpolation_method=cv2.INTER_CUBIC)
        back = {'mode': 'bilinear', 'align_corners': True}
    else:
        resize = Resize(256, 256, resize_target=None, keep_aspect_ratio=True,
                        ensure_multiple_of=32, resize_method='upper_bound',
                        image_interpolation_method=cv2.INTER_CUBIC)
        back = {'mode': 'bicubic', 'align_corners': False}
    rec = {}
    for key, img in frames.items():
        h, w = img.shape[:2]
        sample = {'image': cv2.cvtColor(img, cv2.COLOR_BGR2RGB) / 255.0}
        for t in (resize, norm, PrepareForNet()):
            sample = t(sample)
        x = sample['image'][None]
        pred = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x})[0])
        depth = F.interpolate(pred.reshape(1, 1, *pred.shape[-2:]), (h, w), **back)[0, 0].numpy()
        rows, cols = grid_index(h, w)
        rec[f'{key}/grid'] = depth[np.ix_(rows, cols)].astype(np.float32)
        rec[f'{key}/net_hw'] = np.array(x.shape[2:], np.int64)
        rec[f'{key}/stats'] = np.array([depth.mean(), depth.std(), depth.min(), depth.max()])
        print(f'  {name} {key}: net input {x.shape[2:]}, depth mean {depth.mean():.4f} '
              f'std {depth.std():.4f} zeros {(depth <= 0).mean():.3f}', flush=True)
    return rec


SEG_CONF_STEP = 4  # the segmentation confidence is stored on every 4th row and column


def golden_semantic_seg(name: str, path: Path, frames: dict) -> dict:
    from build_test_models import _load_by_path, calibration_images, IMAGENET_MEAN, \
        IMAGENET_STD, lraspp_net

    lb = _load_by_path('fdr_letterbox', ROOT / 'faster_deployment_ros' / 'core' / 'letterbox.py')
    net = lraspp_net(calibration_images()).eval()
    sess = session(path)
    net_h, net_w = sess.get_inputs()[0].shape[2:]
    mean = np.array(IMAGENET_MEAN, np.float32)
    std = np.array(IMAGENET_STD, np.float32)
    rec = {}
    for key, img in frames.items():
        modes = ('letterbox', 'stretch') if key == 'campus10' else ('letterbox',)
        h, w = img.shape[:2]
        for mode in modes:
            if mode == 'letterbox':
                boxed, _ = lb.letterbox(img, (net_h, net_w), 114, center=True)
                _, cw, ch, left, top = lb.letterbox_geometry((h, w), (net_h, net_w), center=True)
            else:
                boxed = cv2.resize(img, (net_w, net_h), interpolation=cv2.INTER_LINEAR)
                top, left, ch, cw = 0, 0, net_h, net_w
            x = (boxed[:, :, ::-1].astype(np.float32) / 255.0 - mean) / std
            x = torch.from_numpy(x.transpose(2, 0, 1)[None].copy())
            with torch.no_grad():
                logits = net.forward(x)['out']
            onnx_logits = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
            gap = float(np.abs(onnx_logits - logits.numpy()).max())
            assert gap < 1e-3, f'the ONNX file is not the rebuilt network (logits differ by {gap})'
            crop = logits[:, :, top:top + ch, left:left + cw]
            up = F.interpolate(crop, (h, w), mode='bilinear', align_corners=False)[0]
            prob = torch.softmax(up, 0)
            conf, mask = prob.max(0)
            tag = key if mode == 'letterbox' else f'{key}/{mode}'
            rec[f'{tag}/mask'] = mask.numpy().astype(np.uint8)
            rec[f'{tag}/confidence'] = np.rint(conf.numpy()[::SEG_CONF_STEP, ::SEG_CONF_STEP]
                                               * 255.0).astype(np.uint8)
            counts = np.bincount(rec[f'{tag}/mask'].ravel(), minlength=logits.shape[1])
            print(f'  {name} {tag}: {int((counts > 0).sum())} classes present, onnx vs torch '
                  f'{gap:.2e}, confidence median {float(conf.median()):.3f}', flush=True)
    return rec


MODELS = {
    'yolov8n': golden_detection,
    'yolo11n': golden_detection,
    'yolo26n': golden_detection,
    'yolo11n-obb': golden_detection,
    'yolov8n-seg': golden_segment,
    'yolo11n-seg': golden_segment,
    'rtdetr-l': golden_detection,
    'rtdetr-l-legacy': golden_detection,
    'rtdetr-l-orig': golden_detection,
    'depth_anything_v2_vits': golden_depth,
    'midas_small_style': golden_depth,
    'depth_anything_v2_metric_hypersim_vits': golden_depth,
    'lraspp_mobilenet_v3_large': golden_semantic_seg,
}


def fixture_name(model: str) -> str:
    return f'golden_{model.replace("-", "_")}.npz'


def recorded_sha(fixture: Path):
    if not fixture.exists():
        return None
    with np.load(fixture) as z:
        return json.loads(str(z['info']))['model_sha256']


def main() -> int:
    import ultralytics

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', type=Path, default=ROOT / '.cache' / 'models')
    ap.add_argument('--out', type=Path, default=ROOT / 'test' / 'fixtures')
    ap.add_argument('--only', nargs='*', choices=sorted(MODELS))
    ap.add_argument('--stale-only', type=Path, metavar='FIXTURES',
                    help='only for models whose fixture in FIXTURES was made with other bytes')
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    frames = None
    for name in args.only or list(MODELS):
        path = args.models / f'{name}.onnx'
        out = args.out / fixture_name(name)
        digest = file_sha256(path)
        if args.stale_only is not None:
            if recorded_sha(args.stale_only / fixture_name(name)) == digest:
                out.unlink(missing_ok=True)
                continue
            if recorded_sha(out) == digest:
                continue
            print(f'{name}: no committed fixture was made with these model bytes; recomputing '
                  f'the golden results into {out}', flush=True)
        frames = frames or golden_frames()
        rec = MODELS[name](name, path, frames)
        info = {'model': path.name, 'model_sha256': digest,
                'frames': {k: frame_hash(v) for k, v in frames.items()},
                'frame_shapes': {k: list(v.shape) for k, v in frames.items()},
                'ultralytics': ultralytics.__version__, 'torch': torch.__version__,
                'det_confs': list(DET_CONFS.get(name, ())), 'grid': list(GRID),
                'seg_conf_step': SEG_CONF_STEP,
                'made_by': 'scripts/make_golden.py (see its docstring)'}
        rec['info'] = np.array(json.dumps(info, sort_keys=True))
        np.savez_compressed(out, **rec)
        print(f'{out}: {out.stat().st_size / 1e3:.1f} kB', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
