"""Triton Inference Server backend: the model runs on a server, each worker one gRPC client.

`model_path` names the model on the server, in one of two forms:

- `triton://HOST:PORT/MODEL` or `triton://HOST:PORT/MODEL/VERSION`: server and model in one
  string (the form the YAMLs use);
- `MODEL`: a bare model name on the server of `triton.url` (default `localhost:8001`).

Options (`triton.<option>` parameters on the node): `url` (HOST:PORT of the server's gRPC
endpoint), `model_name`, `model_version` (empty: the server's version policy), `timeout_s`
(seconds one request may take, 0 = no limit; default 5), `shared_memory` (`auto`: tensors go
through system shared memory when the server is on this host, i.e. `url` is a loopback address;
`true`: always, a failure to set it up is an error; `false`: always over gRPC). A `url`,
`model_name` or `model_version` option that contradicts `model_path` is an error.

Inputs, outputs, shapes and dtypes come from the server's model metadata and config. A model
that batches (`max_batch_size` > 0) is reported with a batch of 1: each worker sends one frame
per request, and the server's dynamic batcher gathers the requests of all workers and clients.

Each instance (one per pipeline worker) holds one client and has one request in flight, so
`workers` is the number of concurrent requests; the pipeline returns results in order. A
failed request raises `BackendError` with the server's words; the instance then drops its
connection (and shared-memory regions) and the next `infer` connects afresh, so a server that
restarts is used again without restarting the node.
"""
from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import numpy as np

from .base import Backend, BackendError, flag_option, TensorSpec

LOG = logging.getLogger('faster_deployment_ros.backends.triton')

_OPTIONS = ('url', 'model_name', 'model_version', 'timeout_s', 'shared_memory')
DEFAULT_URL = 'localhost:8001'
DEFAULT_TIMEOUT_S = 5.0
SCHEME = 'triton://'
START_HINT = ('start it, e.g. `docker run --rm -p 8001:8001 nvcr.io/nvidia/tritonserver:<tag> '
              'tritonserver --model-repository=/models`, or for an .onnx file '
              '`.venv-triton/bin/python scripts/triton_onnx_server.py MODEL.onnx '
              '--address 0.0.0.0`; or point triton.url / model_path at a running one')
_REGION_IDS = itertools.count()
_REGION_LOCK = threading.Lock()


def _import_client() -> Tuple[Any, Any, Any]:
    """Return (tritonclient.grpc, tritonclient.utils, tritonclient.utils.shared_memory)."""
    try:
        import tritonclient.grpc as grpcclient
        import tritonclient.utils as utils
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendError('the triton backend needs the Triton client '
                           f'(pip install "tritonclient[grpc]"): {exc}') from exc
    try:
        import tritonclient.utils.shared_memory as shm
    except (ImportError, OSError):  # pragma: no cover - no POSIX shared memory here
        shm = None
    return grpcclient, utils, shm


def parse_model_path(model_path: str) -> Tuple[str, str, str]:
    """Return (url, model name, version) from `model_path`; url and version may be ''."""
    text = os.fspath(model_path).strip()
    if text.startswith(SCHEME):
        parts = urlsplit(text)
        path = [p for p in parts.path.split('/') if p]
        if not parts.netloc or not 1 <= len(path) <= 2:
            raise BackendError(f'model_path {text!r}: write triton://HOST:PORT/MODEL or '
                               'triton://HOST:PORT/MODEL/VERSION')
        return parts.netloc, path[0], path[1] if len(path) == 2 else ''
    if not text or '/' in text or '://' in text or text.endswith(('.onnx', '.engine', '.plan')):
        raise BackendError(f'model_path {text!r} is not a Triton model: the triton backend takes '
                           'triton://HOST:PORT/MODEL or the bare model name on the server of '
                           'triton.url (serve a file with scripts/triton_onnx_server.py)')
    return '', text, ''


def _merge(what: str, from_path: str, option: Any, default: str) -> str:
    value = '' if option is None else str(option).strip()
    if from_path and value and value != from_path:
        raise BackendError(f'triton.{what}={value!r} contradicts model_path ({from_path!r}): '
                           'set one of them')
    return from_path or value or default


def is_loopback(url: str) -> bool:
    """Whether `url` (HOST:PORT) names this host through a loopback address."""
    host = urlsplit('//' + url).hostname or ''
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _status(exc: Exception) -> str:
    status = getattr(exc, 'status', None)
    return str(status() if callable(status) else status or '')


def _message(exc: Exception) -> str:
    message = getattr(exc, 'message', None)
    text = message() if callable(message) else None
    return str(text or exc)


