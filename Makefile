# The two commands of the README: `make demo` and `make test`. Each creates .venv when missing and
# installs everything it needs, so a fresh Debian/Ubuntu machine needs nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build on this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
EXTRAS ?= test
# pyrender pins PyOpenGL 3.1.0, which lacks OSMesaCreateContextAttribs; 3.1.10 renders headless. So pyrender
# goes in without its dependencies (the [3d] extra lists them, with PyOpenGL 3.1.10) and pip has no conflict.
PYRENDER := pyrender==0.1.45
# colmap: `python -m vision3d process-data` (camera poses of a user's own photos, CPU mode).
SYSTEM_PACKAGES := libgl1 libgomp1 libusb-1.0-0 libosmesa6 colmap
# Only `make test` needs a browser: the tests of the web viewer and of the demo page drive chromium through
# Playwright (on Ubuntu, where chromium is a snap, install Google Chrome instead and point MP_CHROMIUM at it).
TEST_SYSTEM_PACKAGES := chromium
STAMP := $(VENV)/.installed-$(EXTRAS)
# pip warns when run as root (CI containers are); inside our own virtual environment that is harmless.
PIP := PIP_ROOT_USER_ACTION=ignore $(BIN)/python -m pip
OUT ?= outputs/demo
PYTEST_WORKERS ?= 2

.PHONY: install demo demo-full test test-slow bench system-deps test-system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(MAKE) --no-print-directory system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	@# setuptools reports an editable install with an informational warning on stderr; nothing is wrong.
	PYTHONWARNINGS=ignore $(PIP) install --quiet -e ".[$(EXTRAS)]"
	$(PIP) install --quiet --no-deps $(PYRENDER)
	@touch $@

# System libraries for the optional 3D and physics extras (OpenGL, OpenMP, USB for open3d, OSMesa for headless
# pyrender, COLMAP), and the test suite's browser. Installed with apt-get when running as root; otherwise a hint
# is printed.
system-deps test-system-deps: PACKAGES = $(if $(filter test-system-deps,$@),$(TEST_SYSTEM_PACKAGES),$(SYSTEM_PACKAGES))
system-deps test-system-deps:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "system packages: all present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing system packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "note: missing system packages:$$missing (run: sudo apt-get install$$missing)"; fi

# Each section trains a reduced budget live (its captions say so); demo-full runs the issues' full budgets.
# The four package demos run as two chains side by side, one torch thread each, so both cores work; every demo
# adds its own section, and the page is rebuilt from all of them at the end. Measured on a quiet 2-core machine
# (2026-12-02, both chains running): generative 598 s + agents 153 s beside vision3d 484 s + bodies 333 s was
# 15m25s with the install (108 s), so the vision3d and bodies budgets were cut by about a fifth: then 13m17s
# (generative 574 s + agents 119 s beside vision3d 414 s + bodies 258 s).
DEMO_CHAINS = ( $(BIN)/python -m generative demo --out $(OUT) $(1) && $(BIN)/python -m agents demo --out $(OUT) $(1) ) & one=$$!; \
	( $(BIN)/python -m vision3d demo --out $(OUT) $(1) && $(BIN)/python -m bodies demo --out $(OUT) $(1) ) & two=$$!; \
	failed=""; wait $$one || failed=1; wait $$two || failed=1; test -z "$$failed" && \
	$(BIN)/python -c 'import sys; from envs.io.page import write_index; print("open", write_index(sys.argv[1]))' $(OUT)

demo: install
	@$(call DEMO_CHAINS,)

demo-full: install
	@$(call DEMO_CHAINS,--full)

# A browser test skips (with its reason printed, -rs) only where no chromium is installed; where one is, a
# browser that fails to start is a failure.
BROWSER_ENV = MP_REQUIRE_BROWSER=$$(command -v $${MP_CHROMIUM:-chromium} >/dev/null 2>&1 && echo 1 || echo 0)

test: install test-system-deps
	$(BROWSER_ENV) $(BIN)/python -m pytest -q -rs -n $(PYTEST_WORKERS)

test-slow: install test-system-deps
	$(BROWSER_ENV) $(BIN)/python -m pytest -q -rs -n $(PYTEST_WORKERS) -m slow

bench: install
	$(BIN)/python benchmarks/bench_value_iteration.py
	$(BIN)/python benchmarks/bench_env_steps.py
	$(BIN)/python benchmarks/bench_deep_rl.py --algo dqn --seeds 0 1 2
	$(BIN)/python benchmarks/bench_deep_rl.py --algo actor-critic --steps 200000 --eval-every 10000 --seeds 0 1 2
	$(BIN)/python benchmarks/bench_vision3d.py
	$(BIN)/python benchmarks/bench_threads.py
	$(BIN)/python benchmarks/bench_process_data.py --threads 1
	$(BIN)/python benchmarks/bench_bodies.py
	$(BIN)/python benchmarks/bench_pictorial.py
	$(BIN)/python -m generative table --out outputs/bench/table-binary --data digits
	$(BIN)/python -m generative table --out outputs/bench/table-grey --data digits-grey
	$(BIN)/python benchmarks/bench_sampling.py
	$(BIN)/python benchmarks/bench_flows.py --steps 3000 --toys moons 8gaussians
	$(BIN)/python benchmarks/bench_gan_modes.py --steps 1000 --seeds 5
	$(BIN)/python -m generative compare --out outputs/bench/compare

clean:
	rm -rf $(VENV) outputs .pytest_cache build *.egg-info
