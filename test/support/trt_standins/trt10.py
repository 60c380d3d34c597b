"""Stand-in for the `tensorrt` module of TensorRT 10.x (10.3 is JetPack 6.1/6.2's).

Weak typing still there (FP16/INT8 flags, calibrators deprecated), STRONGLY_TYPED networks
optional, explicit batch only (the flag is deprecated and ignored), IProgressMonitor; the
binding-index API and execute_async_v2 are gone (execute_v2 stays).
"""
from ._core import make_module, Spec

SPEC = Spec(
    version='10.3.0',
    builder_flags=['FP16', 'INT8', 'DEBUG', 'GPU_FALLBACK', 'REFIT', 'DISABLE_TIMING_CACHE',
                   'TF32', 'SPARSE_WEIGHTS', 'SAFETY_SCOPE', 'OBEY_PRECISION_CONSTRAINTS',
                   'PREFER_PRECISION_CONSTRAINTS', 'DIRECT_IO', 'REJECT_EMPTY_ALGORITHMS',
                   'VERSION_COMPATIBLE', 'EXCLUDE_LEAN_RUNTIME', 'FP8',
                   'ERROR_ON_TIMING_CACHE_MISS', 'BF16', 'DISABLE_COMPILATION_CACHE',
                   'WEIGHTLESS', 'STRIP_PLAN', 'REFIT_IDENTICAL', 'WEIGHT_STREAMING', 'INT4'],
    network_flags=['EXPLICIT_BATCH', 'STRONGLY_TYPED'],
    dtypes=['FLOAT', 'HALF', 'INT8', 'INT32', 'BOOL', 'UINT8', 'FP8', 'BF16', 'INT64', 'INT4'],
    memory_pools=['WORKSPACE', 'DLA_MANAGED_SRAM', 'DLA_LOCAL_DRAM', 'DLA_GLOBAL_DRAM',
                  'TACTIC_DRAM', 'TACTIC_SHARED_MEMORY'],
    weak_typing=True, calibrators=True, progress_monitor=True, bindings_api=False,
    execute_v2=True)

globals().update(make_module(SPEC))
