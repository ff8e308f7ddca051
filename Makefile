# aerocdn developer entry points. `make demo` runs the project, `make test` runs the tests.
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: bootstrap test lint unit crds demo cluster-up cluster-down test-aerospike image kind-e2e chart-lint

bootstrap:
	@bash scripts/bootstrap.sh

lint: bootstrap
	$(BIN)/ruff check operator localcluster tests bench
	$(BIN)/mypy

# The full suite: lint, types, unit, edge (real nginx), integration (real control plane),
# e2e (the chart and the image on a real node of the local cluster; builds the image).
test: lint
	$(BIN)/aerocdn crds --out crds --check
	$(BIN)/aerocdn crds --out charts/aerocdn/crds --check
	$(BIN)/pytest -p no:randomly --timeout=900

unit: bootstrap
	$(BIN)/pytest tests/unit

crds: bootstrap
	$(BIN)/aerocdn crds --out crds
	$(BIN)/aerocdn crds --out charts/aerocdn/crds

# Runs the project: local control plane (or $KUBECONFIG), CRDs, examples, operator.
demo: bootstrap
	bash scripts/demo.sh

# A local cluster for manual use: control plane, six simulated nodes and REAL_NODES real nodes
# (kubelet + containerd; needs root); IMAGE_ARCHIVE (e.g. from `scripts/image.sh --archive`)
# is imported into the real nodes. Prints the KUBECONFIG to export.
REAL_NODES ?= 1
cluster-up: bootstrap
	@$(BIN)/python -m aerocdn_localcluster up --real-nodes $(REAL_NODES) \
	  $(if $(IMAGE_ARCHIVE),--image $(IMAGE_ARCHIVE))

cluster-down:
	@$(BIN)/python -m aerocdn_localcluster down

# Live Aerospike tests: a running cluster (AEROCDN_TEST_AEROSPIKE=host:port[,...]) and/or an
# asd binary (AEROCDN_TEST_ASD=/path/to/asd) to start on rendered configs and, as an image, as
# the pods of a CacheCluster on three real nodes (tests/e2e/test_aerospike_pods_live.py; root).
test-aerospike: bootstrap
	$(BIN)/pytest -m aerospike tests/aerospike tests/integration/test_aerospike_scaledown_live.py \
	  tests/e2e/test_aerospike_pods_live.py
	@if [ -n "$$AEROCDN_TEST_AEROSPIKE" ]; then \
	  AEROCDN_TEST_EDGE_L2=aerospike $(BIN)/pytest tests/edge; \
	else echo "test-aerospike: tests/edge on the Aerospike tier skipped: set AEROCDN_TEST_AEROSPIKE=host:port"; fi

# The one aerocdn image (operator + edge + nginx) with buildah; no Docker daemon needed.
image: bootstrap
	bash scripts/image.sh --smoke

# kind cluster + image + chart, then tests/e2e and the integration scenarios via KUBECONFIG.
kind-e2e: bootstrap
	bash scripts/kind-e2e.sh

# Render and lint the Helm chart with the Helm library; schema, Kubernetes schemas, kustomize parity.
chart-lint: bootstrap
	$(BIN)/pytest -q tests/unit/test_chart.py
