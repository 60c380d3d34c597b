"""What the TensorRT stand-ins share: engines that really run the network.

Written from NVIDIA's published TensorRT Python API reference and migration guides (8.6, 10.x,
11.x); only names, signatures, return values and error conventions are modelled, not TensorRT's
code. Each version module (trt86, trt10, trt11) builds a module from these parts and exposes
only the names that version has, so a call to a removed name raises AttributeError as the real
module does. Error conventions kept: builders and deserialisers return None and log through the
ILogger; set_input_shape / set_tensor_address / execute_async_v3 return False; OnnxParser.parse
returns False with errors in get_error(i).

The "engine" is the ONNX model's bytes with a JSON header (TensorRT version, I/O, profile,
build flags, the sha256 of the bytes: a truncated or corrupt plan does not deserialize).
execute_async_v3 waits for the stream, copies each input from its device address to the host
(cuda-python), runs ONNX Runtime on the CPU and copies each output back to its device address.
Differences from TensorRT, on purpose: building needs no GPU; fp16/int8 flags are recorded,
the arithmetic stays that of the ONNX model (fp32 unless the ONNX itself is converted, which
is what strongly typed 11.x builds use).
"""
from __future__ import annotations

import enum
import hashlib
import json
from pathlib import Path
import struct
import threading
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

MAGIC = b'FDRSTANDIN-TRT\0'

# TensorRT DataType names -> numpy, in the order of the reference's enum.
DTYPES = {'FLOAT': np.float32, 'HALF': np.float16, 'INT8': np.int8, 'INT32': np.int32,
          'BOOL': np.bool_, 'UINT8': np.uint8, 'FP8': None, 'BF16': None, 'INT64': np.int64,
          'INT4': None}
_ORT_TYPES = {'tensor(float)': 'FLOAT', 'tensor(float16)': 'HALF', 'tensor(int8)': 'INT8',
              'tensor(int32)': 'INT32', 'tensor(bool)': 'BOOL', 'tensor(uint8)': 'UINT8',
              'tensor(int64)': 'INT64'}
_ORT_NP = {'tensor(float)': np.float32, 'tensor(float16)': np.float16, 'tensor(int8)': np.int8,
           'tensor(int32)': np.int32, 'tensor(bool)': np.bool_, 'tensor(uint8)': np.uint8,
           'tensor(int64)': np.int64}


def ort_input_types(sess: Any) -> Dict[str, Any]:
    """Input name -> the numpy type ONNX Runtime wants (engine I/O may be narrower)."""
    return {i.name: _ORT_NP.get(i.type, np.float32) for i in sess.get_inputs()}


class Spec:
    """What differs between versions: version text and the names each class/enum has."""

    def __init__(self, version: str, builder_flags: Sequence[str], network_flags: Sequence[str],
                 dtypes: Sequence[str], memory_pools: Sequence[str], weak_typing: bool,
                 calibrators: bool, progress_monitor: bool, bindings_api: bool,
                 execute_v2: bool) -> None:
        self.version = version
        self.major = int(version.split('.')[0])
        self.builder_flags = list(builder_flags)
        self.network_flags = list(network_flags)
        self.dtypes = list(dtypes)
        self.memory_pools = list(memory_pools)
        self.weak_typing = weak_typing              # FP16/INT8 flags, int8_calibrator
        self.calibrators = calibrators              # IInt8*Calibrator classes
        self.progress_monitor = progress_monitor    # IProgressMonitor (10.0+)
        self.bindings_api = bindings_api            # 8.x binding-index API and execute_async_v2
        self.execute_v2 = execute_v2                # execute_v2(bindings), removed in 11


def _cuda_driver() -> Any:
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver  # older cuda-python
    return driver


def _check(result: Any) -> Any:
    if not isinstance(result, tuple):
        result = (result,)
    if int(result[0]) != 0:
        raise RuntimeError(f'CUDA error {result[0]}')
    return result[1] if len(result) == 2 else None


