"""Directories that only this user can write: where compiled artifacts are cached and loaded.

A cache of engines, converted models or GPU kernel images is code the process later loads and
runs, so a directory another user can write is refused: planting or swapping a file there would
change what runs. `private_dir(path, what)` creates the missing directories (mode 0700) and
returns the resolved path, or raises `UnsafeDirectory` with the reason and the fix (a chmod or
chown command, or another directory). Pure Python; on systems without POSIX owners (no
`os.geteuid`) nothing is checked.

The rules, for the directory and every directory above it (as given and after symlinks):
- owned by this user or root;
- the directory itself writable by its owner only (a sticky bit does not help there: another
  user could still create a file under the name the cache looks for);
- a directory above it group/world-writable only with the sticky bit (as /tmp is), so nobody
  else can rename or replace what lies below.
"""
from __future__ import annotations

import os
from pathlib import Path
import stat
from typing import Iterator, Set

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class UnsafeDirectory(ValueError):
    """A cache directory another user can write; the message says how to fix it."""


def user_cache_dir(env_var: str, name: str) -> Path:
    """Return $`env_var` if set, else $XDG_CACHE_HOME (~/.cache)/faster_deployment_ros/`name`."""
    base = os.environ.get(env_var)
    if base:
        return Path(base)
    cache = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache'))
    return cache / 'faster_deployment_ros' / name


def _owner(uid: int) -> str:
    try:
        import pwd
        return f'{pwd.getpwuid(uid).pw_name} (uid {uid})'
    except (ImportError, KeyError):
        return f'uid {uid}'


def _ancestors(path: Path) -> Iterator[Path]:
    seen: Set[Path] = set()
    for p in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        for a in p.parents:
            if a not in seen:
                seen.add(a)
                yield a


def check_private_dir(path: os.PathLike, what: str = 'cache directory') -> None:
    """Raise UnsafeDirectory unless the existing directory `path` is writable by us alone."""
    if not hasattr(os, 'geteuid'):
        return
    me = os.geteuid()
    trusted = {me, 0}
    where = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    st = os.stat(real)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f'{what} {where} is not a directory; choose a directory')
    shown = f'{where}' + (f' (-> {real})' if real != where else '')
    if st.st_uid not in trusted:
        raise UnsafeDirectory(
            f'{what} {shown} belongs to {_owner(st.st_uid)}, not to this user '
            f'({_owner(me)}): files there could be replaced by that user and would then be '
            f'loaded and run. Take it over (chown {_owner_arg(me)} {real}) or choose a '
            'directory of your own')
    if st.st_mode & _OTHERS_WRITE:
        raise UnsafeDirectory(
            f'{what} {shown} is writable by {_who(st.st_mode)} (mode '
            f'{stat.S_IMODE(st.st_mode):04o}): another user could plant a file there that '
            f'would be loaded and run. Restrict it (chmod go-w {real}) or choose a directory '
            'of your own')
    for parent in _ancestors(where):
        try:
            pst = os.stat(parent)
        except OSError:
            continue
        if pst.st_uid not in trusted:
            raise UnsafeDirectory(
                f'{what} {shown} lies inside {parent}, which belongs to {_owner(pst.st_uid)}: '
                'that user could replace the cache. Choose a directory of your own (or chown '
                f'{_owner_arg(me)} {parent})')
        if pst.st_mode & _OTHERS_WRITE and not pst.st_mode & stat.S_ISVTX:
            raise UnsafeDirectory(
                f'{what} {shown} lies inside {parent}, which is writable by '
                f'{_who(pst.st_mode)} without the sticky bit (mode '
                f'{stat.S_IMODE(pst.st_mode):04o}): another user could replace the cache. '
                f'Restrict it (chmod go-w {parent}, or chmod +t {parent} for a shared '
                'folder like /tmp) or choose a directory of your own')


def private_dir(path: os.PathLike, what: str = 'cache directory') -> Path:
    """Create `path` where missing (mode 0700), check it (check_private_dir), return it."""
    where = Path(os.path.abspath(path))
    missing = []
    p = where
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by a concurrent process: checked below
            pass
    check_private_dir(where, what)
    return where


def _who(mode: int) -> str:
    return ' and '.join(n for bit, n in ((stat.S_IWGRP, 'its group'),
                                         (stat.S_IWOTH, 'every user')) if mode & bit)


def _owner_arg(uid: int) -> str:
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


__all__ = ['UnsafeDirectory', 'check_private_dir', 'private_dir']
