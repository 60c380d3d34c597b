"""Video / image folder -> rosbag2 MCAP, read back with rosbags, compared with OpenCV's frames."""
from __future__ import annotations

import json

import cv2
from faster_deployment_ros.core.image_codec import decode_compressed, msg_to_numpy
from faster_deployment_ros.tools import bag_cli
from faster_deployment_ros.tools.bag_types import make_typestore, normalize_type, register_types
from faster_deployment_ros.tools.video_to_bag import video_to_bag
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

START = 1_700_000_000_123_456_789


def read_bag(path):
    store = make_typestore(())
    with Reader(path) as r:
        assert r.connections[0].ext.serialization_format == 'cdr'
        rows = [(c.topic, c.msgtype, ts, store.deserialize_cdr(d, c.msgtype))
                for c, ts, d in r.messages()]
        files = [p.name for p in path.iterdir()]
    assert any(f.endswith('.mcap') for f in files), files
    return rows


def video_frames(path, n):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def stamp_ns(msg):
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_video_to_bag_frames_timing_pixels(campus_video, tmp_path):
    s = video_to_bag(campus_video, tmp_path / 'bag', topic='/cam/image', frame_id='cam0',
                     max_frames=12, start_ns=START)
    assert (s.frames, s.fps, s.width, s.height) == (12, 10.0, 480, 360)
    assert s.announced_frames == 795 and s.warning is None  # 12 of 795 because we asked
    rows = read_bag(tmp_path / 'bag')
    assert len(rows) == 12
    ref = video_frames(campus_video, 12)
    for i, (topic, msgtype, ts, msg) in enumerate(rows):
        assert (topic, msgtype) == ('/cam/image', 'sensor_msgs/msg/Image')
        assert ts == stamp_ns(msg) == START + i * 100_000_000  # 10 fps, exact ns
        assert msg.header.frame_id == 'cam0'
        assert (msg.encoding, msg.step) == ('bgr8', 480 * 3)
        np.testing.assert_array_equal(msg_to_numpy(msg), ref[i])


def test_video_to_bag_50fps_mono(plaza_video, tmp_path):
    s = video_to_bag(plaza_video, tmp_path / 'bag', encoding='mono8', max_frames=3,
                     start_ns=START)
    assert (s.fps, s.width, s.height) == (50.0, 1280, 720)
    rows = read_bag(tmp_path / 'bag')
    ref = video_frames(plaza_video, 3)
    assert [r[2] - START for r in rows] == [0, 20_000_000, 40_000_000]
    for (_, _, _, msg), frame in zip(rows, ref):
        assert msg.encoding == 'mono8'
        np.testing.assert_array_equal(msg_to_numpy(msg), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))


def test_image_folder(dog_image_path, tmp_path):
    photo = cv2.imread(str(dog_image_path))
    folder = tmp_path / 'imgs'
    folder.mkdir()
    imgs = [photo, photo[::-1].copy(), photo[:, ::-1].copy(), photo[100:400, 50:600].copy()]
    for i, img in enumerate(imgs):
        cv2.imwrite(str(folder / f'frame_{i:03d}.png'), img)
    (folder / 'notes.txt').write_text('not an image')
    s = video_to_bag(folder, tmp_path / 'bag', fps=4, start_ns=START, encoding='rgb8')
    assert s.frames == 4 and s.fps == 4.0
    rows = read_bag(tmp_path / 'bag')
    assert [r[2] - START for r in rows] == [0, 250_000_000, 500_000_000, 750_000_000]
    for (_, _, _, msg), img in zip(rows, imgs):
        assert msg.encoding == 'rgb8' and (msg.height, msg.width) == img.shape[:2]
        np.testing.assert_array_equal(msg_to_numpy(msg), img[:, :, ::-1])


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
def test_compressed(campus_video, tmp_path, fmt):
    video_to_bag(campus_video, tmp_path / 'bag', max_frames=4, compressed=fmt, start_ns=START)
    rows = read_bag(tmp_path / 'bag')
    ref = video_frames(campus_video, 4)
    assert len(rows) == 4
    for (_, msgtype, ts, msg), frame in zip(rows, ref):
        assert msgtype == 'sensor_msgs/msg/CompressedImage'
        assert msg.format == f'bgr8; {fmt} compressed bgr8'
        img, enc = decode_compressed(msg.format, msg.data)
        assert enc == 'bgr8' and img.shape == frame.shape
        if fmt == 'png':
            np.testing.assert_array_equal(img, frame)
        else:
            assert np.abs(img.astype(np.int16) - frame).mean() < 4
            assert msg.data.size < frame.nbytes / 4


def test_cli_from_video_and_info(campus_video, tmp_path, capsys):
    out = tmp_path / 'bag'
    assert bag_cli.main(['from-video', str(campus_video), str(out), '--max-frames', '5',
                         '--topic', '/image', '--frame-id', 'camera']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['frames'] == 5 and summary['topic'] == '/image'
    assert bag_cli.main(['from-video', str(campus_video), str(out)]) == 2  # exists
    capsys.readouterr()
    assert bag_cli.main(['info', str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['topics'] == {'/image': {'type': 'sensor_msgs/msg/Image', 'count': 5}}
    assert abs(info['duration_s'] - 0.4) < 1e-6


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        video_to_bag(tmp_path / 'missing.avi', tmp_path / 'b1')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no images'):
        video_to_bag(tmp_path / 'empty', tmp_path / 'b2')
    (tmp_path / 'junk.avi').write_bytes(b'not a video' * 100)
    with pytest.raises(ValueError):
        video_to_bag(tmp_path / 'junk.avi', tmp_path / 'b3')
    with pytest.raises(ValueError, match='encoding'):
        video_to_bag(tmp_path / 'junk.avi', tmp_path / 'b4', encoding='yuv422')


def test_typestore_registers_vision_msgs_and_dependencies():
    store = make_typestore()
    for t in ('vision_msgs/msg/Detection2DArray', 'vision_msgs/msg/Detection2D',
              'vision_msgs/msg/ObjectHypothesisWithPose', 'vision_msgs/msg/BoundingBox2D',
              'vision_msgs/msg/Pose2D', 'vision_msgs/msg/Point2D'):
        assert t in store.types
    msgdef, _ = store.generate_msgdef('vision_msgs/msg/Detection2DArray', ros_version=2)
    assert 'MSG: vision_msgs/ObjectHypothesisWithPose' in msgdef
    assert normalize_type('vision_msgs/Detection2D') == 'vision_msgs/msg/Detection2D'
    assert normalize_type('vision_msgs.msg.Detection2D') == 'vision_msgs/msg/Detection2D'
    with pytest.raises(KeyError, match='no .msg definition'):
        register_types(store, ['no_such_pkg/msg/Nothing'])
