# Two entry points (see README): `make demo` runs the main job, `make test` runs the suite.
# Both create .venv and install everything on first use (PyTorch pinned to the 2.13.0 CPU build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/gs1_ideal
DEMO_FLAGS ?= --group-limit 64 --nepochs 5 --prediction-scale-source least_squares

.PHONY: setup demo test lint browser bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,hdf5,interop]"
	touch $@

demo: setup
	$(BIN)/ptychotrace run --scenario gs1_ideal --output-dir $(RUN_DIR) $(DEMO_FLAGS) --force
	$(BIN)/ptychotrace analyze --scenario gs1_ideal=$(RUN_DIR) --output-dir $(RUN_DIR)/analysis --force
	@echo "Open $(RUN_DIR)/gs1_ideal_comparison_summary.md and $(RUN_DIR)/analysis/bias_summary.md"

lint: setup
	$(BIN)/ruff check src tests benchmarks

# The HTML report test renders in headless Chromium (Debian's package). As root (CI) it is
# installed when missing; elsewhere the test skips unless CI is set.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed: the browser rendering test will be skipped"; fi; }

test: lint browser
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
