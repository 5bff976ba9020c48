# Set-up, tests and reports for layershare.
#
#   make report    create .venv if needed, install, and run the default report
#   make test      create .venv if needed, install, lint and run the test suite
#
# The first call creates .venv and installs torch and layershare into it; later
# calls skip the install until pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/python -m pip
RUFF := $(VENV)/bin/ruff
PYTEST := $(VENV)/bin/python -m pytest
STAMP := $(VENV)/.installed

# torch is installed on its own first, so that the index it comes from can be
# chosen. On Linux, PyPI's torch wheel is the CUDA build; for the CPU build use
#   make install TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=

.PHONY: report test lint format install clean

report: $(STAMP)
	$(VENV)/bin/layershare report

# pytest exits with 5 when it collected no tests; that fails too, with a message.
test: $(STAMP)
	$(RUFF) check .
	$(RUFF) format --check .
	$(PYTEST) -q || status=$$?; \
	if [ "$${status:-0}" -eq 5 ]; then \
		echo "error: pytest collected no tests (exit code 5)" >&2; \
	fi; \
	exit $${status:-0}

lint: $(STAMP)
	$(RUFF) check .
	$(RUFF) format --check .

format: $(STAMP)
	$(RUFF) check --fix .
	$(RUFF) format .

# Reinstall even when the stamp is current, for example with other TORCH_PIP_ARGS.
install:
	rm -f $(STAMP)
	$(MAKE) $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	$(PIP) install -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) reports build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
