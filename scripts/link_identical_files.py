"""Hard-links byte-identical files across the given directories, to save disk.

The test-asset venvs (.venv-export, .venv-convert, .venv-rknn, .venv-modelopt) each hold the
same torch CPU wheel (about 750 MB installed) and several other identical packages. Linking
the identical files together takes a fresh clone's `make test` from about 8 GB to about 5 GB.

Contract:
- Only regular files of at least --min-size bytes, on one file system, are considered;
  symbolic links and everything under a `bin/` directory (scripts naming their own venv) are
  left alone.
- A file is replaced by a link to another only when both have the same size, mode and
  SHA-256; the replacement is atomic (link to a temporary name, then rename over the file).
- Files that already share an inode are not read again, so a second run is quick.
- pip never writes into an installed file (it removes and re-creates), and Python writes
  bytecode through a rename, so a linked file never changes under another venv.

  python3 scripts/link_identical_files.py DIR [DIR ...]
"""
import argparse
import collections
import hashlib
import os
import sys


def _files(roots, min_size):
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != 'bin']
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if st.st_mode & 0o170000 == 0o100000 and st.st_size >= min_size:
                    yield path, st


def _digest(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.digest()


def link_identical(roots, min_size=65536):
    """Links identical files under `roots`; returns (files linked, bytes saved)."""
    by_size = collections.defaultdict(dict)  # (dev, size, mode) -> {inode: path}
    for path, st in _files(roots, min_size):
        by_size[(st.st_dev, st.st_size, st.st_mode)].setdefault(st.st_ino, path)
    linked = saved = 0
    for (_, size, _), inodes in by_size.items():
        if len(inodes) < 2:
            continue
        first = {}  # digest -> the path whose inode the others get
        for path in inodes.values():
            digest = _digest(path)
            keep = first.setdefault(digest, path)
            if keep is path:
                continue
            tmp = f'{path}.fdr-link'
            try:
                os.link(keep, tmp)
                os.replace(tmp, path)
            except OSError as e:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                print(f'[link] could not link {path} to {keep} ({e}); left as it is',
                      file=sys.stderr)
                continue
            linked += 1
            saved += size
    return linked, saved


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('dirs', nargs='+')
    ap.add_argument('--min-size', type=int, default=65536)
    args = ap.parse_args()
    roots = [d for d in args.dirs if os.path.isdir(d)]
    linked, saved = link_identical(roots, args.min_size)
    if linked:
        print(f'[link] {linked} identical files linked across {len(roots)} directories, '
              f'{saved / 2**20:.0f} MB saved')


if __name__ == '__main__':
    main()
