# Two commands from a fresh clone: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
ROOT := $(abspath .)
# ROS 2 from the package index when none is sourced: kilted (.venv) or jazzy, the LTS (.venv-jazzy).
ROS_DISTRO_WHEELS ?= kilted
VENV := $(ROOT)/$(if $(filter kilted,$(ROS_DISTRO_WHEELS)),.venv,.venv-$(ROS_DISTRO_WHEELS))
export FDR_ROS_WHEELS := $(ROS_DISTRO_WHEELS)
export FDR_VENV := $(VENV)
PY := $(VENV)/bin/python
SHARED := $(abspath $(ROOT)/../shared)
INPUT ?= $(SHARED)/data/pedestrians_plaza_1280x720_50fps.avi
MODEL ?= $(SHARED)/models/yolox_nano_coco_416.onnx
OUT ?= $(ROOT)/out/demo
RATE ?= 1.0
PARAMS ?= config/yolox_nano_onnxruntime.yaml
GOLDEN ?= $(ROOT)/out/golden
GATE ?= --min-recall 0.98 --min-precision 0.98 --max-box-drift-px 2 --box-drift-stat p99 --max-score-drift 0.1
PYTEST_ARGS ?=
TESTS ?= test

# Large camera frames over Fast DDS: the shipped profile (64 MB shared memory + UDP) on every
# distro, read by Fast DDS 3.x (Kilted) and 2.x (Humble, Jazzy) from its own variable; not the
# LARGE_DATA builtin, whose TCP transport stalled and deadlocked here (README, "Middleware").
# And reused frame buffers instead of fresh mmaps per frame.
# A transport the user chose (a profile or a builtin set) is kept as it is.
ifeq ($(strip $(FASTDDS_BUILTIN_TRANSPORTS)$(FASTDDS_DEFAULT_PROFILES_FILE)$(FASTRTPS_DEFAULT_PROFILES_FILE)),)
ifeq ($(filter jazzy humble,$(ROS_DISTRO_WHEELS)),)
export FASTDDS_DEFAULT_PROFILES_FILE := $(ROOT)/config/fastdds_large_data.xml
else
export FASTRTPS_DEFAULT_PROFILES_FILE := $(ROOT)/config/fastdds_large_data.xml
endif
endif
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 268435456
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp

.PHONY: setup test-assets demo demo-tracks demo-masks demo-multicam golden demo-check test clean

setup:
	@bash scripts/setup_env.sh

test-assets: setup
	@bash scripts/setup_test_assets.sh

demo: setup
	@$(PY) -m faster_deployment_ros.tools.demo --input "$(INPUT)" --model "$(MODEL)" --out "$(OUT)" --rate "$(RATE)"

# Two cameras (the two shared videos) into one detector_node (`inputs`), a report per camera.
# The same with track ids (ByteTrack, config/yolox_nano_tracking.yaml): PNGs labelled '#id'
demo-tracks: setup
	@$(PY) -m faster_deployment_ros.tools.demo --input "$(INPUT)" --model "$(MODEL)" --out "$(ROOT)/out/demo-tracks" --rate "$(RATE)" --params config/yolox_nano_tracking.yaml

# Instance masks and track ids of a -seg model (config/yolov8n_seg_tracking.yaml): PNGs with each
# instance's mask in its track's colour. MODEL defaults to the random-weight test model (built by
# test-assets: its masks are shapes, not objects); give a trained export: MODEL=yolov8n-seg.onnx
SEG_MODEL := $(if $(filter file,$(origin MODEL)),$(ROOT)/.cache/models/yolov8n-seg.onnx,$(MODEL))
demo-masks: setup $(if $(filter file,$(origin MODEL)),test-assets)
	@$(PY) -m faster_deployment_ros.tools.demo --input "$(INPUT)" --model "$(SEG_MODEL)" --out "$(ROOT)/out/demo-masks" --rate "$(RATE)" --params config/yolov8n_seg_tracking.yaml --masks-topic /instance_mask

demo-multicam: setup
	@$(PY) -m faster_deployment_ros.tools.demo_multicam --model "$(MODEL)" --out "$(ROOT)/out/demo-multicam" --rate "$(RATE)"

# Regression gate against a golden bag: `make golden` once, `make demo-check` after a change
# (a new model, backend, precision or PARAMS); exits 1 when a GATE limit fails (fdr-bag diff).
golden: setup
	@$(PY) -m faster_deployment_ros.tools.demo --input "$(INPUT)" --model "$(MODEL)" --out "$(OUT)" --rate "$(RATE)" --params "$(PARAMS)" --record-golden "$(GOLDEN)"

demo-check: setup
	@$(PY) -m faster_deployment_ros.tools.demo --input "$(INPUT)" --model "$(MODEL)" --out "$(OUT)" --rate "$(RATE)" --params "$(PARAMS)" --check-golden "$(GOLDEN)" --gate "$(GATE)"

test: setup test-assets
	@$(PY) -m pytest -ra $(PYTEST_ARGS) $(TESTS)

clean:
	rm -rf build out .venv .venv-* .cache
