"""Stand-in for the `tensorrt` module of TensorRT 8.6 (JetPack 6.0).

Weak typing (FP16/INT8 builder flags, IInt8 calibrators), EXPLICIT_BATCH needed for ONNX networks,
named-tensor API (8.5+) next to the binding-index API and execute_async_v2; no IProgressMonitor
(10.0+).
"""
from ._core import make_module, Spec

SPEC = Spec(
    version='8.6.1',
    builder_flags=['FP16', 'INT8', 'DEBUG', 'GPU_FALLBACK', 'REFIT', 'DISABLE_TIMING_CACHE',
                   'TF32', 'SPARSE_WEIGHTS', 'SAFETY_SCOPE', 'OBEY_PRECISION_CONSTRAINTS',
                   'PREFER_PRECISION_CONSTRAINTS', 'DIRECT_IO', 'REJECT_EMPTY_ALGORITHMS',
                   'VERSION_COMPATIBLE', 'EXCLUDE_LEAN_RUNTIME', 'FP8'],
    network_flags=['EXPLICIT_BATCH', 'EXPLICIT_PRECISION'],
    dtypes=['FLOAT', 'HALF', 'INT8', 'INT32', 'BOOL', 'UINT8', 'FP8'],
    memory_pools=['WORKSPACE', 'DLA_MANAGED_SRAM', 'DLA_LOCAL_DRAM', 'DLA_GLOBAL_DRAM',
                  'TACTIC_DRAM'],
    weak_typing=True, calibrators=True, progress_monitor=False, bindings_api=True,
    execute_v2=True)

globals().update(make_module(SPEC))
