"""Stand-in for the `tensorrt` module of TensorRT 11.x (what `pip install tensorrt` gives).

Strongly typed networks only. Removed, per NVIDIA's 10.x -> 11.x migration reference: BuilderFlag
FP16/BF16/INT8/FP8/INT4/FP4/OBEY_/PREFER_PRECISION_CONSTRAINTS/DIRECT_IO,
IBuilderConfig.int8_calibrator and set_/get_calibration_profile, Builder.platform_has_fast_fp16 /
platform_has_fast_int8, ICudaEngine.device_memory_size; we also leave out the IInt8 calibrator
classes (explicit Q/DQ quantization replaces them), EXPLICIT_BATCH and execute_v2, so code that
still reaches for them fails here first.
"""
from ._core import make_module, Spec

SPEC = Spec(
    version='11.4.0',
    builder_flags=['DEBUG', 'GPU_FALLBACK', 'REFIT', 'DISABLE_TIMING_CACHE', 'TF32',
                   'SPARSE_WEIGHTS', 'SAFETY_SCOPE', 'REJECT_EMPTY_ALGORITHMS',
                   'VERSION_COMPATIBLE', 'EXCLUDE_LEAN_RUNTIME', 'ERROR_ON_TIMING_CACHE_MISS',
                   'DISABLE_COMPILATION_CACHE', 'WEIGHTLESS', 'STRIP_PLAN', 'REFIT_IDENTICAL',
                   'WEIGHT_STREAMING'],
    network_flags=['STRONGLY_TYPED'],
    dtypes=['FLOAT', 'HALF', 'INT8', 'INT32', 'BOOL', 'UINT8', 'FP8', 'BF16', 'INT64', 'INT4'],
    memory_pools=['WORKSPACE', 'DLA_MANAGED_SRAM', 'DLA_LOCAL_DRAM', 'DLA_GLOBAL_DRAM',
                  'TACTIC_DRAM', 'TACTIC_SHARED_MEMORY'],
    weak_typing=False, calibrators=False, progress_monitor=True, bindings_api=False,
    execute_v2=False)

globals().update(make_module(SPEC))
