"""Depth to points and 2D boxes to 3D (core/geometry.py), against known geometry and real frames.

The synthetic scene is rendered by ray casting (a plane at Z = 2 m, fronto-parallel boxes in
front), so every point and box is known exactly. The real-frame references are independent
per-pixel loops of depth_image_proc's point_cloud_xyz formula (convertDepth) and of the box
lifting rule, run on the project's depth model's output for a real frame (scaled to metres).
"""
from __future__ import annotations

import math
import statistics

from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.geometry import CameraModel, depth_to_points, detections_to_3d
from faster_deployment_ros.models import create_adapter
import numpy as np
import pytest
from support.golden import model_path, read_frame
from support.shared_data import shared_file

# A 640x480 camera with unequal focal lengths and an off-centre principal point.
CAM = CameraModel(fx=600.0, fy=580.0, cx=319.3, cy=241.7, width=640, height=480)
PLANE_Z = 2.0
# Fronto-parallel boxes: (X0, X1, Y0, Y1, Z) in metres, optical frame (x right, y down).
# All inside the image, none hiding another.
OBJECTS = [(-0.45, -0.15, -0.30, 0.20, 1.0),
           (0.10, 0.50, 0.00, 0.45, 1.5),
           (-0.05, 0.12, -0.25, -0.10, 0.8)]


