"""Build the test models of every non-YOLOX family from the architectures' own reference code.

Runs in the tools venv `.venv-export` (torch CPU, ultralytics, depth-anything-v2; see
scripts/test_assets.d/20_test_models.sh), never in the node's `.venv`.

Weights are random but the graphs are the real ones: ultralytics builds yolov8n / yolo11n /
yolo26n / yolov8n-seg / yolo11n-seg / rtdetr-l from its own yaml configs and exports them with
its own exporter; Depth Anything V2
(ViT-S/14 + DPT head) comes from the `depth-anything-v2` package, the official repository's code.
A random network gives degenerate outputs (every score at the bias prior, every box the same
size, a depth map of zeros after the final ReLU), against which a wrong decoder can still
"match". So each model is conditioned, deterministically, on the calibration frames below:
BatchNorm statistics are set from one batch (momentum 1), and the last layer of each head is
rescaled so scores, box sizes and depth values spread like a trained model's. Everything is seeded
and exported with the TorchScript exporter, so a rebuild on the same wheels gives the same bytes;
`--check` prints the sha256 that the golden fixtures (scripts/make_golden.py) record.

Models (all under --out):
  yolov8n.onnx, yolo11n.onnx      ultralytics export, images 1x3x640x640 -> output0 1x84x8400
  yolo26n.onnx                    ultralytics end-to-end export (no NMS) -> output0 1x300x6
  yolo11n-obb.onnx                ultralytics OBB export, DOTAv1's 15 classes -> output0 1x20x8400
                                  (cx, cy, w, h, 15 scores, angle in radians)
  yolov8n-seg.onnx, yolo11n-seg.onnx  ultralytics export, images 1x3x640x640 -> output0 1x116x8400
                                  (4 box + 80 class + 32 mask coefficients), output1 1x32x160x160
                                  (mask prototypes)
  rtdetr-l.onnx                   ultralytics export, images 1x3x640x640 -> output0 1x300x6
  rtdetr-l-orig.onnx              the same RT-DETR-L network behind the original (lyuwenyu)
                                  export's I/O: images + orig_target_sizes -> labels, boxes, scores
  rtdetr-l-legacy.onnx            the same network with ultralytics<8.4's output: 1x300x(4+nc)
  depth_anything_v2_vits.onnx     image 1x3x518x518 -> depth 1x518x518 (relative inverse depth)
  depth_anything_v2_metric_hypersim_vits.onnx
                                  the official metric model (indoor, max_depth 20): image
                                  1x3x518x518 -> depth 1x518x518 in metres (metadata
                                  depth_kind: metric, max_depth: 20)
  midas_small_style.onnx          MiDaS convention, dynamic HxW input (multiple of 32) -> 1xHxW
  lraspp_mobilenet_v3_large.onnx  torchvision's LR-ASPP MobileNetV3-Large (21 VOC classes),
                                  image 1x3x384x640 -> logits 1x21x384x640 (semantic segmentation)
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('YOLO_OFFLINE', '1')
os.environ.setdefault('YOLO_CONFIG_DIR', str(ROOT / '.cache' / 'ultralytics-config'))
os.environ.setdefault('YOLO_VERBOSE', 'False')

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SEED = 0
OPSET = 17
SHARED = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))


def _load_by_path(name: str, path: Path):
    """Load a module of the package by path (this script runs where it is not installed)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


file_sha256 = _load_by_path('fdr_hashing',
                            ROOT / 'faster_deployment_ros' / 'core' / 'hashing.py').file_sha256


def read_frame(video: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(video))
    try:
        for _ in range(index + 1):
            ok, frame = cap.read()
            if not ok:
                raise RuntimeError(f'{video} has no frame {index}')
        return frame
    finally:
        cap.release()