class TritonBackend(Backend):
    """A model on a Triton Inference Server, through one gRPC client per worker."""

    name = 'triton'
    #: the work runs on the server: `threads` has no meaning here; autotune sizes workers
    uses_threads = False

    def __init__(self, model_path: str, **options: Any) -> None:
        super().__init__(model_path, **options)
        self.check_options(_OPTIONS)
        self._grpc, self._utils, self._shm = _import_client()
        url, name, version = parse_model_path(model_path)
        self.url = _merge('url', url, options.get('url'), DEFAULT_URL)
        self.model_name = _merge('model_name', name, options.get('model_name'), '')
        self.model_version = _merge('model_version', version, options.get('model_version'), '')
        try:
            self.timeout_s = float(options.get('timeout_s', DEFAULT_TIMEOUT_S))
        except (TypeError, ValueError):
            raise BackendError('triton.timeout_s must be a number of seconds (0 = no limit), '
                               f'not {options.get("timeout_s")!r}') from None
        if not self.timeout_s >= 0 or self.timeout_s == float('inf'):
            raise BackendError(f'triton.timeout_s must be >= 0 (0 = no limit), '
                               f'not {self.timeout_s}')
        mode = flag_option(options.get('shared_memory', 'auto'), 'triton.shared_memory',
                           allow_auto=True)
        self._shm_wanted = is_loopback(self.url) if mode is None else mode
        self._shm_required = mode is True
        if self._shm_wanted and self._shm is None:
            if self._shm_required:
                raise BackendError('triton.shared_memory=true, but this Python has no POSIX '
                                   'shared memory (tritonclient.utils.shared_memory): set false')
            self._shm_wanted = False
        self._client: Any = None
        self._regions: List[Tuple[str, Any, int]] = []  # (name, handle, bytes)
        self._in_regions: List[Tuple[str, Any, int]] = []
        self._out_regions: List[Tuple[str, Any, int]] = []
        self._closed = False
        self.shared_memory = False
        self.max_batch_size = 0
        self._connect(first=True)

    # ---- connection ------------------------------------------------------------------------
    @property
    def _timeout(self) -> Optional[float]:
        return self.timeout_s or None

    @property
    def _where(self) -> str:
        version = f' version {self.model_version}' if self.model_version else ''
        return f'model {self.model_name!r}{version} on the Triton server at {self.url}'

    def _connect(self, first: bool = False) -> None:
        """Connect, check the model is ready, read its tensors, set up shared memory."""
        try:
            client = self._grpc.InferenceServerClient(self.url)
        except Exception as exc:  # noqa: B902 - a malformed url is refused here
            raise BackendError(f'triton.url {self.url!r}: {exc}') from exc
        try:
            self._check_ready(client)
            inputs, outputs, metadata = self._read_model(client)
            if first:
                self._inputs, self._outputs, self._metadata = inputs, outputs, metadata
            elif (inputs, outputs) != (self._inputs, self._outputs):
                raise BackendError(
                    f'{self._where} changed while the node ran: it now takes '
                    f'{self._describe(inputs)} -> {self._describe(outputs)}, was '
                    f'{self._describe(self._inputs)} -> {self._describe(self._outputs)}; '
                    'reconfigure the node')
            self._client = client
            self.shared_memory = False
            if self._shm_wanted:
                self._setup_shared_memory()
        except BaseException:  # noqa: B902 - release what was set up, then re-raise
            self._drop(client)
            raise

    def _check_ready(self, client: Any) -> None:
        try:
            client.is_server_live(client_timeout=self._timeout)
        except Exception as exc:  # noqa: B902 - InferenceServerException, gRPC errors
            raise BackendError(f'cannot reach the Triton server at {self.url} (gRPC): '
                               f'{_message(exc)}; {START_HINT}') from exc
        try:
            ready = client.is_model_ready(self.model_name, self.model_version,
                                          client_timeout=self._timeout)
        except Exception as exc:  # noqa: B902
            raise BackendError(f'{self._where}: readiness check failed: {_message(exc)}') from exc
        if not ready:
            raise BackendError(f'{self._where} is not ready (not found, or not loaded); the '
                               f'server has: {self._list_models(client)}. Set model_path to '
                               'triton://HOST:PORT/MODEL with one of them, or load it there')

    def _list_models(self, client: Any) -> str:
        """Return the models the server names: its repository index, the loaded ones' stats."""
        found: Dict[str, str] = {}
        try:
            index = client.get_model_repository_index(as_json=True,
                                                      client_timeout=self._timeout)
            for m in index.get('models', []):
                reason = f': {m["reason"]}' if m.get('reason') else ''
                found[m['name']] = f'{m.get("state", "?")}{reason}'
        except Exception as exc:  # noqa: B902 - the index may be restricted
            LOG.debug('model repository index of %s: %s', self.url, _message(exc))
        try:
            stats = client.get_inference_statistics(as_json=True, client_timeout=self._timeout)
            for m in stats.get('model_stats', []):
                found.setdefault(m['name'], 'READY')
        except Exception as exc:  # noqa: B902
            LOG.debug('inference statistics of %s: %s', self.url, _message(exc))
        if not found:
            return 'no model it will name'
        return ', '.join(f'{n} ({s})' for n, s in sorted(found.items()))

    def _read_model(self, client: Any) -> Tuple[List[TensorSpec], List[TensorSpec],
                                                Dict[str, str]]:
        try:
            meta = client.get_model_metadata(self.model_name, self.model_version, as_json=True,
                                             client_timeout=self._timeout)
            config = client.get_model_config(self.model_name, self.model_version, as_json=True,
                                             client_timeout=self._timeout).get('config', {})
        except Exception as exc:  # noqa: B902
            raise BackendError(f'{self._where}: cannot read its metadata: {_message(exc)}') \
                from exc
        self.max_batch_size = int(config.get('max_batch_size', 0) or 0)
        inputs = [self._spec(t) for t in meta.get('inputs', [])]
        outputs = [self._spec(t) for t in meta.get('outputs', [])]
        if not inputs or not outputs:
            raise BackendError(f'{self._where} reports no inputs or no outputs: {meta}')
        metadata = {k: v['string_value'] for k, v in config.get('parameters', {}).items()
                    if isinstance(v, dict) and 'string_value' in v}
        return inputs, outputs, metadata

    def _spec(self, tensor: Dict[str, Any]) -> TensorSpec:
        dims = [int(d) for d in tensor.get('shape', [])]
        if self.max_batch_size > 0:  # the server leaves the batch out of the shape (-1)
            dims = [1] + dims[1:] if dims and dims[0] == -1 else [1] + dims
        try:
            dtype = np.dtype(self._utils.triton_to_np_dtype(tensor['datatype']))
        except TypeError:
            dtype = None
        if dtype is None or dtype == np.dtype(object):
            raise BackendError(f'{self._where}: tensor {tensor["name"]!r} is '
                               f'{tensor["datatype"]}, which no model adapter reads')
        return TensorSpec(tensor['name'], tuple(d if d >= 0 else None for d in dims), dtype)

    @staticmethod
    def _describe(specs: Sequence[TensorSpec]) -> str:
        return ', '.join(f'{s.name}{tuple(s.shape)} {s.dtype}' for s in specs)

    def _setup_shared_memory(self) -> None:
        """Input and output regions in /dev/shm registered with the server (static shapes)."""
        specs = self._inputs + self._outputs
        if any(d is None for s in specs for d in s.shape):
            why = 'the model has dynamic dimensions'
        else:
            try:
                with _REGION_LOCK:
                    base = f'fdr_{os.getpid()}_{next(_REGION_IDS)}'
                for kind, group in (('in', self._inputs), ('out', self._outputs)):
                    for i, spec in enumerate(group):
                        size = int(np.prod(spec.shape)) * spec.dtype.itemsize
                        name = f'{base}_{kind}{i}'
                        handle = self._shm.create_shared_memory_region(name, '/' + name, size)
                        self._regions.append((name, handle, size))
                        self._client.register_system_shared_memory(
                            name, '/' + name, size, client_timeout=self._timeout)
                n = len(self._inputs)
                self._in_regions, self._out_regions = self._regions[:n], self._regions[n:]
                self.shared_memory = True
                return
            except Exception as exc:  # noqa: B902 - e.g. a server in a container, its own /dev/shm
                why = f'the server could not use it: {_message(exc)}'
                self._release_regions()
        if self._shm_required:
            raise BackendError(f'triton.shared_memory=true, but {why}: set it to auto or false')
        LOG.info('%s: tensors over gRPC, not shared memory (%s)', self._where, why)
        self._shm_wanted = False

    def _release_regions(self) -> None:
        client = self._client
        for name, handle, _ in self._regions:
            if client is not None:
                try:
                    client.unregister_system_shared_memory(name, client_timeout=1.0)
                except Exception as exc:  # noqa: B902 - the server may be gone
                    LOG.debug('unregistering %s: %s', name, _message(exc))
            try:
                self._shm.destroy_shared_memory_region(handle)
            except Exception as exc:  # noqa: B902
                LOG.debug('destroying %s: %s', name, exc)
        self._regions, self._in_regions, self._out_regions = [], [], []
        self.shared_memory = False

    def _drop(self, client: Any = None) -> None:
        """Forget the connection (and its regions); the next infer connects afresh."""
        self._client = self._client if client is None else client
        self._release_regions()
        if self._client is not None:
            try:
                self._client.close()
            except Exception as exc:  # noqa: B902
                LOG.debug('closing the gRPC client: %s', exc)
        self._client = None

    # ---- inference -------------------------------------------------------------------------
    def infer(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        if self._closed:
            raise BackendError('the triton backend was closed')
        if len(inputs) != len(self._inputs):
            raise BackendError(f'{self._where} takes {len(self._inputs)} input(s) '
                               f'({", ".join(s.name for s in self._inputs)}), got {len(inputs)}')
        arrays = [self._checked(spec, x) for spec, x in zip(self._inputs, inputs)]
        if self._client is None:
            self._connect()
        grpc = self._grpc
        requests, wanted = [], []
        for i, (spec, x) in enumerate(zip(self._inputs, arrays)):
            req = grpc.InferInput(spec.name, list(x.shape),
                                  self._utils.np_to_triton_dtype(x.dtype))
            if self.shared_memory:
                name, handle, size = self._in_regions[i]
                self._shm.set_shared_memory_region(handle, [x])
                req.set_shared_memory(name, size)
            else:
                req.set_data_from_numpy(x)
            requests.append(req)
        for i, spec in enumerate(self._outputs):
            out = grpc.InferRequestedOutput(spec.name)
            if self.shared_memory:
                out.set_shared_memory(self._out_regions[i][0], self._out_regions[i][2])
            wanted.append(out)
        try:
            result = self._client.infer(self.model_name, requests,
                                        model_version=self.model_version, outputs=wanted,
                                        client_timeout=self._timeout)
            return self._outputs_of(result)
        except Exception as exc:  # noqa: B902 - every failure: counted, told, reconnect next
            self._drop()
            raise self._error(exc) from exc

    def _checked(self, spec: TensorSpec, x: np.ndarray) -> np.ndarray:
        shape = tuple(np.shape(x))
        if len(shape) != len(spec.shape) or any(
                d is not None and d != s for d, s in zip(spec.shape, shape)):
            raise BackendError(f'input {spec.name!r}: {self._where} takes shape '
                               f'{tuple(spec.shape)} {spec.dtype}, got {shape}: the adapter '
                               'and the served model disagree (check model_family / '
                               'input_size against the model on the server)')
        x = np.asarray(x)
        if x.dtype != spec.dtype and not np.can_cast(x.dtype, spec.dtype, 'same_kind'):
            raise BackendError(f'input {spec.name!r}: {self._where} takes {spec.dtype}, got '
                               f'{x.dtype}')
        return np.ascontiguousarray(x, spec.dtype)

    def _outputs_of(self, result: Any) -> List[np.ndarray]:
        outs = []
        for i, spec in enumerate(self._outputs):
            if self.shared_memory:
                got = result.get_output(spec.name)
                shape = [int(d) for d in got.shape] if got is not None else list(spec.shape)
                arr = np.array(self._shm.get_contents_as_numpy(
                    self._out_regions[i][1], spec.dtype, shape))  # a copy: the region is reused
            else:
                arr = result.as_numpy(spec.name)
            if arr is None:
                raise BackendError(f'{self._where} returned no output {spec.name!r}')
            outs.append(arr)
        return outs

    def _error(self, exc: Exception) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        status, text = _status(exc), _message(exc)
        if 'DEADLINE_EXCEEDED' in status:
            return BackendError(f'{self._where}: no answer within {self.timeout_s:g} s '
                                f'(triton.timeout_s): {text}')
        if 'UNAVAILABLE' in status:
            return BackendError(f'the Triton server at {self.url} is unreachable: {text}; the '
                                'next frame reconnects')
        if 'NOT_FOUND' in status:
            return BackendError(f'{self._where} is not loaded: {text}')
        return BackendError(f'{self._where}: inference failed: {status} {text}'.replace('  ', ' '))

    def describe(self) -> str:
        """One line for logs: where the model runs and how tensors travel."""
        return (f'triton {self._where} max_batch_size={self.max_batch_size} '
                f'timeout_s={self.timeout_s:g} '
                f'tensors={"shared memory" if self.shared_memory else "gRPC"}')

    def close(self) -> None:
        self._closed = True
        self._drop()
