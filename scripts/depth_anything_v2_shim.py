"""Import the reference Depth Anything V2 code beside a torchvision that cannot load.

The only torchvision wheels on the index are CUDA builds; beside the CPU torch their ops library
fails to load ("operator torchvision::nms does not exist"), so `import torchvision` raises.
depth_anything_v2.dpt imports torchvision only for `transforms.Compose`, a plain function chain;
this puts a stand-in `Compose` in place for that one import and removes it again, so ultralytics
(which picks its own NMS when torchvision is not imported) is unaffected.
"""
from __future__ import annotations

import sys
import types


class Compose:
    """torchvision.transforms.Compose: call each transform on the result of the previous one."""

    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, sample):
        for t in self.transforms:
            sample = t(sample)
        return sample


def import_depth_anything_v2():
    """Return the reference DepthAnythingV2 class."""
    saved = {k: sys.modules.get(k) for k in ('torchvision', 'torchvision.transforms')}
    tv = types.ModuleType('torchvision')
    tvt = types.ModuleType('torchvision.transforms')
    tvt.Compose = Compose
    tv.transforms = tvt
    sys.modules.update({'torchvision': tv, 'torchvision.transforms': tvt})
    try:
        from depth_anything_v2.dpt import DepthAnythingV2
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return DepthAnythingV2


def reference_transforms():
    """Return the reference's own Resize / NormalizeImage / PrepareForNet (MiDaS' transforms)."""
    import_depth_anything_v2()
    from depth_anything_v2.util.transform import NormalizeImage, PrepareForNet, Resize

    return Resize, NormalizeImage, PrepareForNet


def import_depth_anything_v2_metric():
    """Return the official metric-depth Depth Anything V2 network, built on the package's classes.

    The `depth-anything-v2` package holds the relative model only. The official repository's
    metric model (metric_depth/depth_anything_v2/dpt.py: the Hypersim indoor and Virtual KITTI
    outdoor checkpoints) is the same ViT + DPT with two differences, reproduced here by
    subclassing: the head's last activation is a Sigmoid instead of ReLU (+ Identity), and the
    forward multiplies the head's output by `max_depth` (20 indoor, 80 outdoor) with no final
    ReLU, so the output is metres in (0, max_depth). Parameter names are unchanged (the
    activations hold no weights), so the official metric checkpoints load into it.
    """
    import torch.nn as nn

    base = import_depth_anything_v2()

    class MetricDepthAnythingV2(base):
        def __init__(self, encoder='vitl', features=256, out_channels=(256, 512, 1024, 1024),
                     use_bn=False, use_clstoken=False, max_depth=20.0):
            super().__init__(encoder=encoder, features=features, out_channels=list(out_channels),
                             use_bn=use_bn, use_clstoken=use_clstoken)
            self.max_depth = max_depth
            head = self.depth_head.scratch.output_conv2
            self.depth_head.scratch.output_conv2 = nn.Sequential(head[0], head[1], head[2],
                                                                 nn.Sigmoid())

        def forward(self, x):
            patch_h, patch_w = x.shape[-2] // 14, x.shape[-1] // 14
            features = self.pretrained.get_intermediate_layers(
                x, self.intermediate_layer_idx[self.encoder], return_class_token=True)
            depth = self.depth_head(features, patch_h, patch_w) * self.max_depth
            return depth.squeeze(1)

    return MetricDepthAnythingV2
