"""scripts/link_identical_files.py: identical files across venvs become one inode, nothing else."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'scripts' / 'link_identical_files.py'
spec = importlib.util.spec_from_file_location('link_identical_files', SCRIPT)
link = importlib.util.module_from_spec(spec)
spec.loader.exec_module(link)


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_identical_files_share_an_inode_and_keep_their_bytes(tmp_path):
    big = os.urandom(100_000)
    a = _write(tmp_path / 'venv-a/lib/torch/lib.so', big, 0o755)
    b = _write(tmp_path / 'venv-b/lib/torch/lib.so', big, 0o755)
    c = _write(tmp_path / 'venv-c/lib/other/copy.bin', big, 0o755)
    linked, saved = link.link_identical([tmp_path / 'venv-a', tmp_path / 'venv-b',
                                         tmp_path / 'venv-c'])
    assert (linked, saved) == (2, 2 * len(big))
    assert a.stat().st_ino == b.stat().st_ino == c.stat().st_ino
    assert a.stat().st_nlink == 3
    assert b.read_bytes() == c.read_bytes() == big
    assert not list(tmp_path.rglob('*.fdr-link'))
    # A second run finds nothing left to do.
    assert link.link_identical([tmp_path]) == (0, 0)


def test_different_bytes_modes_small_files_bin_and_symlinks_are_left_alone(tmp_path):
    data = os.urandom(100_000)
    other = bytearray(data)
    other[-1] ^= 0xFF
    pairs = [
        # same size, one byte apart
        (_write(tmp_path / 'a/x.so', data), _write(tmp_path / 'b/x.so', bytes(other))),
        # same bytes, different modes
        (_write(tmp_path / 'a/y.so', data, 0o755), _write(tmp_path / 'b/y.so', data, 0o700)),
        # same bytes under bin/ (venv scripts)
        (_write(tmp_path / 'a/bin/tool', data, 0o750),
         _write(tmp_path / 'b/bin/tool', data, 0o750)),
        # below the size threshold
        (_write(tmp_path / 'a/small.py', b'x' * 100), _write(tmp_path / 'b/small.py', b'x' * 100)),
    ]
    (tmp_path / 'b/link.so').symlink_to(tmp_path / 'a/x.so')
    assert link.link_identical([tmp_path / 'a', tmp_path / 'b']) == (0, 0)
    for first, second in pairs:
        assert first.stat().st_ino != second.stat().st_ino
    assert (tmp_path / 'b/link.so').is_symlink()
    assert (tmp_path / 'b/x.so').read_bytes() == bytes(other)


def test_command_line_reports_what_it_saved(tmp_path):
    data = os.urandom(70_000)
    _write(tmp_path / 'a/f.bin', data)
    _write(tmp_path / 'b/f.bin', data)
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / 'a'), str(tmp_path / 'b'),
                          str(tmp_path / 'missing')],
                         check=True, capture_output=True, text=True).stdout
    assert out.strip() == '[link] 1 identical files linked across 2 directories, 0 MB saved'
