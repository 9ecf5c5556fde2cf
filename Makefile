# Set-up for a fresh machine with python3 and make: everything goes into ./.venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PHOTOS ?= ~/Photos
QUERY ?= dog on a beach
# A new library's model: `make run PRETRAINED=~/weights/open_clip_model.safetensors` works
# offline (see README, Models); empty means clipsearch's defaults.
MODEL ?=
PRETRAINED ?=
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The product (HEIC/AVIF and camera RAW support included), installed again only when
# pyproject.toml changes (an editable install picks up code changes by itself).
install: $(INSTALLED)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Index a folder, then ask it something: make run PHOTOS=~/Pictures QUERY="red car"
run: $(INSTALLED)
	$(BIN)/clipsearch index $(PHOTOS) $(if $(MODEL),--model "$(MODEL)") \
		$(if $(PRETRAINED),--pretrained "$(PRETRAINED)")
	$(BIN)/clipsearch query "$(QUERY)"

# The whole suite (slow and fault-injection tests included) plus the linter.
# pytest's exit 5 ("no tests collected") is not a failure of the code under test.
test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/ruff check clipsearch tests
	$(BIN)/python -m pytest -q -ra tests; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(BIN)/python
	$(BIN)/ruff check clipsearch tests
	$(BIN)/ruff format --check clipsearch tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
