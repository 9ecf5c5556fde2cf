# Set-up for a fresh machine with python3 and make: everything goes into ./.venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PHOTOS ?= ~/Photos
QUERY ?= dog on a beach

.PHONY: install run test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The product (HEIC/AVIF and camera RAW support included).
install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

# Index a folder, then ask it something: make run PHOTOS=~/Pictures QUERY="red car"
run: install
	$(BIN)/clipsearch index $(PHOTOS)
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
