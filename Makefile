# aigate: the commands a newcomer needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/operator:$(CURDIR)/hack
CLUSTER_DIR ?= /tmp/aigate-cluster

.PHONY: help venv binaries cluster-up cluster-down test test-unit soak lint crds check-crds demo bench bench-scale bench-floor kind-up clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## create .venv with aigate and its dev tools

binaries: ## build the control-plane binaries once (cached in ~/.cache/aigate)
	bash hack/build-control-plane.sh >/dev/null

cluster-up: venv binaries ## start etcd, apiserver, controllers, kwok and Prometheus in the background
	@$(PY) -m localcluster up --state-dir $(CLUSTER_DIR)

cluster-down: ## stop every process cluster-up started
	@$(PY) -m localcluster down --state-dir $(CLUSTER_DIR)

test: venv binaries lint check-crds ## all tests: unit, then integration against a real control plane
	$(PY) -m pytest tests/unit tests/integration tests/e2e

test-unit: venv ## unit and property tests of the pure core (no cluster)
	$(PY) -m pytest tests/unit

soak: venv ## the rollout model-based test with the long hypothesis profile (minutes)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest tests/unit/test_rollout_model.py -p no:cacheprovider

lint: venv ## ruff and the layering contract
	$(VENV)/bin/ruff check operator hack tests bench
	$(VENV)/bin/lint-imports

crds: venv ## regenerate crds/ from the pydantic models
	$(PY) -m aigate.crdgen crds/

check-crds: venv ## fail if crds/ differs from what the models generate
	$(PY) -m aigate.crdgen --check crds/

demo: venv binaries ## the operator's main job, end to end, on a local control plane it starts
	@$(PY) hack/demo.py

kind-up: ## (users with Docker only) a kind cluster with the CRD; never needed by tests or demo
	@docker info >/dev/null 2>&1 || { echo "kind-up needs a running Docker engine; use make cluster-up instead" >&2; exit 1; }
	@command -v kind >/dev/null || { echo "kind not found: go install sigs.k8s.io/kind@v0.33.0" >&2; exit 1; }
	kind create cluster --name aigate
	kubectl --context kind-aigate apply --server-side -f crds/
	@echo "kind cluster ready: kubectl --context kind-aigate ...; run the operator with: aigate run"

clean: cluster-down ## stop the cluster and remove the venv (the binary cache stays)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

bench: venv binaries ## benchmarks on the local control plane; results in bench/results/
	$(PY) bench/governance_latency.py
	$(PY) bench/report_size.py

N ?= 100
bench-scale: venv binaries ## N AIDeployments (N=100) rolled out at once; bench/results/scale-N.json
	$(PY) bench/scale.py --n $(N) $(if $(NOTES),--notes "$(NOTES)") $(if $(CONTROL_PLANE),--control-plane $(CONTROL_PLANE))

bench-floor: venv binaries ## the control plane alone doing the same rollouts' child writes (N=100)
	$(PY) bench/floor.py --n $(N) $(if $(NOTES),--notes "$(NOTES)") $(if $(CONTROL_PLANE),--control-plane $(CONTROL_PLANE))
