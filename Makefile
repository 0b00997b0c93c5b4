# Two commands do everything on a fresh machine:
#   make run    set up, install the default models, ingest the demo corpus, serve on :8000
#   make test   set up, install the default models, then lint, type-check and test
#
# The virtual environment is built once; delete .venv to rebuild it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# llama.cpp is compiled once per machine; pip caches the wheel it builds.
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install models demo lint types unit integration clean system-deps

# OCR (tesseract, Chinese and English) and LibreOffice for legacy .doc/.ppt and WPS files
# (.wps .et .dps; Calc converts the spreadsheets), from Debian.
# Chromium runs the web page's browser tests (headless). PostgreSQL, Redis and nginx are
# cluster mode's database, shared rate limits and load balancer (docs/cluster.md,
# docs/deploy.md); the tests start throwaway servers of their own from them.
# `make run` uses none of them. Noto CJK lets chromium draw the Chinese page, so the
# browser tests' screenshots can be read.
SYSTEM_PACKAGES := tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng \
	libreoffice-writer-nogui libreoffice-impress-nogui libreoffice-calc-nogui \
	chromium fonts-noto-cjk postgresql \
	redis-server nginx

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools
	@# torch first, from the CPU wheel: anything else would pull several GB of CUDA.
	$(BIN)/pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install llama-cpp-python==0.3.36
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

# The web page's one third-party script (markdown-it, MIT), from the npm registry at
# the version package-lock.json pins, copied next to the page; nothing loads from a CDN.
# axe-core (MPL-2.0, a dev dependency) stays in node_modules: only the browser tests
# use it, to audit each screen's accessibility.
WEB_VENDOR := web/vendor/markdown-it.js
$(WEB_VENDOR): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --ignore-scripts --silent
	mkdir -p web/vendor
	cp web/node_modules/markdown-it/dist/browser/markdown-it.esm.min.mjs $(WEB_VENDOR)
	cp web/node_modules/markdown-it/LICENSE web/vendor/markdown-it.LICENSE

install: $(INSTALLED) $(WEB_VENDOR)

system-deps:
	@if command -v tesseract >/dev/null && command -v soffice >/dev/null \
		&& test -e /usr/lib/libreoffice/program/libsclo.so \
		&& command -v chromium >/dev/null && fc-list :lang=zh | grep -q . \
		&& ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		&& command -v redis-server >/dev/null && command -v nginx >/dev/null \
		&& tesseract --list-langs 2>/dev/null | grep -q chi_sim; then \
		echo "system packages present"; \
	else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(SYSTEM_PACKAGES); \
	fi

models: install system-deps
	$(BIN)/lore models install

demo: models
	$(BIN)/lore ingest demo

# The demo serves one person on this machine: auth off, loopback only (the server
# refuses any other address without auth). To serve a network, make keys with
# `lore keys create` and run `lore serve` with auth on (the default).
run: demo
	LORE_AUTH=false $(BIN)/lore serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check rag ingest api tests bench
	$(BIN)/ruff format --check rag ingest api tests bench

types: install
	$(BIN)/mypy

# Tests run in a network namespace that has only loopback, so nothing can reach out.
unit: install
	.ci/offline $(BIN)/python -m pytest -m unit

integration: models
	.ci/offline $(BIN)/python -m pytest -m integration

test: models lint types
	.ci/offline $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
