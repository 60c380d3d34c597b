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
