"""Files written whole or not at all: write to a temporary file beside, then rename."""
from __future__ import annotations

import os
from pathlib import Path
import tempfile


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so a crash or a concurrent writer never leaves half a file.

    The parent folder is created if missing; the temporary file is removed on failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:  # noqa: B902 - remove the temporary file, then re-raise
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


__all__ = ['atomic_write']
