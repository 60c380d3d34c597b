"""The tensorrt backend, one module per responsibility.

- options.py: the backend's options (names, defaults, validation) and the input shapes they give.
- versions.py: importing TensorRT, the supported versions (8.6, 10.x, 11.x) and the calls whose
  spelling differs between them (TrtApi), TensorRT's log into Python logging.
- engine_cache.py: engine keys, file names and sidecars, atomic writes, and the deserialized
  engines a process shares (reference-counted).
- calibration.py: INT8 calibration images and the tensors the model's pre-processing makes of
  them; the TensorRT 8.6/10.x calibrator.
- modelopt_convert.py: the ModelOpt ONNX conversion (fp16 / int8 Q/DQ) that strongly typed
  builds start from; runs in a child process.
- build.py: from an ONNX model and the options to a cached engine (prepare_engine).
- backend.py: TensorRTBackend, the Backend that runs an engine (contexts, buffers, infer, the GPU
  pipeline hooks).

This file imports nothing: the ModelOpt child process passes through it, and TensorRT itself
is imported only when a backend is made.
"""
