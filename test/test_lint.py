"""Lint with the ROS 2 conventions: flake8 with ament_flake8's settings and plugin set.

The settings live in setup.cfg ([flake8], copied from ament_flake8.ini: line length 99, google
import order, pep257 docstrings minus ament's ignore list), so `python -m flake8` from the
repository root gives the same answer as this test. On failure the message lists the warnings
by file, then a count per code, so each can be fixed where it is.
"""
from __future__ import annotations

import collections
from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ['faster_deployment_ros', 'test', 'scripts', 'benchmarks', 'launch', 'setup.py']
#: ament_flake8's plugins (its package.xml), as flake8 --version names them
PLUGINS = ('flake8-blind-except', 'flake8-builtins', 'flake8-class-newline',
           'flake8-comprehensions', 'flake8-deprecated', 'flake8-docstrings',
           'flake8_import_order', 'flake8-quotes')
LINE = re.compile(r'^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): '
                  r'(?P<code>[A-Z]+\d+) (?P<text>.*)$')


def flake8(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'flake8', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_flake8_and_the_ament_plugins_are_installed():
    proc = flake8('--version')
    assert proc.returncode == 0, ('flake8 is missing: pip install -r requirements/dev.txt\n'
                                  + proc.stderr)
    names = proc.stdout.replace('\n', '')  # the list wraps lines inside names too
    missing = [p for p in PLUGINS if p not in names]
    assert not missing, f'flake8 plugins missing (requirements/dev.txt): {missing}'


def test_setup_cfg_holds_the_ament_settings():
    text = (ROOT / 'setup.cfg').read_text()
    assert 'max-line-length = 99' in text and 'import-order-style = google' in text
    assert 'extend-ignore = C816,D100,D101,D102,D103,D104,D105,D106,D107,D203,D212,D404,I202' \
        in text


@pytest.mark.slow
def test_no_lint_warnings():
    if flake8('--version').returncode != 0:
        pytest.fail('flake8 is missing: pip install -r requirements/dev.txt')
    proc = flake8(*PATHS)
    found = [m for m in map(LINE.match, proc.stdout.splitlines()) if m]
    if proc.returncode == 0 and not found:
        return
    assert found, f'flake8 failed without warnings:\n{proc.stdout}\n{proc.stderr}'
    by_file = collections.defaultdict(list)
    for m in found:
        by_file[m['path']].append(f'  {m["line"]}:{m["col"]} {m["code"]} {m["text"]}')
    codes = collections.Counter(m['code'] for m in found)
    lines = [f'{len(found)} flake8 warnings in {len(by_file)} files '
             '(python -m flake8 from the repository root shows the same):']
    for path in sorted(by_file):
        lines += [f'{path} ({len(by_file[path])})', *by_file[path]]
    lines.append('by code: ' + ', '.join(f'{c} {n}' for c, n in codes.most_common()))
    pytest.fail('\n'.join(lines), pytrace=False)
