"""Depth adapter against the references.

Depth Anything V2 (official code, ViT-S/14 + DPT) and a MiDaS-convention model, on real frames;
maps compared at source resolution.

Golden results: the official transforms (float bicubic resize, ImageNet normalisation) and the
references' interpolation back (bilinear align_corners=True for Depth Anything V2, bicubic for
MiDaS), sampled on a grid of source pixels (scripts/make_golden.py).
"""
from __future__ import annotations

from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.types import DepthMap, TensorSpec
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.models.depth import (DepthAdapter, reference_size,
                                                resize_bilinear_align_corners)
import numpy as np
import pytest
from support.golden import (assert_depth_close, depth_grid_index, golden_frames, load_golden,
                            model_path)

FAMILY = {'depth_anything_v2_vits': 'depth_anything_v2', 'midas_small_style': 'midas'}


@pytest.fixture(scope='module', params=sorted(FAMILY))
def case(request):
    name = request.param
    golden, info = load_golden(name)
    backend = create_backend('onnxruntime', str(model_path(name)), threads=2)
    adapter = create_adapter(FAMILY[name], backend.inputs, backend.outputs, backend.metadata)
    frames = golden_frames(info)
    results = {}
    for key, img in frames.items():
        inputs, meta = adapter.preprocess(img)
        out = backend.infer(inputs)
        results[key] = (inputs, meta, out, adapter.postprocess(out, meta))
    yield name, golden, info, backend, adapter, frames, results
    backend.close()


def test_matches_reference(case):
    name, golden, info, backend, adapter, frames, results = case
    for key, img in frames.items():
        inputs, meta, out, dm = results[key]
        assert isinstance(dm, DepthMap) and dm.meaning == 'relative_inverse'
        assert dm.depth.shape == img.shape[:2] and dm.depth.dtype == np.float32
        assert tuple(inputs[0].shape[2:]) == tuple(golden[f'{key}/net_hw'])
        rows, cols = depth_grid_index(*img.shape[:2], info['grid'])
        assert_depth_close(dm.depth[np.ix_(rows, cols)], golden[f'{key}/grid'], f'{name} {key}')
        mean, std = golden[f'{key}/stats'][:2]
        np.testing.assert_allclose([dm.depth.mean(), dm.depth.std()], [mean, std], rtol=1e-3)


def test_network_sizes(case):
    """Fixed inputs are filled; dynamic ones get the reference's aspect-keeping size."""
    name, golden, info, backend, adapter, frames, results = case
    if name == 'depth_anything_v2_vits':
        assert adapter.fixed_size == (518, 518) and adapter.upsampling == 'bilinear_align_corners'
    else:
        # metadata net_size
        assert adapter.fixed_size is None and adapter.target_size == (256, 256)
        assert adapter.network_size((720, 1280)) == (128, 256)  # upper_bound, multiple of 32
        assert adapter.upsampling == 'bicubic'


def test_metric_outputs(case):
    name, golden, info, backend, adapter, frames, results = case
    inputs, meta, out, rel = results['campus10']
    scale, shift = 0.5, 0.1
    metric = create_adapter(FAMILY[name], backend.inputs, backend.outputs, backend.metadata,
                            output='metric_from_inverse', depth_scale=scale,
                            depth_shift=shift).postprocess(out, meta)
    assert metric.meaning == 'metric' and metric.depth.dtype == np.float32
    inv = rel.depth
    expect = np.where(scale * inv + shift > 0, 1.0 / (scale * inv + shift), np.nan)
    np.testing.assert_allclose(metric.depth, expect, rtol=1e-5, equal_nan=True)
    # Bicubic overshoot can leave small negative inverse depths: those pixels are NaN (invalid).
    assert np.isfinite(metric.depth).mean() > 0.98
    negative = create_adapter(FAMILY[name], backend.inputs, backend.outputs, backend.metadata,
                              output='metric_from_inverse', depth_scale=1.0,
                              depth_shift=-float(np.median(inv))).postprocess(out, meta)
    finite = negative.depth[np.isfinite(negative.depth)]
    assert np.isnan(negative.depth).any() and (finite > 0).all()
    raw = create_adapter(FAMILY[name], backend.inputs, backend.outputs, backend.metadata,
                         output='metric', depth_scale=2.0).postprocess(out, meta)
    np.testing.assert_allclose(raw.depth, 2.0 * inv, rtol=1e-6)


def test_resize_bilinear_align_corners_matches_definition():
    rng = np.random.default_rng(0)
    x = rng.random((5, 7)).astype(np.float32)
    y = resize_bilinear_align_corners(x, (9, 13))
    assert y.shape == (9, 13)
    # Corners map onto corners; every sample is the bilinear blend at (i*(h-1)/(H-1), ...).
    np.testing.assert_allclose(y[[0, 0, -1, -1], [0, -1, 0, -1]],
                               x[[0, 0, -1, -1], [0, -1, 0, -1]])
    yy, xx = 4 * (5 - 1) / (9 - 1), 6 * (7 - 1) / (13 - 1)
    y0, x0 = int(yy), int(xx)
    fy, fx = yy - y0, xx - x0
    blend = ((1 - fy) * ((1 - fx) * x[y0, x0] + fx * x[y0, x0 + 1])
             + fy * ((1 - fx) * x[y0 + 1, x0] + fx * x[y0 + 1, x0 + 1]))
    np.testing.assert_allclose(y[4, 6], blend, rtol=1e-6)


def test_reference_size_rules():
    # Depth Anything V2: lower bound 518, multiples of 14 (its infer_image on a 1280x720 frame).
    assert reference_size((720, 1280), (518, 518), 14, 'lower_bound') == (518, 924)
    assert reference_size((480, 640), (518, 518), 14, 'lower_bound') == (518, 686)
    # MiDaS: upper bound, multiples of 32.
    assert reference_size((576, 768), (384, 384), 32, 'upper_bound') == (288, 384)
    assert reference_size((720, 1280), (384, 384), 32, 'upper_bound',
                          keep_aspect_ratio=False) == (384, 384)


def test_rejects_non_depth_models():
    img = [TensorSpec('image', (1, 3, 518, 518))]
    with pytest.raises(ValueError, match='output'):
        DepthAdapter(img, [TensorSpec('output0', (1, 84, 8400))], {})
    with pytest.raises(ValueError, match='output must be'):
        DepthAdapter(img, [TensorSpec('depth', (1, 518, 518))], {}, output='disparity')
