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

# Every test with oneDNN's x86 kernels, then the `portable` ones with TensorFlow's
# generic kernels (those of GPUs, macOS, ARM and TF Serving builds without oneDNN).
test: $(INSTALLED)
	$(BIN)/python -m pytest $(PARALLEL) $(PYTEST_ARGS) tests
	TF_ENABLE_ONEDNN_OPTS=0 $(BIN)/python -m pytest $(PARALLEL) -m portable $(PYTEST_ARGS) tests

# Generate the synthetic dataset, convert, train, evaluate, export and predict with the
# deeplab-* tools; a rerun resumes where the last one stopped.
demo: $(INSTALLED)
	$(BIN)/python -m deeplab.tools.demo --output_dir=demo_output

clean:
	rm -rf demo_output