def calibration_images() -> list:
    """BGR uint8 frames from ../shared/data: the statistics every model is conditioned on."""
    data = SHARED / 'data'
    imgs = [cv2.imread(str(data / 'dog_bicycle_truck.jpg'))]
    imgs += [read_frame(data / 'pedestrians_plaza_1280x720_50fps.avi', i) for i in (5, 60)]
    imgs += [read_frame(data / 'campus_walkway_480x360_10fps.avi', i) for i in (3, 40)]
    if any(im is None for im in imgs):
        raise RuntimeError(f'calibration images missing under {data}')
    return imgs


def to_batch(imgs: list, h: int, w: int, mean=None, std=None) -> torch.Tensor:
    """Plain resize, RGB, 0-1 (optionally normalised): conditioning only, not a reference path."""
    x = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
                  for im in imgs])
    x = torch.from_numpy(x.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    if mean is not None:
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x


@torch.no_grad()
def set_bn_stats(model: nn.Module, batch: torch.Tensor) -> None:
    """One pass with BatchNorm in train mode, momentum 1: running stats = this batch's stats."""
    model.eval()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.train()
        m.momentum = 1.0
    model(batch)
    for m in bns:
        m.eval()
        m.momentum = 0.03


@torch.no_grad()
def capture_output(model: nn.Module, layer: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """`layer`'s output on `batch` as (channels, samples)."""
    seen = []
    # clone: the output may be changed in place by a following ReLU(inplace=True)
    handle = layer.register_forward_hook(
        lambda _m, _i, out: seen.append(out.detach().float().clone()))
    try:
        model(batch)
    finally:
        handle.remove()
    if isinstance(layer, nn.Linear):  # (..., C)
        return torch.cat([s.reshape(-1, s.shape[-1]) for s in seen], 0).T
    return torch.cat([s.transpose(0, 1).reshape(s.shape[1], -1) for s in seen], 1)  # (B, C, ...)


@torch.no_grad()
def condition_layer(model, layer, batch, target_std: float, bias_quantile=None,
                    bias_to=0.0) -> None:
    """Rescale `layer` so its output (per channel over the batch) has `target_std`.

    Then shift the bias so the `bias_quantile` of its output lands at `bias_to` (e.g. a
    threshold's logit).
    """
    std = capture_output(model, layer, batch).std(1).clamp_min(1e-6)
    scale = (target_std / std).to(layer.weight.dtype)
    layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
    layer.bias.mul_(scale)
    if bias_quantile is not None:
        out = capture_output(model, layer, batch)
        q = torch.quantile(out.flatten()[:: max(1, out.numel() // 1_000_000)], bias_quantile)
        layer.bias.add_(bias_to - q)


# ----------------------------------------------------------------------------------- ultralytics
def build_yolo(cfg: str, out: Path, imgs: list) -> Path:
    from ultralytics import YOLO

    torch.manual_seed(SEED)
    model = YOLO(cfg)
    net = model.model
    net.names = coco_names()  # a yaml build has names '0'..'79'; a COCO-trained model has these
    batch = to_batch(imgs, 640, 640)
    set_bn_stats(net, batch)
    det = net.model[-1]
    score_logit = float(np.log(0.25 / 0.75))
    if getattr(det, 'one2one_cv2', None) is not None:  # end-to-end head (YOLO26): exports one2one
        # reg_max 1: the box conv gives l, t, r, b in cells directly; keep 99 % of them > 1.
        for box_conv, cls_conv in zip((s[-1] for s in det.one2one_cv2),
                                      (s[-1] for s in det.one2one_cv3)):
            condition_layer(net, box_conv, batch, 1.0, bias_quantile=0.01, bias_to=1.0)
            condition_layer(net, cls_conv, batch, 1.0, bias_quantile=0.99995, bias_to=score_logit)
        return export_ultralytics(model, out, cfg.replace('.yaml', ''), nms=False)  # NMS-free head
    for box_conv, cls_conv in zip((s[-1] for s in det.cv2), (s[-1] for s in det.cv3)):
        # DFL bins spread -> varied box sizes; ~0.01 % of (anchor, class) scores above 0.25.
        condition_layer(net, box_conv, batch, 2.0)
        condition_layer(net, cls_conv, batch, 1.0, bias_quantile=0.9999, bias_to=score_logit)
    if getattr(det, 'proto', None) is not None:  # Segment head (-seg): mask coefficients, protos
        condition_segment(net, det, batch)
    return export_ultralytics(model, out, cfg.replace('.yaml', ''))


def build_yolo_obb(cfg: str, out: Path, imgs: list) -> Path:
    """Build an OBB model shaped as a DOTAv1-trained one (15 classes), conditioned like build_yolo.

    The angle branch is conditioned too: its logits spread (std 2, median 0), so the decoded
    angles, (sigmoid - 0.25) * pi, cover [-pi/4, 3pi/4) instead of sitting at pi/4.
    """
    from ultralytics import YOLO
    from ultralytics.nn.tasks import OBBModel
    from ultralytics.utils import YAML
    from ultralytics.utils import ROOT as UROOT

    names = dict(YAML.load(UROOT / 'cfg' / 'datasets' / 'DOTAv1.yaml')['names'])
    model = YOLO(cfg)  # task obb, exporter args; its 80-class network is replaced below
    torch.manual_seed(SEED)
    net = OBBModel(cfg, nc=len(names), verbose=False)
    net.args, net.task, net.names = model.model.args, model.model.task, names
    model.model = net
    batch = to_batch(imgs, 640, 640)
    set_bn_stats(net, batch)
    det = net.model[-1]
    score_logit = float(np.log(0.25 / 0.75))
    for box_conv, cls_conv, angle_conv in zip(*((s[-1] for s in head)
                                                for head in (det.cv2, det.cv3, det.cv4))):
        # ~0.1 % of (anchor, class) scores above 0.25: overlapping candidates for rotated NMS.
        condition_layer(net, box_conv, batch, 2.0)
        condition_layer(net, cls_conv, batch, 1.0, bias_quantile=0.999, bias_to=score_logit)
        condition_layer(net, angle_conv, batch, 2.0, bias_quantile=0.5, bias_to=0.0)
    return export_ultralytics(model, out, cfg.replace('.yaml', ''))


@torch.no_grad()
def condition_segment(net, det, batch) -> None:
    """Make a random Segment head's masks partial, as a trained one's are.

    A mask is sigmoid(coefficients . protos) > 0.5 inside the box. The protos are centred
    (zero mean per channel over the batch, unit std) and the coefficient convs spread to std 1, so
    each logit varies across the image around a per-detection offset of about the same size:
    within a box some pixels are in, some out, rather than all one way.
    """
    proto_out = det.proto.cv3
    out = capture_output(net, proto_out, batch)
    bn = proto_out.bn
    # cv3 is conv -> BN -> SiLU: shift the BN output so the SiLU output has zero mean, then scale.
    bn.bias.sub_(out.mean(1))
    out = capture_output(net, proto_out, batch)
    bn.weight.div_(out.std(1).clamp_min(1e-6))
    bn.bias.div_(out.std(1).clamp_min(1e-6))
    for coef_conv in (s[-1] for s in det.cv4):
        condition_layer(net, coef_conv, batch, 1.0 / np.sqrt(det.nm) * 2.0)


def export_ultralytics(model, out: Path, stem: str, **kw) -> Path:
    cwd = os.getcwd()
    os.chdir(out)
    try:
        f = model.export(format='onnx', imgsz=640, opset=OPSET, simplify=True, dynamic=False,
                         verbose=False, **kw)
    finally:
        os.chdir(cwd)
    path, made = out / f'{stem}.onnx', out / f
    if made.resolve() != path.resolve():
        os.replace(made, path)
    set_metadata(path, {'date': None})  # the export time would make every build's bytes differ
    return path


def build_rtdetr(out: Path, imgs: list) -> list:
    from ultralytics import RTDETR

    torch.manual_seed(SEED)
    model = RTDETR('rtdetr-l.yaml')
    net = model.model
    net.names = coco_names()
    batch = to_batch(imgs[:3], 640, 640)
    set_bn_stats(net, batch)
    dec = net.model[-1]
    # Encoder scores pick the queries, decoder scores rank them: spread both like a trained head.
    condition_layer(net, dec.enc_score_head, batch, 2.0)
    last = dec.dec_score_head[-1]
    condition_layer(net, last, batch, 2.0, bias_quantile=0.999, bias_to=float(np.log(0.25 / 0.75)))
    paths = [export_ultralytics(model, out, 'rtdetr-l')]
    paths += export_rtdetr_variants(net, out)
    return paths


class _RtdetrRaw(nn.Module):
    """RT-DETR-L up to the decoder: (boxes cxcywh 0-1, class logits) as training code sees it."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        dec = self.net.model[-1]
        dec.export = False
        _, x = self.net(images)
        dec_bboxes, dec_scores = x[0], x[1]
        return dec_bboxes[-1], dec_scores[-1]


class _RtdetrLegacy(_RtdetrRaw):
    """ultralytics<8.4's RT-DETR export: 1x300x(4+nc), cx,cy,w,h normalised + sigmoid scores."""

    def forward(self, images):
        boxes, logits = super().forward(images)
        return torch.cat([boxes, logits.sigmoid()], -1)


class _RtdetrOriginal(_RtdetrRaw):
    """The original RT-DETR deploy model (lyuwenyu/RT-DETR, RTDETRPostProcessor, focal loss).

    Top-300 over queries x classes, labels = index % nc, boxes xyxy in orig_target_sizes pixels.
    """

    def forward(self, images, orig_target_sizes):
        boxes, logits = super().forward(images)
        cx, cy, w, h = boxes.unbind(-1)
        xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
        xyxy = xyxy * orig_target_sizes.repeat(1, 2).unsqueeze(1).to(xyxy.dtype)
        nc = logits.shape[-1]
        scores, index = torch.topk(torch.sigmoid(logits).flatten(1), 300, dim=-1)
        labels = index % nc
        index = index // nc
        picked = xyxy.gather(dim=1, index=index.unsqueeze(-1).repeat(1, 1, xyxy.shape[-1]))
        return labels, picked, scores


def export_rtdetr_variants(net, out: Path) -> list:
    net.eval()
    im = torch.zeros(1, 3, 640, 640)
    paths = []
    legacy = out / 'rtdetr-l-legacy.onnx'
    torch.onnx.export(_RtdetrLegacy(net).eval(), (im,), str(legacy), opset_version=OPSET,
                      input_names=['images'], output_names=['output0'], dynamo=False)
    set_metadata(legacy, {'names': str(coco_names()), 'imgsz': '[640, 640]', 'task': 'detect',
                          'description':
                              'RT-DETR-L, ultralytics<8.4 output layout (test stand-in)'})
    paths.append(legacy)
    orig = out / 'rtdetr-l-orig.onnx'
    sizes = torch.tensor([[640, 640]], dtype=torch.int64)
    torch.onnx.export(_RtdetrOriginal(net).eval(), (im, sizes), str(orig), opset_version=OPSET,
                      input_names=['images', 'orig_target_sizes'],
                      output_names=['labels', 'boxes', 'scores'], dynamo=False)
    paths.append(orig)
    return paths


def coco_names() -> dict:
    from ultralytics.utils import YAML
    from ultralytics.utils import ROOT as UROOT

    return dict(YAML.load(UROOT / 'cfg' / 'datasets' / 'coco.yaml')['names'])


def set_metadata(path: Path, meta: dict) -> None:
    """Add / replace metadata_props; a None value removes the key."""
    import onnx

    m = onnx.load(str(path))
    kept = [(p.key, p.value) for p in m.metadata_props if p.key not in meta]
    del m.metadata_props[:]
    for k, v in kept + [(k, v) for k, v in meta.items() if v is not None]:
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))


# ------------------------------------------------------------------------------------------ depth
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_depth_anything_v2(out: Path, imgs: list) -> Path:
    from depth_anything_v2_shim import import_depth_anything_v2

    DepthAnythingV2 = import_depth_anything_v2()
    torch.manual_seed(SEED)
    # The official `vits` configuration (run.py's model_configs).
    net = DepthAnythingV2(encoder='vits', features=64, out_channels=[48, 96, 192, 384]).eval()
    batch = to_batch(imgs[:3], 518, 518, IMAGENET_MEAN, IMAGENET_STD)
    head = net.depth_head.scratch.output_conv2
    # Positive, spatially varying inverse depth (a random init leaves zeros after the last ReLU).
    condition_layer(net, head[0], batch, 1.0)
    condition_layer(net, head[2], batch, 1.0, bias_quantile=0.01, bias_to=0.05)
    path = out / 'depth_anything_v2_vits.onnx'
    torch.onnx.export(net, (torch.zeros(1, 3, 518, 518),), str(path), opset_version=OPSET,
                      input_names=['image'], output_names=['depth'], dynamo=False)
    set_metadata(path, {'model': 'depth_anything_v2', 'encoder': 'vits',
                        'description': 'Depth Anything V2 ViT-S/14 + DPT, random weights (test)'})
    return path


@torch.no_grad()
def check_export(net: nn.Module, path: Path, x: torch.Tensor, atol: float) -> None:
    """Fail unless ONNX Runtime gives the torch network's output on `x` (within atol)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    want = net(x).numpy()
    err = float(np.abs(got - want).max())
    if err > atol:
        raise RuntimeError(f'{path.name}: ONNX Runtime differs from the torch network by {err}')
    print(f'{path.name}: ONNX Runtime = torch forward within {err:.2g}', flush=True)


def build_depth_anything_v2_metric(out: Path, imgs: list, dataset: str = 'hypersim',
                                   max_depth: float = 20.0) -> Path:
    """Build the official metric-depth network (metric_depth/ of the official repository), ViT-S.

    Conditioned so the metres spread like an indoor scene's: the head's last conv puts the
    Sigmoid's median at 3 m of max_depth 20 with about 0.5 m to 11 m within two standard
    deviations. The metadata says what the output is (`depth_kind: metric`, `max_depth`),
    which the node's `depth_output: auto` reads.
    """
    from depth_anything_v2_shim import import_depth_anything_v2_metric

    MetricDepthAnythingV2 = import_depth_anything_v2_metric()
    torch.manual_seed(SEED)
    net = MetricDepthAnythingV2(encoder='vits', features=64, out_channels=[48, 96, 192, 384],
                                max_depth=max_depth).eval()
    batch = to_batch(imgs[:3], 518, 518, IMAGENET_MEAN, IMAGENET_STD)
    head = net.depth_head.scratch.output_conv2
    condition_layer(net, head[0], batch, 1.0)
    median = 3.0 / max_depth
    condition_layer(net, head[2], batch, 1.0, bias_quantile=0.5,
                    bias_to=float(np.log(median / (1 - median))))
    name = f'depth_anything_v2_metric_{dataset}_vits'
    path = out / f'{name}.onnx'
    torch.onnx.export(net, (torch.zeros(1, 3, 518, 518),), str(path), opset_version=OPSET,
                      input_names=['image'], output_names=['depth'], dynamo=False)
    check_export(net, path, batch[:1], atol=1e-3 * max_depth)
    set_metadata(path, {'model': 'depth_anything_v2', 'encoder': 'vits', 'depth_kind': 'metric',
                        'max_depth': f'{max_depth:g}', 'dataset': dataset,
                        'description': 'Depth Anything V2 metric (ViT-S/14 + DPT, metres), '
                                       'random weights (test)'})
    return path


class MidasSmallStyle(nn.Module):
    """A small encoder-decoder with MiDaS v2.1-small's conventions.

    ImageNet-normalised RGB of any size that is a multiple of 32 in, relative inverse depth 1xHxW
    (ReLU) out.
    """

    def __init__(self, ch=(16, 32, 64, 128, 128)):
        super().__init__()
        self.down = nn.ModuleList()
        c_in = 3
        for c in ch:
            self.down.append(nn.Sequential(nn.Conv2d(c_in, c, 3, 2, 1), nn.BatchNorm2d(c),
                                           nn.ReLU(True)))
            c_in = c
        self.up = nn.ModuleList([nn.Sequential(nn.Conv2d(ch[i + 1] + ch[i], ch[i], 3, 1, 1),
                                               nn.BatchNorm2d(ch[i]), nn.ReLU(True))
                                 for i in reversed(range(len(ch) - 1))])
        self.head = nn.Sequential(nn.Conv2d(ch[0], 16, 3, 1, 1), nn.ReLU(True),
                                  nn.Conv2d(16, 1, 1), nn.ReLU(True))

    def forward(self, x):
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
        for up, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, scale_factor=2.0, mode='bilinear', align_corners=True)
            x = up(torch.cat([x, skip], 1))
        x = F.interpolate(x, scale_factor=2.0, mode='bilinear', align_corners=True)
        return self.head(x).squeeze(1)


def build_midas_style(out: Path, imgs: list) -> Path:
    torch.manual_seed(SEED)
    net = MidasSmallStyle().eval()
    batch = to_batch(imgs[:3], 256, 256, IMAGENET_MEAN, IMAGENET_STD)
    set_bn_stats(net, batch)
    condition_layer(net, net.head[2], batch, 1.0, bias_quantile=0.01, bias_to=0.05)
    path = out / 'midas_small_style.onnx'
    torch.onnx.export(net, (torch.zeros(1, 3, 256, 256),), str(path), opset_version=OPSET,
                      input_names=['image'], output_names=['depth'], dynamo=False,
                      dynamic_axes={'image': {2: 'height', 3: 'width'},
                                    'depth': {1: 'height', 2: 'width'}})
    set_metadata(path, {'model': 'midas', 'net_size': '256',
                        'description': 'MiDaS-convention small depth net, random weights (test)'})
    return path


# ----------------------------------------------------------------------------- segmentation
VOC_CLASSES = ('__background__', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')  # torchvision's order
SEG_INPUT_HW = (384, 640)


def import_torchvision_segmentation():
    """Import torchvision.models.segmentation without torchvision/__init__.py.

    The CPU torch wheel here has no torchvision C ops (torchvision's __init__ fails registering
    them); the segmentation models are plain torch code, so the package shells are stood in for.
    """
    import importlib.util
    import types

    root = importlib.util.find_spec('torchvision').submodule_search_locations[0]
    for name, sub in (('torchvision', ''), ('torchvision.models', '/models')):
        if name not in sys.modules:
            shell = types.ModuleType(name)
            shell.__path__ = [root + sub]
            sys.modules[name] = shell
    import torchvision.models.segmentation.lraspp as lraspp
    return lraspp


def lraspp_net(imgs: list) -> nn.Module:
    """Return torchvision's lraspp_mobilenet_v3_large (21 classes), random weights, conditioned.

    BatchNorm statistics from the calibration frames; both classifier convolutions rescaled so
    the logits spread like a trained model's (std about 2 per class), then each class's bias
    shifted so its median logit is the same: the argmax map is spatially varied (many classes,
    regions and boundaries), not one class everywhere. Deterministic (seeded).
    """
    lraspp = import_torchvision_segmentation()
    torch.manual_seed(SEED)
    net = lraspp.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                           num_classes=len(VOC_CLASSES)).eval()
    batch = to_batch(imgs, *SEG_INPUT_HW, IMAGENET_MEAN, IMAGENET_STD)
    set_bn_stats(net, batch)
    head = net.classifier
    condition_layer(net, head.low_classifier, batch, 1.0)
    condition_layer(net, head.high_classifier, batch, 1.5)
    with torch.no_grad():
        logits = net(batch)['out']  # (B, C, H, W)
        median = logits.transpose(0, 1).reshape(logits.shape[1], -1)[:, ::97].median(1).values
        head.high_classifier.bias.sub_(median)
    return net


class _SegLogits(nn.Module):
    """The `out` logits tensor of torchvision's dict output (what an ONNX export carries)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image):
        return self.net(image)['out']


def build_lraspp(out: Path, imgs: list) -> Path:
    net = _SegLogits(lraspp_net(imgs)).eval()
    path = out / 'lraspp_mobilenet_v3_large.onnx'
    torch.onnx.export(net, (torch.zeros(1, 3, *SEG_INPUT_HW),), str(path), opset_version=OPSET,
                      input_names=['image'], output_names=['logits'], dynamo=False)
    names = '{' + ', '.join(f'{i}: {n!r}' for i, n in enumerate(VOC_CLASSES)) + '}'
    set_metadata(path, {'model': 'lraspp_mobilenet_v3_large', 'task': 'segmentation',
                        'names': names,
                        'description': 'torchvision LR-ASPP MobileNetV3-Large, random '
                                       'weights (test)'})
    return path


BUILDERS = {
    'yolov8n': lambda out, imgs: [build_yolo('yolov8n.yaml', out, imgs)],
    'yolo11n': lambda out, imgs: [build_yolo('yolo11n.yaml', out, imgs)],
    'yolo26n': lambda out, imgs: [build_yolo('yolo26n.yaml', out, imgs)],
    'yolo11n-obb': lambda out, imgs: [build_yolo_obb('yolo11n-obb.yaml', out, imgs)],
    'yolov8n-seg': lambda out, imgs: [build_yolo('yolov8n-seg.yaml', out, imgs)],
    'yolo11n-seg': lambda out, imgs: [build_yolo('yolo11n-seg.yaml', out, imgs)],
    'rtdetr-l': build_rtdetr,
    'depth_anything_v2_vits': lambda out, imgs: [build_depth_anything_v2(out, imgs)],
    'midas_small_style': lambda out, imgs: [build_midas_style(out, imgs)],
    'depth_anything_v2_metric_hypersim_vits':
        lambda out, imgs: [build_depth_anything_v2_metric(out, imgs)],
    'lraspp_mobilenet_v3_large': lambda out, imgs: [build_lraspp(out, imgs)],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=ROOT / '.cache' / 'models')
    ap.add_argument('--only', nargs='*', choices=sorted(BUILDERS), help='build only these')
    args = ap.parse_args()
    names = args.only or sorted(BUILDERS)
    args.out.mkdir(parents=True, exist_ok=True)
    if len(names) > 1:
        # One process per model: a build leaves state behind in torch / ultralytics that
        # changes the next export's bytes, so each model is built as if it were the only one.
        for name in names:
            subprocess.run([sys.executable, __file__, '--out', str(args.out), '--only', name],
                           check=True)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True, warn_only=True)
    imgs = calibration_images()
    hashes = {}
    t0 = time.monotonic()
    for path in BUILDERS[names[0]](args.out, imgs):
        hashes[path.name] = file_sha256(path)
        print(f'{path.name}: {path.stat().st_size / 1e6:.1f} MB sha256 '
              f'{hashes[path.name][:16]} ({time.monotonic() - t0:.0f} s)', flush=True)
    index = args.out / 'test_models.json'
    known = json.loads(index.read_text()) if index.exists() else {}
    known.update(hashes)
    index.write_text(json.dumps(known, indent=1, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
