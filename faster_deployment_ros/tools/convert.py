"""`fdr-convert TARGET MODEL.onnx ...`: turn an ONNX model into a backend's own format.

Targets are discovered from modules `tools/convert_<target>.py`, each exposing
`add_arguments(parser)` and `run(args) -> int`, and optionally:
  HELP      one line for the target list,
  REQUIRES  modules the conversion imports (e.g. ('onnx', 'pnnx')),
  VENV      a converter venv beside the repo (e.g. '.venv-convert') to re-run in when a module in
            REQUIRES is missing here: converters need torch and old pins the node's venv must not.
Conversions report their steps through `Progress` and fail with `ConvertError` (a clear message,
exit status 2) instead of a traceback.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
import importlib
import importlib.util
import os
from pathlib import Path
import pkgutil
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

PACKAGE = 'faster_deployment_ros.tools'
REPO_ROOT = Path(__file__).resolve().parents[2]
_REEXEC_ENV = 'FDR_CONVERT_REEXEC'


class ConvertError(RuntimeError):
    """A conversion failed for a reason the user can act on; the message says which."""


def package_version(dist: str) -> str:
    """Return a converter package's installed version (for the sidecar), or 'unknown'."""
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # noqa: BLE001 - a version string is informational only
        return 'unknown'


class Progress:
    """Numbered steps on stderr, with a spinner and elapsed seconds while a step runs on a TTY."""

    _FRAMES = '|/-\\'

    def __init__(self, total: int, stream=None) -> None:
        self.total = total
        self.index = 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        self.index += 1
        prefix = f'[{self.index}/{self.total}] {text}'
        start = time.monotonic()
        stop = threading.Event()
        spinner = None
        if self.tty:
            def spin() -> None:
                i = 0
                while not stop.wait(0.2):
                    spent = time.monotonic() - start
                    self._write(f'\r{prefix} {self._FRAMES[i % 4]} {spent:.0f}s')
                    i += 1
            spinner = threading.Thread(target=spin, daemon=True)
            spinner.start()
        else:
            self._write(f'{prefix} ...\n')
        ok = False
        try:
            yield
            ok = True
        finally:
            stop.set()
            if spinner is not None:
                spinner.join()
            status = 'done' if ok else 'FAILED'
            end = f'{prefix} {status} ({time.monotonic() - start:.1f} s)'
            self._write(f'\r{end}   \n' if self.tty else f'{end}\n')

    def percent(self, done: int, total: int, text: str = '') -> None:
        """In-step progress for loops (e.g. calibration images)."""
        pct = 100.0 * done / max(total, 1)
        if self.tty:
            end = '\n' if done >= total else ''
            self._write(f'\r    {text} {done}/{total} ({pct:.0f}%){end}')
        elif done >= total or done % max(1, total // 10) == 0:
            self._write(f'    {text} {done}/{total} ({pct:.0f}%)\n')


def conversion_paths(args: argparse.Namespace, default_output: Path, suffix: str
                     ) -> Tuple[Path, Path, Optional[List[List[int]]]]:
    """Return (source ONNX, output file, --input-shape shapes or None) of a conversion.

    The source (``args.onnx``) must exist; the output is ``args.output`` or ``default_output``,
    resolved, with ``suffix`` appended when it ends otherwise.
    """
    from .onnx_info import parse_shape
    src = args.onnx.resolve()
    if not src.exists():
        raise ConvertError(f'{src} does not exist')
    out = (args.output or default_output).resolve()
    if out.suffix != suffix:
        out = out.with_name(out.name + suffix)
    shapes = [parse_shape(s) for s in args.input_shape] if args.input_shape else None
    return src, out, shapes


def describe_source(src: Path, shapes: Optional[List[List[int]]]) -> Dict[str, Any]:
    """Return onnx_info.describe of the source model; what it cannot read as a ConvertError."""
    from .onnx_info import describe
    try:
        return describe(src, shapes)
    except ValueError as exc:
        raise ConvertError(str(exc)) from None


def targets() -> Dict[str, str]:
    """Target name -> module name, from the `convert_<target>` modules beside this one."""
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith('convert_'):
            found[info.name[len('convert_'):]] = f'{PACKAGE}.{info.name}'
    return dict(sorted(found.items()))


def missing_modules(names: Sequence[str]) -> List[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


def converter_venv(name: str, override: Optional[str] = None) -> Optional[Path]:
    """Return the converter venv's python: --venv, else `name` in the repo root or cwd."""
    candidates = [Path(override)] if override else [REPO_ROOT / name, Path.cwd() / name]
    for venv in candidates:
        py = venv / 'bin' / 'python'
        if py.exists():
            return py
    return None


def _reexec(python: Path, argv: Sequence[str]) -> int:
    env = dict(os.environ)
    env[_REEXEC_ENV] = '1'
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get('PYTHONPATH', '')) if p)
    sys.stderr.write(f'(running in {python.parent.parent})\n')
    sys.stderr.flush()
    return subprocess.call([str(python), '-m', f'{PACKAGE}.convert', *argv], env=env)


def build_parser(modules: Dict[str, object]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='fdr-convert', description='Convert an ONNX model to a backend format.')
    parser.add_argument('--venv', default=None,
                        help='converter virtual environment to re-run in when this one lacks the '
                             "target's tools (default: the target's own, e.g. .venv-convert)")
    sub = parser.add_subparsers(dest='target', metavar='TARGET', required=True)
    for name, mod in modules.items():
        text = getattr(mod, 'HELP', '')
        p = sub.add_parser(name, help=text, description=text)
        mod.add_arguments(p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    modules = {}
    for name, modname in targets().items():
        try:
            modules[name] = importlib.import_module(modname)
        except Exception as exc:  # noqa: B902 - a broken target must not hide the others
            sys.stderr.write(f'warning: converter {name!r} unavailable: {exc}\n')
    parser = build_parser(modules)
    args = parser.parse_args(argv)
    mod = modules[args.target]
    missing = missing_modules(getattr(mod, 'REQUIRES', ()))
    if missing:
        venv_name = getattr(mod, 'VENV', None)
        python = converter_venv(venv_name, args.venv) if venv_name or args.venv else None
        if python is not None and not os.environ.get(_REEXEC_ENV) \
                and Path(sys.prefix).resolve() != python.parent.parent.resolve():
            return _reexec(python, argv)
        hint = f' (or its venv {venv_name}: bash scripts/test_assets.d/30_converters.sh)' \
            if venv_name else ''
        sys.stderr.write(f'error: {args.target} conversion needs {", ".join(missing)}, which '
                         f'{sys.executable} cannot import; install its requirements{hint}\n')
        return 2
    try:
        return int(mod.run(args) or 0)
    except ConvertError as exc:
        sys.stderr.write(f'error: {exc}\n')
        return 2
    except KeyboardInterrupt:
        sys.stderr.write('interrupted\n')
        return 130


if __name__ == '__main__':
    # Run the package's copy of this module, so ConvertError raised by targets is the one caught.
    from faster_deployment_ros.tools.convert import main as _main
    sys.exit(_main())
