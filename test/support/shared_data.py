"""Where the tests' data lives: the repository, its .cache and the shared test data (../shared)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))
CACHE = ROOT / '.cache'


def in_ci() -> bool:
    """Whether this is a CI run (CI=true), where missing test data is a failure, not a skip."""
    return os.environ.get('CI', '').lower() in ('true', '1', 'yes')


def shared_file(rel: str) -> Path:
    """Return a file of the shared test data.

    Skipped where it is absent, except in CI (CI=true), where the data is laid beside the clone and
    a missing file is a failure.
    """
    path = SHARED / rel
    if not path.exists():
        missing(f'{path} not found (the shared test data lives in ../shared)')
    return path


def missing(reason: str) -> None:
    """Skip the test for a missing prerequisite; in CI (CI=true), where it must exist, fail."""
    if in_ci():
        pytest.fail(f'{reason}; CI must have it', pytrace=False)
    pytest.skip(reason)


__all__ = ['CACHE', 'ROOT', 'SHARED', 'in_ci', 'missing', 'shared_file']
