# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
SDK := backend/seatguard/static/seatguard.js
# The language packs the SDK fetches; the same build writes them.
SDK_LANGS := $(foreach lang,fr es de,backend/seatguard/static/lang/$(lang).json)
# The device module (fingerprint and device key) the SDK loads beside it; the same build.
SDK_DEVICE := backend/seatguard/static/device.js
# Swagger UI for the interactive API docs (/api/docs), copied from swagger-ui-dist; the same build.
API_DOCS := backend/seatguard/static/apidocs/swagger-ui-bundle.js

.PHONY: demo test check sdk system-deps clean

# PYTHONWARNINGS: setuptools notes, on every editable install of a project whose packages live
# in two directories (backend/ and the root), that same-named folders may shadow them.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(SDK) $(SDK_LANGS) $(SDK_DEVICE) $(API_DOCS) &: node_modules/.installed $(wildcard js-sdk/src/*.js) js-sdk/build.mjs
	npm run --silent build

sdk: $(SDK) $(SDK_LANGS) $(SDK_DEVICE) $(API_DOCS)

# Debian's chromium (for Playwright) and redis-server, installed only where missing.
system-deps:
	scripts/install-system-deps

demo: $(VENV)/.installed $(SDK) $(SDK_LANGS) $(API_DOCS)
	$(VENV)/bin/seatguard demo --host 127.0.0.1 --port $(PORT) --db .seatguard/demo.db

test: $(VENV)/.installed $(SDK) $(SDK_LANGS) $(API_DOCS) system-deps
	npm test
	$(PY) -m pytest --cov

check: $(VENV)/.installed
	$(VENV)/bin/ruff check backend demo_site tests
	$(VENV)/bin/ruff format --check backend demo_site tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) node_modules .seatguard $(SDK) $(SDK_DEVICE) backend/seatguard/static/lang backend/seatguard/static/apidocs
