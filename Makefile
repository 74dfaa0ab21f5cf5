# The two commands of README.md. Everything runs inside the project's environment
# (scripts/env.sh: a venv, or a cached Debian 13 root filesystem on older hosts).
# Commands run in make's folder (relative paths in ARGS mean what they mean there); the
# repository's own paths are absolute, so `make -f PATH/Makefile ...` works from anywhere.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
ENV := $(ROOT)/scripts/env.sh
# Extra flags for the local runner, e.g. make run ARGS="--data-root ~/pngs -- --runner=FlinkRunner"
ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test setup doctor benchmark benchmark-train benchmark-serving serve report

run:  ## set up, then run the whole local pipeline on the built-in dataset
	$(ENV) run python -m cns_vaegan.pipeline.local_runner $(ARGS)

test:  ## set up, then run the test suite (from the repository: pytest's rootdir and testpaths)
	cd "$(ROOT)" && $(ENV) run python -m pytest $(ARGS)

setup:
	$(ENV) setup

doctor:  ## what the environment sees of an NVIDIA driver, and what TensorFlow sees inside it
	$(ENV) doctor

benchmark:  ## ingestion throughput: PngExampleGen vs a plain loop
	$(ENV) run python $(ROOT)/benchmarks/ingest_throughput.py $(ARGS)

benchmark-train:  ## images/s of the train step at the seed's size
	$(ENV) run python $(ROOT)/benchmarks/train_throughput.py $(ARGS)

benchmark-serving:  ## gRPC images/s, latency and server CPU, batching off and on
	$(ENV) run python $(ROOT)/benchmarks/serving_throughput.py $(ARGS)

serve:  ## serve the pushed model (gRPC 8500, REST 8501) with the embedded server; ARGS="--no-batching" etc.
	$(ENV) run python -m cns_vaegan.serving.model_server --model-base-path $(ROOT)/outputs/serving $(ARGS)

report:  ## docs/ figures and tables from the latest run and the benchmarks' fragments
	$(ENV) run python $(ROOT)/scripts/report.py --output-dir $(ROOT)/outputs $(ARGS)
