"""Metric depth: the official metric Depth Anything V2 model, and which outputs give metres.

The model is the official repository's metric_depth network (Sigmoid head x max_depth 20, the
Hypersim indoor configuration) built from the reference code with conditioned random weights
(scripts/build_test_models.py), its ONNX metadata saying `depth_kind: metric`, `max_depth: 20`.
Golden results: the reference's transforms and interpolation around the same ONNX network
(scripts/make_golden.py), as for the relative model.

The rule (models/depth.py): `auto` gives metres exactly when the metadata says metric; a
request that contradicts the stated kind is refused with the fix; a relative model (or one that
states nothing) never gives metres without a user-supplied depth_scale.
"""
from __future__ import annotations

from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.types import TensorSpec
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.models.depth import DepthAdapter, DepthKindError
import numpy as np
import pytest
from support.golden import (assert_depth_close, depth_grid_index, golden_frames, load_golden,
                            model_path)

METRIC = 'depth_anything_v2_metric_hypersim_vits'
RELATIVE = 'depth_anything_v2_vits'


@pytest.fixture(scope='module')
def metric_case():
    golden, info = load_golden(METRIC)
    backend = create_backend('onnxruntime', str(model_path(METRIC)), threads=2)
    frames = golden_frames(info)
    yield golden, info, backend, frames
    backend.close()


def run(adapter, backend, img):
    inputs, meta = adapter.preprocess(img)
    return adapter.postprocess(backend.infer(inputs), meta)


def test_metric_model_states_its_kind(metric_case):
    golden, info, backend, frames = metric_case
    meta = backend.metadata
    assert meta['depth_kind'] == 'metric' and float(meta['max_depth']) == 20.0
    adapter = create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)
    assert adapter.family == 'depth_anything_v2' and adapter.output == 'metric'
    assert (adapter.depth_kind, adapter.max_depth, adapter.depth_scale) == ('metric', 20.0, 1.0)


def test_metric_model_matches_reference_in_metres(metric_case):
    golden, info, backend, frames = metric_case
    adapter = create_adapter('depth_anything_v2', backend.inputs, backend.outputs,
                             backend.metadata)
    for key, img in frames.items():
        dm = run(adapter, backend, img)
        assert dm.meaning == 'metric' and dm.depth.dtype == np.float32
        assert dm.depth.shape == img.shape[:2]
        rows, cols = depth_grid_index(*img.shape[:2], info['grid'])
        assert_depth_close(dm.depth[np.ix_(rows, cols)], golden[f'{key}/grid'], f'{METRIC} {key}')
        mean, std = golden[f'{key}/stats'][:2]
        np.testing.assert_allclose([dm.depth.mean(), dm.depth.std()], [mean, std], rtol=1e-3)
        # Metres of an indoor scene: inside (0, max_depth), spread over metres, not a constant.
        assert 0.0 < dm.depth.min() and dm.depth.max() < 20.0
        lo, hi = np.percentile(dm.depth, [5, 95])
        assert lo < 1.5 and hi > 6.0, (key, lo, hi)


def test_metric_depth_scale_multiplies(metric_case):
    golden, info, backend, frames = metric_case
    img = frames['campus10']
    plain = run(create_adapter('depth_anything_v2', backend.inputs, backend.outputs,
                               backend.metadata, output='metric'), backend, img)
    scaled = run(create_adapter('depth_anything_v2', backend.inputs, backend.outputs,
                                backend.metadata, output='metric', depth_scale=0.5), backend, img)
    np.testing.assert_allclose(scaled.depth, 0.5 * plain.depth, rtol=1e-6)


@pytest.mark.parametrize('output', ['relative_inverse', 'metric_from_inverse'])
def test_metric_model_refuses_relative_outputs(metric_case, output):
    golden, info, backend, frames = metric_case
    with pytest.raises(DepthKindError, match='depth_kind: metric.*use depth_output auto or '
                       'metric'):
        create_adapter('depth_anything_v2', backend.inputs, backend.outputs, backend.metadata,
                       output=output, depth_scale=1.0)


def test_relative_model_gives_metres_only_with_a_scale():
    """The relative test model carries no depth_kind: auto is relative, metric needs a scale."""
    with create_backend('onnxruntime', str(model_path(RELATIVE))) as b:
        assert 'depth_kind' not in b.metadata

        def make(**kw):
            return create_adapter('depth_anything_v2', b.inputs, b.outputs, b.metadata, **kw)

        auto = make()
        assert auto.output == 'relative_inverse' and auto.depth_kind is None
        with pytest.raises(DepthKindError, match='no depth_kind metadata.*set depth_scale: 1.0'):
            make(output='metric')
        with pytest.raises(DepthKindError, match='metric_from_inverse needs depth_scale'):
            make(output='metric_from_inverse')
        assert make(output='metric', depth_scale=1.0).output == 'metric'
        assert make(output='metric_from_inverse', depth_scale=0.5).output == 'metric_from_inverse'


IMG = [TensorSpec('image', (1, 3, 518, 518))]
OUT = [TensorSpec('depth', (1, 518, 518))]


@pytest.mark.parametrize('meta, output, scale, result', [
    ({'depth_kind': 'metric'}, 'auto', None, 'metric'),
    ({'depth_kind': 'Metric', 'max_depth': '80'}, 'metric', None, 'metric'),
    ({'depth_kind': 'relative'}, 'auto', None, 'relative_inverse'),
    ({'depth_kind': 'relative'}, 'metric_from_inverse', 2.0, 'metric_from_inverse'),
    ({}, 'auto', None, 'relative_inverse'),
    ({}, 'relative_inverse', None, 'relative_inverse'),
    ({}, 'metric', 1.0, 'metric'),
    ({'depth_kind': 'relative'}, 'metric', 1.0, 'depth_kind: relative'),
    ({'depth_kind': 'relative'}, 'metric', None, 'depth_kind: relative'),
    ({'depth_kind': 'metric'}, 'relative_inverse', None, 'use depth_output auto or metric'),
    ({'depth_kind': 'disparity'}, 'auto', None, "depth_kind='disparity' is not understood"),
    ({'depth_kind': 'metric', 'max_depth': 'far'}, 'auto', None, 'max_depth'),
    ({'depth_kind': 'metric', 'max_depth': '-3'}, 'auto', None, 'max_depth'),
    ({}, 'metric', 0.0, 'depth_scale must be > 0'),
])
def test_depth_kind_rule(meta, output, scale, result):
    if result in ('metric', 'relative_inverse', 'metric_from_inverse'):
        adapter = DepthAdapter(IMG, OUT, meta, output=output, depth_scale=scale)
        assert adapter.output == result
    else:
        with pytest.raises(DepthKindError, match=result):
            DepthAdapter(IMG, OUT, meta, output=output, depth_scale=scale)
