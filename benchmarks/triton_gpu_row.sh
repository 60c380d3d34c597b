#!/usr/bin/env bash
# The remote-GPU row on a GPU machine without network: install the carried wheels, then run
# benchmarks/triton_gpu_row.py. Copied into the bundle as device.sh by
# `triton_gpu_row.py prepare`; run from anywhere as `bash BUNDLE/device.sh [run options]`
# with OUT set to the folder for the results (default ./gpurow-out).
set -u
export PYTHONUNBUFFERED=1
BUNDLE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$PWD/gpurow-out}
SITE=${SITE:-/tmp/gpurow-site}
mkdir -p "$OUT" "$SITE"
exec > >(tee -a "$OUT/gpurow.log") 2>&1

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
nproc; python3 -V; df -h /dev/shm | tail -1
# pytriton moves tensors between Triton and the bound function through /dev/shm.
shm_kb=$(df -k --output=size /dev/shm | tail -1)
if [ "${shm_kb:-0}" -lt 4000000 ]; then mount -o remount,size=8G /dev/shm && df -h /dev/shm | tail -1; fi

echo "== carried packages"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$BUNDLE"/whl/*.whl || exit 1
tar -xJf "$BUNDLE/pytriton-trim.tar.xz" -C "$SITE" || exit 1
# pytriton outside a site-packages folder counts as an editable install and looks for its
# libraries (tritonserver's) in pytriton/tritonserver/external_libs.
ln -sfn "$SITE/nvidia_pytriton.libs" "$SITE/pytriton/tritonserver/external_libs"
export PYTHONPATH="$BUNDLE:$SITE"
python3 - <<'EOF'
import importlib.metadata as md
for name in ('torch', 'numpy', 'grpcio', 'protobuf', 'onnx', 'onnxruntime', 'opencv-python-headless',
             'nvidia-pytriton', 'tritonclient', 'pyzmq', 'gevent'):
    try:
        print(f'{name} {md.version(name)}')
    except md.PackageNotFoundError:
        print(f'{name} MISSING')
EOF
# tritonclient's gRPC stubs refuse a grpcio older than the one they were generated with; the
# stubs themselves work with older grpcio, so lower the check to the installed version.
python3 - "$SITE" <<'EOF'
import re, sys, grpc
from pathlib import Path
p = Path(sys.argv[1]) / 'tritonclient' / 'grpc' / 'service_pb2_grpc.py'
s = p.read_text()
want = re.search(r"GRPC_GENERATED_VERSION = '([0-9.]+)'", s).group(1)
have = grpc.__version__
key = lambda v: tuple(int(x) for x in re.findall(r'\d+', v)[:3])
if key(have) < key(want):
    p.write_text(s.replace(f"GRPC_GENERATED_VERSION = '{want}'", f"GRPC_GENERATED_VERSION = '{have}'"))
    print(f'grpcio {have} < {want}: tritonclient stubs relaxed')
EOF
# pytriton 0.7 pins numpy<2: its Python-backend stub reads numpy-2 arrays as empty, and Triton
# then answers with empty outputs. The stub gets a venv of its own with numpy 1.26 and the
# carried packages (the server process, torch's, keeps the machine's numpy).
STUBENV="$SITE/stubenv"
if [ -e "$BUNDLE/numpy1-stub.tar.xz" ] && python3 -m venv --without-pip "$STUBENV"; then
    mkdir -p "$SITE/numpy1" && tar -xJf "$BUNDLE/numpy1-stub.tar.xz" -C "$SITE/numpy1"
    sp=$("$STUBENV/bin/python3" -c 'import site; print(site.getsitepackages()[0])')
    printf '%s\n%s\n' "$SITE/numpy1" "$SITE" > "$sp/gpurow.pth"
    export GPUROW_STUB_ENV="$STUBENV"
    "$STUBENV/bin/python3" -c 'import numpy, zmq; print("stub venv: numpy", numpy.__version__)'
else
    echo "stub venv: none (the stub uses this python's numpy)"
fi
[ -e "$BUNDLE/yolov8n.onnx" ] || xz -dk "$BUNDLE/yolov8n.onnx.xz" || exit 1
# The Python-backend stub links libpython3.12.so.1.0; carry one where the machine has none.
libdir=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
if [ -e "$libdir/libpython3.12.so.1.0" ] || ldconfig -p | grep -q 'libpython3.12.so.1.0'; then
    echo "libpython3.12.so.1.0: the machine's"
elif [ -e "$BUNDLE/libpython3.12.so.1.0.xz" ]; then
    mkdir -p "$SITE/pylib" && xz -dc "$BUNDLE/libpython3.12.so.1.0.xz" > "$SITE/pylib/libpython3.12.so.1.0"
    export LD_LIBRARY_PATH="$SITE/pylib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "libpython3.12.so.1.0: carried (the machine has none)"
else
    echo "libpython3.12.so.1.0: none (the Triton server's Python backend will not start)"
fi

echo "== benchmark"
python3 "$BUNDLE/triton_gpu_row.py" run --bundle "$BUNDLE" --out "$OUT" "$@"
