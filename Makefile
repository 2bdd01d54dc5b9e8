# Two commands on a fresh machine: `make demo` and `make test`. Everything else is installed on demand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_DIR := fhir_desens/sandbox/fhir_server
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: java demo test lint typecheck layers unit install node chromium services pdf-libs bench load cluster load-cluster clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,redis,postgres]'
	touch $(STAMP)

install: $(STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

node: $(NODE_STAMP)

# Debian's Chromium for the end-to-end tests (browser downloads do not work here). Idempotent and silent
# when installed; as root it installs the package, otherwise it says so (the e2e tests then skip locally
# and fail in CI).
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "$(CHROMIUM) missing: install Debian's chromium package (as root: make chromium)" >&2; fi; }

# Debian's Redis and PostgreSQL servers for the store tests (tests/services.py starts throwaway instances
# on free ports), and nginx for the two-instance tests (tests/cluster.py). As root the missing packages
# are installed; otherwise it says so (those tests then skip locally and fail in CI).
SERVICE_PACKAGES := /usr/bin/redis-server:redis-server /usr/lib/postgresql/15/bin/initdb:postgresql-15 /usr/sbin/nginx:nginx
services:
	@missing=""; for pair in $(SERVICE_PACKAGES); do \
	  test -x "$${pair%%:*}" || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing (as root: make services)" >&2; fi; fi

# Debian's Pango and fonts for WeasyPrint (the PDF sheets), and poppler-utils (pdftoppm/pdftotext) to look
# at them. As root the missing packages are installed; otherwise it says so.
PDF_PACKAGES := /usr/lib/x86_64-linux-gnu/libpango-1.0.so.0:libpango-1.0-0 /usr/lib/x86_64-linux-gnu/libpangoft2-1.0.so.0:libpangoft2-1.0-0 /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core /usr/bin/pdftoppm:poppler-utils
pdf-libs:
	@missing=""; for pair in $(PDF_PACKAGES); do \
	  ls $${pair%%:*} >/dev/null 2>&1 || ls /usr/lib/*/$$(basename $${pair%%:*}) >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing (as root: make pdf-libs)" >&2; fi; fi

lint: $(STAMP)
	$(BIN)/ruff check fhir_desens smart_app tests benchmarks
	$(BIN)/ruff format --check fhir_desens smart_app tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# The Java parts (java/validator: the HL7 validator service; java/hapi-server: HAPI FHIR JPA; java/cr-apply:
# the Clinical Reasoning $apply for comparison), built with
# Maven from Maven Central (~/.m2 caches the ~300 MB of dependencies; a rebuild with the cache is quick and
# nothing is rebuilt when no pom or source changed). Without Java/Maven: a note locally, a failure in CI.
JAVA_SOURCES := $(shell find java -path '*/target' -prune -o -type f \( -name pom.xml -o -name '*.java' -o -name '*.yaml' \) -print 2>/dev/null)
JAVA_STAMP := java/.built
$(JAVA_STAMP): $(JAVA_SOURCES)
	@if ! command -v mvn >/dev/null || ! command -v java >/dev/null; then \
	  echo "Java 17 and Maven are needed for java/ (the HL7 validator and HAPI FHIR tests)" >&2; \
	  if [ "$${CI:-}" = true ]; then exit 1; fi; \
	else \
	  for module in validator hapi-server cr-apply; do (cd java/$$module && mvn -B -q -Dstyle.color=never package -DskipTests) || exit 1; done; \
	  touch $@; \
	fi

java: $(JAVA_STAMP)

test: $(STAMP) node chromium services pdf-libs java lint typecheck layers
	$(BIN)/python -m pytest

demo: $(STAMP) node pdf-libs
	$(BIN)/fhir-desens demo

bench: $(STAMP) node
	$(BIN)/python benchmarks/run_all.py

# 50 concurrent planning sessions against the app served by gunicorn; prints throughput and latency.
load: $(STAMP) node
	$(BIN)/python benchmarks/load_app.py

# Two app instances behind nginx sharing Redis and PostgreSQL (docs/deployment.md): a whole journey
# served by both in turn, then one instance stopped mid-session (tests/integration/test_two_instances.py).
cluster: $(STAMP) node services
	$(BIN)/python -m pytest tests/integration/test_two_instances.py -q

# The load test through nginx in front of two instances sharing Redis and PostgreSQL.
load-cluster: $(STAMP) node services
	$(BIN)/python benchmarks/load_app.py --instances 2

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
