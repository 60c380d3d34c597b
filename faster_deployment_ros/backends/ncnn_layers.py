"""Custom ncnn layers implemented in Python, registered only for .param files that use them.

`fdr-convert ncnn` rewrites YOLOX/YOLOv5 "Focus" into layers ncnn has, so its models need none
of these. ncnn's own YOLOX/YOLOv5 model files (and onnx2ncnn conversions following them) instead
name a `YoloV5Focus` layer that ncnn leaves to the application; this module provides it, so
those files load too.
"""
from __future__ import annotations

from typing import List

import numpy as np


def _focus_layer_class(ncnn):
    class YoloV5Focus(ncnn.Layer):
        """Space-to-depth by 2 in YOLOX/YOLOv5's channel order.

        [x[::2, ::2], x[1::2, ::2], x[::2, 1::2], x[1::2, 1::2]] concatenated on channels.
        """

        def __init__(self):
            ncnn.Layer.__init__(self)
            self.one_blob_only = True

        def forward(self, bottom_blob, top_blob, opt):
            x = np.array(bottom_blob)  # (C, H, W)
            c, h, w = x.shape
            # (c, h/2, dy, w/2, dx) -> (dx, dy, c, h/2, w/2): groups ordered dx-major.
            y = x.reshape(c, h // 2, 2, w // 2, 2).transpose(4, 2, 0, 1, 3)
            y = y.reshape(4 * c, h // 2, w // 2)
            top_blob.clone_from(ncnn.Mat(np.ascontiguousarray(y)), opt.blob_allocator)
            return -100 if top_blob.empty() else 0

    return YoloV5Focus


class _Registry:
    """Keeps Python layer objects alive while ncnn holds them (ncnn only keeps raw pointers)."""

    def __init__(self, cls):
        self.cls = cls
        self.live: List[object] = []

    def create(self):
        layer = self.cls()
        self.live.append(layer)
        return layer

    def destroy(self, layer):
        for i, obj in enumerate(self.live):
            if obj is layer:
                del self.live[i]
                break


_FACTORIES = {'YoloV5Focus': _focus_layer_class}


def register_custom_layers(net, param_text: str) -> List[str]:
    """Register on `net` the custom layers that `param_text` uses; returns their type names."""
    used = {line.split(None, 1)[0] for line in param_text.splitlines()[2:] if line.strip()}
    names = [n for n in _FACTORIES if n in used]
    if not names:
        return []
    import ncnn
    registries = getattr(net, '_fdr_custom_layers', None)
    if registries is None:
        registries = []
    for name in names:
        reg = _Registry(_FACTORIES[name](ncnn))
        net.register_custom_layer(name, reg.create, reg.destroy)
        registries.append(reg)
    try:
        net._fdr_custom_layers = registries
    except AttributeError:  # pybind objects without __dict__: keep them module-wide instead
        _KEEP.extend(registries)
    return names


_KEEP: List[object] = []
