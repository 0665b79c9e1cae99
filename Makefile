# One entry point for people and CI. Every target sets up what it needs first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= all
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: setup demo test test-fast test-roles firmware-deps clean help

help:
	@echo "make demo   - set up (.venv) and run the offline HI demo on the shipped models"
	@echo "make test   - set up (.venv, ARM toolchain when root), run the whole test suite, then the install check"
	@echo "make test-roles - only the install check: the built wheel per role, outside the checkout"
	@echo "make setup  - only create .venv and install the project with extras '$(EXTRAS)'"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

# The demo needs only what a device and the edge server install (no TensorFlow).
demo:
	$(MAKE) setup EXTRAS=device,server
	$(BIN)/hi-agent demo

# Debian packages the firmware tests need (ARM cross compiler, newlib, QEMU, clang for fuzzing).
firmware-deps:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null && command -v clang >/dev/null; then \
	  echo "firmware toolchain present"; \
	elif [ "$$(id -u)" = "0" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang >/dev/null; \
	else \
	  echo "note: not root; install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang to run the firmware tests"; \
	fi

test: setup firmware-deps
	$(BIN)/python -m pytest
	$(MAKE) test-roles

# The built wheel per role in fresh virtual environments outside the checkout, each role's main command.
test-roles:
	PY=$(PY) bash .ci/roles.sh

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) build firmware/build .pytest_cache
