# `make test` and `make demo` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?= --durations=20
# Two processes, whole files each, in the order tests/conftest.py gives (costliest first).
PARALLEL := -n 2 --dist loadfile --no-loadscope-reorder

.PHONY: install test demo clean

install: $(INSTALLED)

$(INSTALLED): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,onnx,openvino]'
	touch $(INSTALLED)

# Every test with oneDNN's x86 kernels and, at the same time, the `portable` ones with
# TensorFlow's generic kernels (those of GPUs, macOS, ARM and TF Serving builds without
# oneDNN) in one more process at the lowest CPU priority, on the CPU time the first run
# leaves idle. Its report follows the first run's.
test: $(INSTALLED)
	@portable_log=$$(mktemp); \
	TF_ENABLE_ONEDNN_OPTS=0 nice -n 19 $(BIN)/python -m pytest -m portable $(PYTEST_ARGS) \
	  tests > $$portable_log 2>&1 & portable=$$!; \
	$(BIN)/python -m pytest $(PARALLEL) $(PYTEST_ARGS) tests; status=$$?; \
	wait $$portable; portable_status=$$?; \
	echo "=== The portable tests with TensorFlow's generic kernels (TF_ENABLE_ONEDNN_OPTS=0):"; \
	cat $$portable_log; rm -f $$portable_log; \
	test $$status -eq 0 && test $$portable_status -eq 0

# Generate the synthetic dataset, convert, train, evaluate, export and predict with the
# deeplab-* tools; a rerun resumes where the last one stopped.
demo: $(INSTALLED)
	$(BIN)/python -m deeplab.tools.demo --output_dir=demo_output

clean:
	rm -rf demo_output