def render(cam: CameraModel = CAM) -> np.ndarray:
    """Float64 depth of the scene: per pixel ray (u, v) the nearest surface hit."""
    u = np.arange(cam.width, dtype=np.float64)[None, :]
    v = np.arange(cam.height, dtype=np.float64)[:, None]
    rx, ry = (u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy  # ray direction, z = 1
    depth = np.full((cam.height, cam.width), PLANE_Z)
    for x0, x1, y0, y1, z in OBJECTS:
        hit = (rx * z >= x0) & (rx * z <= x1) & (ry * z >= y0) & (ry * z <= y1)
        depth = np.where(hit & (z < depth), z, depth)
    return depth


def ideal_boxes(cam: CameraModel = CAM) -> np.ndarray:
    """Each object's 2D box as a detector reports it: edges rounded to whole pixels."""
    boxes = []
    for x0, x1, y0, y1, z in OBJECTS:
        # camera coordinate u is pixel u's centre; its box edges are u - 0.5 .. u + 0.5
        boxes.append([cam.fx * x0 / z + cam.cx + 0.5, cam.fy * y0 / z + cam.cy + 0.5,
                      cam.fx * x1 / z + cam.cx + 0.5, cam.fy * y1 / z + cam.cy + 0.5])
    return np.round(np.array(boxes))


@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
def test_plane_and_boxes_reproduced_within_1mm(encoding):
    depth = render()
    img = (depth.astype(np.float32) if encoding == '32FC1'
           else np.round(depth * 1000).astype(np.uint16))
    pts = depth_to_points(img, CAM)
    assert pts.shape == (480, 640, 3) and pts.dtype == np.float32
    assert np.isfinite(pts).all()
    u = np.arange(640)[None, :]
    v = np.arange(480)[:, None]
    # Every point lies on the ray of its pixel at the rendered depth.
    np.testing.assert_allclose(pts[..., 2], depth, atol=1e-3, rtol=0)
    np.testing.assert_allclose(pts[..., 0], (u - CAM.cx) * depth / CAM.fx, atol=1e-3, rtol=0)
    np.testing.assert_allclose(pts[..., 1], (v - CAM.cy) * depth / CAM.fy, atol=1e-3, rtol=0)
    # The plane is Z = 2 and the boxes' fronts lie inside their known extents.
    on_plane = depth == PLANE_Z
    assert on_plane.sum() > 0.6 * depth.size  # the boxes cover the rest
    assert np.abs(pts[on_plane][:, 2] - PLANE_Z).max() <= 1e-3
    for x0, x1, y0, y1, z in OBJECTS:
        front = pts[depth == z]
        assert len(front) > 100
        assert np.abs(front[:, 2] - z).max() <= 1e-3
        assert front[:, 0].min() >= x0 - 1e-3 and front[:, 0].max() <= x1 + 1e-3
        assert front[:, 1].min() >= y0 - 1e-3 and front[:, 1].max() <= y1 + 1e-3
        # ... and fill them: the outermost points are within one pixel of the edges
        assert front[:, 0].min() <= x0 + z / CAM.fx and front[:, 0].max() >= x1 - z / CAM.fx


@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
@pytest.mark.parametrize('stride', [1, 3])
def test_boxes_lifted_to_known_centres_and_sizes(encoding, stride):
    depth = render()
    img = (depth.astype(np.float32) if encoding == '32FC1'
           else np.round(depth * 1000).astype(np.uint16))
    out = detections_to_3d(ideal_boxes(), img, CAM, stride=stride)
    assert out.valid.all() and (out.depth_pixels == out.core_pixels).all()
    for (x0, x1, y0, y1, z), c, s in zip(OBJECTS, out.centers, out.sizes):
        np.testing.assert_allclose(c, [(x0 + x1) / 2, (y0 + y1) / 2, z], atol=0.01, rtol=0)
        assert abs(s[0] / (x1 - x0) - 1) <= 0.02 and abs(s[1] / (y1 - y0) - 1) <= 0.02
        assert s[2] == pytest.approx(0.0, abs=1e-9)  # flat fronts: no depth spread


def test_median_ignores_holes_and_outliers():
    """A third of the core missing (0 mm) and a tenth wildly wrong: the median still holds."""
    rng = np.random.default_rng(7)
    img = np.round(render() * 1000).astype(np.uint16)
    holes = rng.random(img.shape) < 0.33
    outliers = ~holes & (rng.random(img.shape) < 0.10)
    img[holes] = 0
    img[outliers] = rng.integers(300, 9000, outliers.sum())
    out = detections_to_3d(ideal_boxes(), img, CAM)
    assert out.valid.all() and (out.depth_pixels < 0.75 * out.core_pixels).all()
    for (x0, x1, y0, y1, z), c in zip(OBJECTS, out.centers):
        np.testing.assert_allclose(c, [(x0 + x1) / 2, (y0 + y1) / 2, z], atol=0.01, rtol=0)
    # depth_to_points marks every hole NaN and nothing else
    pts = depth_to_points(img, CAM)
    assert (np.isnan(pts).all(-1) == holes).all() and not np.isnan(pts[~holes]).any()


def test_boxes_without_depth_are_reported_not_guessed():
    depth = render().astype(np.float32)
    boxes = ideal_boxes()
    x1, y1, x2, y2 = boxes[1].astype(int)
    depth[y1:y2, x1:x2] = np.nan                      # box 1: no valid depth
    depth[:5, :5] = np.inf
    boxes = np.vstack([boxes, [[700, 10, 760, 50],    # outside the image
                               [2, 1, 4, 3],          # tiny, over the inf corner
                               [50, 60, 40, 80]]])    # degenerate (x2 < x1)
    out = detections_to_3d(boxes, depth, CAM)
    assert out.valid.tolist() == [True, False, True, False, False, False]
    assert np.isnan(out.centers[~out.valid]).all() and np.isnan(out.sizes[~out.valid]).all()
    assert np.isfinite(out.centers[out.valid]).all()
    reasons = out.reasons()
    assert reasons[0] == '' and 'no valid depth' in reasons[1]
    assert 'outside' in reasons[3] and 'no valid depth' in reasons[4]
    # Negative and zero 32FC1 depths are no surface either.
    depth[y1:y2, x1:x2] = -1.0
    assert not detections_to_3d(boxes[1:2], depth, CAM).valid[0]
    # A minimum share of valid pixels is honoured.
    half = render().astype(np.float32)
    x1, y1, x2, y2 = boxes[0].astype(int)
    half[:, :(x1 + x2) // 2] = np.nan
    assert detections_to_3d(boxes[:1], half, CAM).valid[0]
    lifted = detections_to_3d(boxes[:1], half, CAM, min_valid_fraction=0.6)
    assert not lifted.valid[0] and 'too few' in lifted.reasons()[0]


def test_depth_extent_is_the_core_interquartile_range():
    """A box in front of a slanted surface: depth extent = IQR of its core's depths."""
    cam = CameraModel.from_k([500, 0, 99.5, 0, 500, 99.5, 0, 0, 1], 200, 200)
    depth = np.tile(np.linspace(1.0, 2.0, 200, dtype=np.float32), (200, 1))
    out = detections_to_3d([[40, 40, 160, 160]], depth, cam)
    core = depth[70:130, 70:130].astype(np.float64)
    q1, med, q3 = np.percentile(core, (25, 50, 75))
    assert out.centers[0, 2] == pytest.approx(med) and out.sizes[0, 2] == pytest.approx(q3 - q1)
    assert out.sizes[0, 0] == pytest.approx(120 * med / 500)


def test_16uc1_millimetres_32fc1_metres_invalid_and_stride():
    cam = CameraModel.from_k([100, 0, 3.5, 0, 120, 2.5, 0, 0, 1], 8, 6)
    mm = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 37 + 400)
    mm[2, 3] = 0
    metres = mm.astype(np.float32) / 1000
    metres[2, 3] = np.nan
    metres[4, 6] = np.inf
    metres[5, 0] = -np.inf
    p16, p32 = depth_to_points(mm, cam), depth_to_points(metres, cam)
    assert np.isnan(p16[2, 3]).all() and np.isnan(p32[2, 3]).all()
    assert np.isnan(p32[4, 6]).all() and np.isnan(p32[5, 0]).all()
    both = ~np.isnan(p32[..., 0])
    np.testing.assert_allclose(p16[both], p32[both], atol=1e-6)
    assert p16[1, 7].tolist() == pytest.approx(
        [(7 - 3.5) * mm[1, 7] / 1000 / 100, (1 - 2.5) * mm[1, 7] / 1000 / 120, mm[1, 7] / 1000])
    # stride keeps rows / columns 0, s, 2s, ... with their own pixel coordinates
    for s in (2, 3, 5):
        np.testing.assert_array_equal(depth_to_points(mm, cam, stride=s), p16[::s, ::s])
        assert depth_to_points(mm, cam, stride=s).shape == (math.ceil(6 / s), math.ceil(8 / s), 3)
    # depth_image_proc's invalid_depth: invalid pixels take that depth instead of NaN
    filled = depth_to_points(mm, cam, invalid_depth=5.0)
    assert filled[2, 3, 2] == pytest.approx(5.0) and filled[2, 3, 0] == pytest.approx(-0.025)
    np.testing.assert_array_equal(filled[mm != 0], p16[mm != 0])
    # float64 metres are float32 first (32FC1)
    np.testing.assert_array_equal(depth_to_points(metres.astype(np.float64), cam), p32)
    with pytest.raises(ValueError, match='uint16 millimetres'):
        depth_to_points(mm.astype(np.int32), cam)
    with pytest.raises(ValueError, match='stride'):
        depth_to_points(mm, cam, stride=0)
    # a camera model of another image size is refused, never a silently wrong cloud
    with pytest.raises(ValueError, match='describes a 8x6 image but the image is 6x8'):
        depth_to_points(mm.T.copy(), cam)
    with pytest.raises(ValueError, match='describes a 8x6 image'):
        detections_to_3d([[0, 0, 2, 2]], mm[:5], cam)


def test_camera_model_refuses_an_uncalibrated_camera():
    with pytest.raises(ValueError, match='uncalibrated'):
        CameraModel.from_k([0] * 9, 640, 480)
    with pytest.raises(ValueError, match='width and height'):
        CameraModel.from_k([500, 0, 320, 0, 500, 240, 0, 0, 1], 0, 480)
    cam = CameraModel.from_k([500, 0, 320, 0, 500, 240, 0, 0, 1], 640, 480,
                             distortion=[0.1, 0, 0, 0, 0])
    assert cam.has_distortion and cam.size_mismatch(640, 480) is None
    assert '640x480' in cam.size_mismatch(1280, 720)


# --- real frames ---------------------------------------------------------------------------

# A RealSense-like 1280x720 colour camera.
REAL_CAM = CameraModel(fx=910.46, fy=909.87, cx=639.27, cy=358.91, width=1280, height=720)


@pytest.fixture(scope='module')
def real_frame():
    return read_frame(shared_file('data/pedestrians_plaza_1280x720_50fps.avi'), 10)


@pytest.fixture(scope='module')
def real_depth(real_frame):
    """Return the test depth model's map of a real frame in 0.5 .. 10 m, with invalid patches."""
    with create_backend('onnxruntime', str(model_path('midas_small_style')), threads=1) as b:
        adapter = create_adapter('midas', b.inputs, b.outputs, b.metadata)
        inputs, meta = adapter.preprocess(real_frame)
        rel = adapter.postprocess(b.infer(inputs), meta).depth
    assert rel.shape == (720, 1280) and np.ptp(rel) > 0
    inv = (rel - rel.min()) / np.ptp(rel)  # relative inverse depth: near is large
    metres = (1.0 / (0.1 + 1.9 * inv)).astype(np.float32)
    metres[100:140, 200:260] = np.nan
    metres[600:605, :] = np.inf
    return metres


def reference_points(depth: np.ndarray, fx, fy, cx, cy) -> np.ndarray:
    """depth_image_proc's convertDepth, one pixel at a time, in double precision."""
    millimetres = depth.dtype == np.uint16
    h, w = depth.shape
    out = []
    for v, row in enumerate(depth.tolist()):
        for u, d in enumerate(row):
            if (d == 0) if millimetres else not math.isfinite(d):
                out.append((math.nan, math.nan, math.nan))
                continue
            z = d * 0.001 if millimetres else d
            out.append(((u - cx) * z / fx, (v - cy) * z / fy, z))
    return np.array(out).reshape(h, w, 3)


def float32_formula(depth: np.ndarray, v: int, cam: CameraModel) -> np.ndarray:
    """Return one row as depth_image_proc computes it: float32 operations in its order."""
    f = np.float32
    unit = float(f(0.001)) if depth.dtype == np.uint16 else 1.0
    kx, ky = f(unit / cam.fx), f(unit / cam.fy)
    row = []
    for u in range(depth.shape[1]):
        d = depth[v, u]
        ok = d != 0 if depth.dtype == np.uint16 else np.isfinite(d)
        if not ok:
            row.append((np.nan,) * 3)
            continue
        d = f(d)
        z = d * f(0.001) if depth.dtype == np.uint16 else d
        row.append(((f(u) - f(cam.cx)) * d * kx, (f(v) - f(cam.cy)) * d * ky, z))
    return np.array(row, np.float32)


@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
def test_real_depth_matches_depth_image_proc_formula(real_depth, encoding):
    depth = (real_depth if encoding == '32FC1'
             else np.where(np.isfinite(real_depth), np.round(real_depth * 1000), 0)
             .astype(np.uint16))
    pts = depth_to_points(depth, REAL_CAM)
    ref = reference_points(depth, REAL_CAM.fx, REAL_CAM.fy, REAL_CAM.cx, REAL_CAM.cy)
    invalid = np.isnan(ref[..., 0])
    assert invalid.sum() == 40 * 60 + 5 * 1280
    assert (np.isnan(pts).all(-1) == invalid).all() and not np.isnan(pts[~invalid]).any()
    assert np.abs(pts[~invalid] - ref[~invalid]).max() <= 1e-3
    assert np.abs(pts[~invalid] - ref[~invalid]).max() <= 1e-5  # float32 rounding only
    # ... and bit for bit what depth_image_proc's float arithmetic gives
    for v in (0, 359, 719):
        np.testing.assert_array_equal(pts[v], float32_formula(depth, v, REAL_CAM))
    np.testing.assert_array_equal(depth_to_points(depth, REAL_CAM, stride=2), pts[::2, ::2])


def reference_box(box, depth: np.ndarray, cam: CameraModel, fraction: float):
    """Lift one box pixel by pixel: median / IQR of the valid depths in its central `fraction`.

    A pixel is in the core when its centre (u + 0.5, v + 0.5) is.
    """
    x1, y1, x2, y2 = box
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    hx, hy = fraction * (x2 - x1) / 2, fraction * (y2 - y1) / 2
    zs = []
    for v in range(max(0, int(my - hy) - 1), min(depth.shape[0], int(my + hy) + 2)):
        if not my - hy <= v + 0.5 < my + hy:
            continue
        for u in range(max(0, int(mx - hx) - 1), min(depth.shape[1], int(mx + hx) + 2)):
            if mx - hx <= u + 0.5 < mx + hx:
                d = float(depth[v, u])
                if math.isfinite(d) and d > 0:
                    zs.append(d)
    if not zs:
        return None
    z = statistics.median(zs)
    q = statistics.quantiles(zs, n=4, method='inclusive')
    return ((mx - 0.5 - cam.cx) * z / cam.fx, (my - 0.5 - cam.cy) * z / cam.fy, z), \
        ((x2 - x1) * z / cam.fx, (y2 - y1) * z / cam.fy, q[2] - q[0])


def test_real_detections_lifted_as_the_reference(real_frame, real_depth):
    with create_backend('onnxruntime', str(model_path('yolov8n')), threads=1) as b:
        adapter = create_adapter('yolov8', b.inputs, b.outputs, b.metadata)
        inputs, meta = adapter.preprocess(real_frame)
        det = adapter.postprocess(b.infer(inputs), meta)
    assert len(det) >= 3, 'the plaza frame shows several people'
    boxes = np.vstack([det.boxes.astype(np.float64), [[200, 100, 260, 140]]])  # the NaN patch
    out = detections_to_3d(boxes, real_depth, REAL_CAM, core_fraction=0.5)
    for i, box in enumerate(boxes.tolist()):
        want = reference_box(box, real_depth, REAL_CAM, 0.5)
        if want is None:
            assert not out.valid[i] and np.isnan(out.centers[i]).all()
            continue
        assert out.valid[i]
        np.testing.assert_allclose(out.centers[i], want[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(out.sizes[i], want[1], rtol=1e-9, atol=1e-12)
    assert not out.valid[-1]