def make_module(spec: Spec) -> Dict[str, Any]:
    """Return the names of one `tensorrt` version, as a dict for a module's namespace."""
    ns: Dict[str, Any] = {'__version__': spec.version}

    class _Severity(enum.IntEnum):

        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class ILogger:

        Severity = _Severity

        def log(self, severity: Any, msg: str) -> None:
            raise NotImplementedError

    class Logger(ILogger):

        INTERNAL_ERROR = _Severity.INTERNAL_ERROR
        ERROR = _Severity.ERROR
        WARNING = _Severity.WARNING
        INFO = _Severity.INFO
        VERBOSE = _Severity.VERBOSE

        def __init__(self, min_severity: Any = _Severity.WARNING) -> None:
            self.min_severity = min_severity
            self.messages: List[tuple] = []

        def log(self, severity: Any, msg: str) -> None:
            self.messages.append((severity, msg))
            if severity <= self.min_severity:
                import sys
                sys.stderr.write(f'[TRT stand-in {spec.version}] {msg}\n')

    DataType = enum.IntEnum('DataType', {n: i for i, n in enumerate(spec.dtypes)})
    BuilderFlag = enum.IntEnum('BuilderFlag', {n: i for i, n in enumerate(spec.builder_flags)})
    NetworkDefinitionCreationFlag = enum.IntEnum(
        'NetworkDefinitionCreationFlag', {n: i for i, n in enumerate(spec.network_flags)})
    MemoryPoolType = enum.IntEnum('MemoryPoolType',
                                  {n: i for i, n in enumerate(spec.memory_pools)})
    TensorIOMode = enum.IntEnum('TensorIOMode', {'NONE': 0, 'INPUT': 1, 'OUTPUT': 2})

    def nptype(trt_type: Any) -> type:
        np_type = DTYPES.get(DataType(trt_type).name)
        if np_type is None:
            raise TypeError('Could not resolve TensorRT datatype to an equivalent numpy datatype.')
        return np_type

    def volume(iterable: Sequence[int]) -> int:
        v = 1
        for d in iterable:
            v *= d
        return v

    class Dims(tuple):

        pass

    class IHostMemory(bytes):
        """Serialized data; the real one exposes the buffer protocol, as bytes does."""

        @property
        def nbytes(self) -> int:
            return len(self)

    class ITensor:

        def __init__(self, name: str, shape: Sequence[int], dtype: Any) -> None:
            self.name, self.shape, self.dtype = name, Dims(shape), dtype

    class INetworkDefinition:

        def __init__(self, flags: int) -> None:
            self._flags = int(flags)
            self._inputs: List[ITensor] = []
            self._outputs: List[ITensor] = []
            self._onnx = b''
            self._has_qdq = False

        @property
        def num_inputs(self) -> int:
            return len(self._inputs)

        @property
        def num_outputs(self) -> int:
            return len(self._outputs)

        def get_input(self, index: int) -> Optional[ITensor]:
            return self._inputs[index] if 0 <= index < len(self._inputs) else None

        def get_output(self, index: int) -> Optional[ITensor]:
            return self._outputs[index] if 0 <= index < len(self._outputs) else None

        @property
        def flags(self) -> int:
            return self._flags

        if spec.major < 10:
            @property
            def has_implicit_batch_dimension(self) -> bool:
                return not self._flags & (1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH))

    class ParserError:

        def __init__(self, desc: str) -> None:
            self._desc = desc

        def desc(self) -> str:
            return self._desc

        def __str__(self) -> str:
            return self._desc

    class OnnxParser:

        def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
            self._network, self._logger = network, logger
            self._errors: List[ParserError] = []

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, index: int) -> Optional[ParserError]:
            return self._errors[index] if 0 <= index < len(self._errors) else None

        def clear_errors(self) -> None:
            self._errors = []

        def parse_from_file(self, model: str) -> bool:
            try:
                data = Path(model).read_bytes()
            except OSError as exc:
                self._errors.append(ParserError(f'Failed to open file: {model} ({exc})'))
                return False
            return self.parse(data, model)

        def parse(self, model: bytes, path: Optional[str] = None) -> bool:
            net = self._network
            if spec.major < 10 and net.has_implicit_batch_dimension:
                self._errors.append(ParserError(
                    'The ONNX parser only supports networks with an explicit batch dimension'))
                return False
            import onnxruntime as ort
            try:
                sess = ort.InferenceSession(bytes(model), providers=['CPUExecutionProvider'])
            except Exception as exc:  # noqa: BLE001 - reported like the parser does
                self._errors.append(ParserError(f'ModelImporter: {exc}'))
                return False

            def tensors(args: Any) -> List[ITensor]:
                out = []
                for a in args:
                    name = _ORT_TYPES.get(a.type)
                    if name == 'INT64' and 'INT64' not in DataType.__members__:
                        # 8.x has no INT64: the ONNX parser casts such tensors down to INT32
                        self._logger.log(_Severity.WARNING, f'{a.name}: INT64 is not supported '
                                         'natively, attempting to cast down to INT32')
                        name = 'INT32'
                    if name is None or name not in DataType.__members__:
                        raise ValueError(f'unsupported type {a.type} of {a.name}')
                    shape = [d if isinstance(d, int) and d > 0 else -1 for d in a.shape]
                    out.append(ITensor(a.name, shape, DataType[name]))
                return out
            try:
                net._inputs, net._outputs = tensors(sess.get_inputs()), tensors(sess.get_outputs())
            except ValueError as exc:
                self._errors.append(ParserError(str(exc)))
                return False
            net._onnx = bytes(model)
            net._has_qdq = b'QuantizeLinear' in net._onnx
            return True

    class IOptimizationProfile:

        def __init__(self) -> None:
            self._shapes: Dict[str, List[tuple]] = {}

        def set_shape(self, input: str, min: Sequence[int], opt: Sequence[int],  # noqa: A002
                      max: Sequence[int]) -> None:  # noqa: A002 - TensorRT's parameter names
            lo, mid, hi = tuple(min), tuple(opt), tuple(max)
            if not (len(lo) == len(mid) == len(hi)) or any(
                    not (a <= b <= c) for a, b, c in zip(lo, mid, hi)):
                raise ValueError('min <= opt <= max must hold for every dimension')
            self._shapes[input] = [lo, mid, hi]

        def get_shape(self, input: str) -> List[Dims]:  # noqa: A002
            return [Dims(s) for s in self._shapes.get(input, [])]

    class ITimingCache:

        def __init__(self, data: bytes) -> None:
            self._data = json.loads(data.decode()) if data else {'version': spec.version}

        def serialize(self) -> IHostMemory:
            return IHostMemory(json.dumps(self._data).encode())

        def reset(self) -> bool:
            self._data = {'version': spec.version}
            return True

    class IBuilderConfig:

        def __init__(self) -> None:
            self._flags = 0
            self._pools = {MemoryPoolType.WORKSPACE: 1 << 62}
            self._profiles: List[IOptimizationProfile] = []
            self._timing_cache: Optional[ITimingCache] = None
            self._calibrator: Any = None
            self._calibration_profile: Optional[IOptimizationProfile] = None
            self.builder_optimization_level = 3
            if spec.progress_monitor:
                self.progress_monitor = None

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            self._pools[MemoryPoolType(pool)] = int(pool_size)

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self._pools.get(MemoryPoolType(pool), 0)

        def set_flag(self, flag: Any) -> None:
            self._flags |= 1 << int(BuilderFlag(flag))

        def clear_flag(self, flag: Any) -> None:
            self._flags &= ~(1 << int(BuilderFlag(flag)))

        def get_flag(self, flag: Any) -> bool:
            return bool(self._flags & (1 << int(BuilderFlag(flag))))

        @property
        def flags(self) -> int:
            return self._flags

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            self._profiles.append(profile)
            return len(self._profiles) - 1

        @property
        def num_optimization_profiles(self) -> int:
            return len(self._profiles)

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
            return ITimingCache(bytes(serialized_timing_cache))

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            if cache._data.get('version') != spec.version and not ignore_mismatch:
                return False
            self._timing_cache = cache
            return True

        def get_timing_cache(self) -> Optional[ITimingCache]:
            return self._timing_cache

        if spec.weak_typing:
            @property
            def int8_calibrator(self) -> Any:
                return self._calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, calibrator: Any) -> None:
                self._calibrator = calibrator

            def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
                self._calibration_profile = profile
                return True

            def get_calibration_profile(self) -> Optional[IOptimizationProfile]:
                return self._calibration_profile

    class Builder:

        def __init__(self, logger: ILogger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        if spec.weak_typing:
            @property
            def platform_has_fast_fp16(self) -> bool:
                return True

            @property
            def platform_has_fast_int8(self) -> bool:
                return True

        def _error(self, msg: str) -> None:
            self.logger.log(_Severity.ERROR, msg)

        def build_serialized_network(self, network: INetworkDefinition,
                                     config: IBuilderConfig) -> Optional[IHostMemory]:
            if not network._onnx:
                self._error('Network must have at least one output')
                return None
            flag = lambda name: (name in BuilderFlag.__members__  # noqa: E731
                                 and config.get_flag(BuilderFlag[name]))
            dynamic = [t for t in network._inputs if any(d < 0 for d in t.shape)]
            if dynamic and not config._profiles:
                self._error('Network has dynamic or shape inputs, but no optimization profile '
                            'has been defined.')
                return None
            profile: Dict[str, list] = {}
            for t in dynamic:
                shapes = config._profiles[0]._shapes.get(t.name)
                if shapes is None:
                    self._error(f'Optimization profile is missing values for input {t.name}')
                    return None
                if any(len(s) != len(t.shape) or any(d >= 0 and d != v for d, v in zip(
                        t.shape, s)) for s in shapes):
                    self._error(f'Profile shapes of {t.name} do not match its dimensions')
                    return None
                profile[t.name] = [list(s) for s in shapes]
            if spec.weak_typing and flag('INT8') and not network._has_qdq:
                if config._calibrator is None:
                    self._error('Calibration failure: INT8 without calibrator or Q/DQ layers')
                    return None
                if not self._calibrate(network, config, profile):
                    return None
            monitor = getattr(config, 'progress_monitor', None)
            if monitor is not None:
                monitor.phase_start('Building engine', None, 2)
                for step in range(2):
                    if not monitor.step_complete('Building engine', step):
                        self._error('Build cancelled by the progress monitor')
                        return None
                monitor.phase_finish('Building engine')
            if config._timing_cache is not None:
                config._timing_cache._data.setdefault('builds', 0)
                config._timing_cache._data['builds'] += 1
            head = {'version': spec.version, 'profile': profile,
                    'precision_flags': [n for n in ('FP16', 'INT8') if flag(n)],
                    'strongly_typed': not spec.weak_typing or bool(
                        'STRONGLY_TYPED' in NetworkDefinitionCreationFlag.__members__
                        and network.flags
                        & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED))),
                    'inputs': [[t.name, list(t.shape), t.dtype.name] for t in network._inputs],
                    'outputs': [[t.name, list(t.shape), t.dtype.name] for t in network._outputs],
                    # a truncated or corrupt plan does not deserialize, as in TensorRT
                    'payload_sha256': hashlib.sha256(network._onnx).hexdigest()}
            text = json.dumps(head).encode()
            return IHostMemory(MAGIC + struct.pack('<I', len(text)) + text + network._onnx)

        def _calibrate(self, network: INetworkDefinition, config: IBuilderConfig,
                       profile: Dict[str, list]) -> bool:
            """Calibrate as TensorRT does: the calibrator's cache if it gives one.

            Else pull batches (device pointers), run the network on them and write a cache.
            """
            cal = config._calibrator
            cache = cal.read_calibration_cache()
            if cache:
                return True
            names = [t.name for t in network._inputs]
            shapes = {t.name: (profile[t.name][1] if t.name in profile else list(t.shape))
                      for t in network._inputs}
            import onnxruntime as ort
            sess = ort.InferenceSession(network._onnx, providers=['CPUExecutionProvider'])
            driver = _cuda_driver()
            batches = 0
            peak = 0.0
            while True:
                ptrs = cal.get_batch(names)
                if not ptrs:
                    break
                if len(ptrs) != len(names):
                    self._error(f'Calibrator returned {len(ptrs)} pointers for '
                                f'{len(names)} inputs')
                    return False
                feed = {}
                for t, ptr in zip(network._inputs, ptrs):
                    host = np.empty(shapes[t.name], nptype(t.dtype))
                    _check(driver.cuMemcpyDtoH(host.ctypes.data, int(ptr), host.nbytes))
                    feed[t.name] = host
                types = ort_input_types(sess)
                feed = {n: x.astype(types[n], copy=False) for n, x in feed.items()}
                outs = sess.run(None, feed)
                peak = max([peak] + [float(np.abs(o).max()) for o in outs if o.size])
                batches += 1
            if batches == 0:
                self._error('Calibration failure occurred with no scaling factors detected.')
                return False
            cal.write_calibration_cache(
                json.dumps({'standin': spec.version, 'batches': batches, 'peak': peak}).encode())
            return True

    class IExecutionContext:

        def __init__(self, engine: 'ICudaEngine') -> None:
            self.engine = engine
            self._shapes = {n: tuple(s) for n, (_, s, _) in engine._io.items()}
            self._addresses: Dict[str, int] = {}

        def _error(self, msg: str) -> None:
            self.engine._logger.log(_Severity.ERROR, msg)

        def set_input_shape(self, name: str, shape: Sequence[int]) -> bool:
            io = self.engine._io.get(name)
            if io is None or io[0] != TensorIOMode.INPUT:
                self._error(f'setInputShape: {name} is not the name of an input tensor')
                return False
            shape = tuple(int(d) for d in shape)
            lo, _, hi = self.engine._profile.get(name, [io[1], io[1], io[1]])
            if len(shape) != len(io[1]) or any(not (a <= d <= b)
                                               for a, d, b in zip(lo, shape, hi)):
                self._error(f'IExecutionContext::setInputShape: Error Code 3: API Usage Error '
                            f'(Parameter check failed, condition: engineDims.d[i] == dims.d[i] '
                            f'or within profile [{tuple(lo)}, {tuple(hi)}] for {name}: {shape})')
                return False
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> Dims:
            shape = self._shapes.get(name, ())
            io = self.engine._io.get(name)
            if io is not None and io[0] == TensorIOMode.OUTPUT and min(shape or (0,)) < 0 \
                    and self.all_input_dimensions_specified:
                self._infer_output_shapes()  # TensorRT infers them from the input shapes
                shape = self._shapes[name]
            return Dims(shape)

        def _infer_output_shapes(self) -> None:
            types = self.engine._input_types()
            feed = {n: np.zeros(self._shapes[n], types[n])
                    for n, io in self.engine._io.items() if io[0] == TensorIOMode.INPUT}
            outs = self.engine._session().run(self.engine._outputs, feed)
            for n, o in zip(self.engine._outputs, outs):
                self._shapes[n] = tuple(o.shape)

        def set_tensor_address(self, name: str, memory: int) -> bool:
            if name not in self.engine._io:
                self._error(f'setTensorAddress: {name} is not an I/O tensor')
                return False
            self._addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name: str) -> int:
            return self._addresses.get(name, 0)

        @property
        def all_input_dimensions_specified(self) -> bool:
            return all(min(self._shapes[n]) >= 0 for n, io in self.engine._io.items()
                       if io[0] == TensorIOMode.INPUT)

        def execute_async_v3(self, stream_handle: int) -> bool:
            missing = [n for n in self.engine._io if n not in self._addresses]
            if missing:
                self._error(f'Error Code 3: API Usage Error (tensor {missing[0]} has no address)')
                return False
            if not self.all_input_dimensions_specified:
                self._error('Error Code 3: not all input dimensions are specified')
                return False
            return self._run({n: self._addresses[n] for n in self.engine._io}, stream_handle)

        def _run(self, addresses: Dict[str, int], stream_handle: int) -> bool:
            driver = _cuda_driver()
            try:
                # inputs: what the stream wrote before this call; outputs: copied on the stream,
                # so work enqueued after execute sees them (as with a real enqueue)
                feed = {}
                for name, (mode, _, dtype) in self.engine._io.items():
                    if mode == TensorIOMode.INPUT:
                        host = np.empty(self._shapes[name], nptype(dtype))
                        _check(driver.cuMemcpyDtoHAsync(host.ctypes.data, addresses[name],
                                                        host.nbytes, stream_handle))
                        feed[name] = host.astype(self.engine._input_types()[name], copy=False)
                _check(driver.cuStreamSynchronize(stream_handle))
                outs = self.engine._session().run(self.engine._outputs, feed)
                for name, out in zip(self.engine._outputs, outs):
                    _, _, dtype = self.engine._io[name]
                    out = np.ascontiguousarray(out, nptype(dtype))
                    self._shapes[name] = out.shape
                    _check(driver.cuMemcpyHtoDAsync(addresses[name], out.ctypes.data, out.nbytes,
                                                    stream_handle))
                _check(driver.cuStreamSynchronize(stream_handle))  # `out` is freed on return
            except Exception as exc:  # noqa: BLE001 - TensorRT reports through the logger
                self._error(f'enqueue failed: {exc}')
                return False
            return True

        if spec.execute_v2:
            def execute_v2(self, bindings: Sequence[int]) -> bool:
                return self._run(dict(zip(self.engine._io, bindings)), 0)

        if spec.bindings_api:
            def execute_async_v2(self, bindings: Sequence[int], stream_handle: int) -> bool:
                return self._run(dict(zip(self.engine._io, bindings)), stream_handle)

            def set_binding_shape(self, binding: int, shape: Sequence[int]) -> bool:
                return self.set_input_shape(list(self.engine._io)[binding], shape)

    class ICudaEngine:

        def __init__(self, head: Dict[str, Any], onnx: bytes, logger: ILogger) -> None:
            self._head, self._onnx, self._logger = head, onnx, logger
            self._io: Dict[str, tuple] = {}
            for mode, key in ((TensorIOMode.INPUT, 'inputs'), (TensorIOMode.OUTPUT, 'outputs')):
                for name, shape, dtype in head[key]:
                    self._io[name] = (mode, tuple(shape), DataType[dtype])
            self._outputs = [n for n, io in self._io.items() if io[0] == TensorIOMode.OUTPUT]
            self._profile = {n: [tuple(s) for s in v] for n, v in head['profile'].items()}
            self._sess = None
            self._lock = threading.Lock()

        def _input_types(self) -> Dict[str, Any]:
            return ort_input_types(self._session())

        def _session(self) -> Any:
            with self._lock:
                if self._sess is None:
                    import onnxruntime as ort
                    so = ort.SessionOptions()
                    so.intra_op_num_threads = 2
                    self._sess = ort.InferenceSession(self._onnx, so,
                                                      providers=['CPUExecutionProvider'])
                return self._sess

        @property
        def num_io_tensors(self) -> int:
            return len(self._io)

        def get_tensor_name(self, index: int) -> str:
            return list(self._io)[index]

        def get_tensor_mode(self, name: str) -> Any:
            return self._io[name][0] if name in self._io else TensorIOMode.NONE

        def get_tensor_shape(self, name: str) -> Dims:
            return Dims(self._io[name][1]) if name in self._io else Dims(())

        def get_tensor_dtype(self, name: str) -> Any:
            return self._io[name][2]

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> List[Dims]:
            if profile_index != 0 or name not in self._profile:
                return []
            return [Dims(s) for s in self._profile[name]]

        @property
        def num_optimization_profiles(self) -> int:
            return 1

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

        def serialize(self) -> IHostMemory:
            text = json.dumps(self._head).encode()
            return IHostMemory(MAGIC + struct.pack('<I', len(text)) + text + self._onnx)

        if spec.major < 11:
            @property
            def device_memory_size(self) -> int:
                return 0

        if spec.bindings_api:
            @property
            def num_bindings(self) -> int:
                return len(self._io)

            def binding_is_input(self, index: Any) -> bool:
                name = index if isinstance(index, str) else list(self._io)[index]
                return self._io[name][0] == TensorIOMode.INPUT

            def get_binding_shape(self, index: Any) -> Dims:
                name = index if isinstance(index, str) else list(self._io)[index]
                return Dims(self._io[name][1])

    class Runtime:

        def __init__(self, logger: ILogger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine: Any) -> Optional[ICudaEngine]:
            data = bytes(serialized_engine)
            if not data.startswith(MAGIC):
                self.logger.log(_Severity.ERROR, 'IRuntime::deserializeCudaEngine: Error Code 1: '
                                'Serialization (Serialization assertion magicTagRead == '
                                'kMAGIC_TAG failed.Magic tag does not match)')
                return None
            start = len(MAGIC) + 4
            head = None
            if len(data) >= start:
                n = struct.unpack('<I', data[len(MAGIC):start])[0]
                try:
                    head = json.loads(data[start:start + n].decode())
                except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                    head = None
            if not isinstance(head, dict) or 'version' not in head:
                self.logger.log(_Severity.ERROR, 'IRuntime::deserializeCudaEngine: Error Code 1: '
                                'Serialization (Serialization assertion plan header read '
                                'failed: the plan file is truncated or corrupt)')
                return None
            if head['version'] != spec.version:
                self.logger.log(_Severity.ERROR, 'IRuntime::deserializeCudaEngine: Error Code 6: '
                                'API Usage Error (The engine plan file is not compatible with '
                                f'this version of TensorRT, expecting library version '
                                f'{spec.version} got {head["version"]}, please rebuild.)')
                return None
            body = data[start + n:]
            if head.get('payload_sha256', hashlib.sha256(body).hexdigest()) != \
                    hashlib.sha256(body).hexdigest():
                self.logger.log(_Severity.ERROR, 'IRuntime::deserializeCudaEngine: Error Code 1: '
                                'Serialization (Serialization assertion weights size mismatch '
                                'failed: the plan file is truncated or corrupt)')
                return None
            return ICudaEngine(head, body, self.logger)

    if spec.calibrators:
        class IInt8Calibrator:

            def __init__(self) -> None:
                pass

            def get_batch_size(self) -> int:
                raise NotImplementedError

            def get_batch(self, names: List[str]) -> Optional[List[int]]:
                raise NotImplementedError

            def read_calibration_cache(self) -> Optional[bytes]:
                raise NotImplementedError

            def write_calibration_cache(self, cache: bytes) -> None:
                raise NotImplementedError

        class IInt8EntropyCalibrator2(IInt8Calibrator):

            pass

        class IInt8MinMaxCalibrator(IInt8Calibrator):

            pass

        ns.update(IInt8Calibrator=IInt8Calibrator, IInt8EntropyCalibrator2=IInt8EntropyCalibrator2,
                  IInt8MinMaxCalibrator=IInt8MinMaxCalibrator)

    if spec.progress_monitor:
        class IProgressMonitor:

            def __init__(self) -> None:
                pass

            def phase_start(self, phase_name: str, parent_phase: Optional[str],
                            num_steps: int) -> None:
                raise NotImplementedError

            def step_complete(self, phase_name: str, step: int) -> bool:
                raise NotImplementedError

            def phase_finish(self, phase_name: str) -> None:
                raise NotImplementedError

        ns['IProgressMonitor'] = IProgressMonitor

    ns.update(ILogger=ILogger, Logger=Logger, DataType=DataType, BuilderFlag=BuilderFlag,
              NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
              MemoryPoolType=MemoryPoolType, TensorIOMode=TensorIOMode, nptype=nptype,
              volume=volume, Dims=Dims, IHostMemory=IHostMemory, ITensor=ITensor,
              INetworkDefinition=INetworkDefinition, ParserError=ParserError,
              OnnxParser=OnnxParser, IOptimizationProfile=IOptimizationProfile,
              ITimingCache=ITimingCache, IBuilderConfig=IBuilderConfig, Builder=Builder,
              IExecutionContext=IExecutionContext, ICudaEngine=ICudaEngine, Runtime=Runtime)
    for name in spec.dtypes:  # trt.float32 etc. are module-level aliases of DataType members
        alias = {'FLOAT': 'float32', 'HALF': 'float16', 'INT8': 'int8', 'INT32': 'int32',
                 'BOOL': 'bool', 'UINT8': 'uint8', 'INT64': 'int64', 'BF16': 'bfloat16',
                 'FP8': 'fp8', 'INT4': 'int4'}.get(name)
        if alias:
            ns[alias] = DataType[name]
    return ns
