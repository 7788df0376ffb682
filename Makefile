# The two set-up commands on a fresh machine (see README.md):
#   make demo   - install into .venv and run the demo against the built-in simulator
#   make test   - install into .venv (with the test extras) and run lint and the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install tools clean explore mutation

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

install: $(STAMP)

# espeak-ng and sox render the spoken prompts (apt-get installs them when root on Debian).
tools: $(STAMP)
	$(BIN)/python -m fsrouter.prompts.install

demo: tools
	$(BIN)/fsrouter demo

lint: $(STAMP)
	$(BIN)/ruff check .

# Two parts: most tests spread over four worker processes (they mostly wait on calls, timers
# and the real switch: on 2 cores the part used ~30% of the CPU with two workers; three took
# it from 367 s to 259 s; with the console and two-node tiers three workers kept the load
# average near 1.5 and took 625 s), then the `serial` ones alone: load, fuzzing, benchmarks
# and the tests that time a recovery in seconds.
TEST_WORKERS ?= 4

test: lint tools
	@# Headless Chromium for the console's browser tests (apt-get when root on Debian).
	$(BIN)/python -m fsrouter.testing.browser
	@status=0; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial" || status=1; \
	$(BIN)/pytest -m serial || status=1; \
	exit $$status

# Not part of `make test`: random property-test draws, ten times as many (see README).
explore: $(STAMP)
	HYPOTHESIS_PROFILE=explore $(BIN)/pytest -m hypothesis -p no:cacheprovider

# Not part of `make test`: mutation testing (mutmut, the `mutation` extra) over routing/ with
# the tests that cover it (setup.cfg [mutmut]); `mutmut results` lists the survivors.
mutation: $(STAMP)
	$(BIN)/pip install --quiet -e '.[mutation]'
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 || true
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis mutants
