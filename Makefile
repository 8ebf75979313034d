# Two commands: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
KINESALITE := .tools/node_modules/.bin/kinesalite
KINESALITE_VERSION := 3.3.3

.PHONY: setup run test test-fast test-soak lint bench clean kinesalite lock fuse3 image image-tools image-prepare image-clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py tailer/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

# kinesalite (npm) is the second, independent Kinesis-API implementation. Tests that
# need it skip with a clear reason when Node.js is missing.
kinesalite: $(KINESALITE)
$(KINESALITE):
	@if command -v npm >/dev/null 2>&1; then \
		mkdir -p .tools && npm install --silent --no-audit --no-fund --prefix .tools kinesalite@$(KINESALITE_VERSION) ; \
	else echo "npm not found: kinesalite tests will be skipped"; fi

# The power-cut disk (tests/fusefs) needs libfuse3 and fusermount3: Debian's fuse3 package.
fuse3:
	@command -v fusermount3 >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq fuse3) || \
		echo "could not install fuse3: the power-cut tests will fail (they skip only without /dev/fuse)"

run: setup
	$(VENV)/bin/spoolship up

test: setup kinesalite fuse3 image-prepare
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest tests/unit

# The fault suite's soak mode: SPOOLSHIP_SOAK=600 make test-soak (seconds of random faults).
test-soak: setup kinesalite
	SPOOLSHIP_SOAK=$${SPOOLSHIP_SOAK:-600} $(PY) -m pytest tests/faults/test_soak.py -s

lint: setup
	$(VENV)/bin/ruff check spooler receiver tailer spoolship tests bench deploy

# The container image, built with podman exactly from deploy/Containerfile. deploy/podman/image.py
# says how: podman's own storage under .tools/image/, a stand-in base only when the FROM image
# cannot be pulled (and it says so loudly). IMAGE_EXTRAS=local builds the dev overlay's image.
IMAGE_EXTRAS ?=
IMAGE_PACKAGES := podman runc mmdebstrap
image: setup image-tools
	$(PY) deploy/podman/image.py build $(if $(IMAGE_EXTRAS),--extras $(IMAGE_EXTRAS))

# podman, runc and mmdebstrap from Debian when missing (as root with apt-get); else the image tests skip.
image-tools:
	@if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing $(IMAGE_PACKAGES) (apt-get)"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(IMAGE_PACKAGES) >/dev/null) || \
				echo "apt-get could not install $(IMAGE_PACKAGES): the image tests will be skipped"; \
		else echo "$(IMAGE_PACKAGES) missing and apt-get not usable here: the image tests will be skipped"; fi; \
	fi

# What `make test` does before pytest: the image built (or the reason it cannot be), never failing
# here; tests/integration/test_image.py then finds it cached, or skips or fails with the reason.
image-prepare: setup image-tools
	-@$(PY) deploy/podman/image.py prepare

image-clean:
	@if [ -d .tools/image ]; then $(PYTHON) deploy/podman/image.py clean; fi

# Benchmarks (docs/performance.md): every target judged met / not met / not measured at the target,
# written to bench/results/latest.json and latest.md. wrk (a C load generator) comes from the
# distribution when missing. BENCH_ARGS=--quick tries the machinery in a few minutes (its figures
# are "not measured at the target"); BENCH_ARGS=receiver runs one benchmark.
BENCH_ARGS ?=
bench: setup kinesalite
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk) || \
		(echo "install wrk to run the benchmarks" && exit 1)
	$(PY) bench/run_all.py $(BENCH_ARGS)

# The image's dependency locks (deploy/Containerfile installs them with pip --require-hashes), made from
# pyproject.toml by a pinned uv: every platform, Python 3.11, a hash for every file. Run after changing
# a pin; tests/unit/test_lock.py fails while a lock and pyproject.toml disagree.
UV_VERSION := 0.13.9
UV_COMPILE := $(VENV)/bin/uv pip compile pyproject.toml - --universal --python-version 3.11 \
	--generate-hashes --quiet --custom-compile-command 'make lock'
BUILD_REQUIRES := $(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))'
lock: setup
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(BUILD_REQUIRES) | $(UV_COMPILE) -o deploy/requirements.lock
	$(BUILD_REQUIRES) | $(UV_COMPILE) --extra local -o deploy/requirements-local.lock

clean: image-clean
	rm -rf $(VENV) .tools .pytest_cache .hypothesis spool
