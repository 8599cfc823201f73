# servoscope — every developer and CI entry point. `make help` lists them.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CACHE ?= $(HOME)/.cache/servoscope
export PYTHONPATH := $(CURDIR)

.DEFAULT_GOAL := help
.PHONY: help venv tools up down status simulator test lint format lock bench load load-ui previews chaos \
	images k8s-tools k8s-check k8s-golden k8s-node-tools k8s-up k8s-down k8s-install k8s-forward k8s-e2e

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@echo "==> creating $(VENV) and installing requirements.lock" >&2
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@touch $@

venv: $(STAMP) ## create .venv with the locked dependencies

tools: ## install Prometheus, Redis, nginx, wrk; build Jaeger and Toxiproxy (cached in ~/.cache/servoscope)
	@tools/bootstrap.sh --check || tools/bootstrap.sh

up: venv tools ## start the local stack in the background; returns once the gateway is ready
	@$(PY) -m stack up

down: ## stop the local stack; leaves no process behind
	@$(PY) -m stack down

status: ## which processes of the local stack are running
	@$(PY) -m stack status

simulator: venv ## run the Maestro simulator alone on a pty (first line: device: <pty>)
	@$(PY) -m services.servo.simulator --control-port 0

lint: venv ## ruff: lint and formatting check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: venv ## ruff: fix formatting and safe lint findings
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

test: venv tools lint images k8s-tools k8s-node-tools ## the whole suite: unit, component, system, deploy and Kubernetes tests
	@$(VENV)/bin/pytest

images: tools ## OCI images of every process, built offline with podman (tools/images.sh)
	@tools/images.sh

k8s-tools: ## helm, kubeconform + schemas, etcd, kube-apiserver, kubectl (tools/kubernetes.sh client)
	@tools/kubernetes.sh check-tools client || tools/kubernetes.sh client

k8s-check: venv k8s-tools ## the Helm chart: lint, golden renders, kubeconform, dry run on a real API server
	@$(VENV)/bin/pytest -q tests/deploy/test_helm_chart.py

k8s-golden: venv k8s-tools ## rewrite tests/deploy/golden/ from the chart after a deliberate change
	@SERVOSCOPE_UPDATE_GOLDEN=1 $(VENV)/bin/pytest -q tests/deploy/test_helm_chart.py -k golden

lock: ## re-resolve requirements.lock from pyproject.toml (needs uv)
	uv pip compile pyproject.toml --extra dev -p 3.11 -o requirements.lock

bench: venv tools ## run the benchmarks (bench/bench_*.py) and rewrite BENCHMARKS.md
	@$(PY) -m bench $(TOPICS)

PROFILE ?= baseline
RESULTS ?= results
WEB_PORT ?= 8089
GATEWAY_URL = $(shell $(PY) -c 'from servoscope.settings import load; print(load().url("gateway"))')

load: venv tools ## headless locust run (PROFILE=smoke|baseline|ramp|spike|soak) against the local stack
	@$(PY) -m loadtests run --profile $(PROFILE) --results $(RESULTS)

load-ui: venv tools ## locust's web UI on 127.0.0.1:$(WEB_PORT) against the local stack's gateway
	@SERVOSCOPE_LOAD_PROFILE=$(PROFILE) $(VENV)/bin/locust -f loadtests/locustfile.py \
		--web-host 127.0.0.1 --web-port $(WEB_PORT) --host $(GATEWAY_URL)

previews: venv tools ## PNGs of the Grafana dashboards in docs/dashboards/, drawn from a live stack
	@$(PY) -m observability.grafana.render_previews

EXPERIMENT ?=
HOG ?=
chaos: venv tools ## the chaos suite on fresh stacks, protected and control runs (EXPERIMENT=servo-hang for one; HOG=1: with every core kept busy)
	@$(PY) -m chaos $(EXPERIMENT) $(if $(HOG),--hog) --results $(RESULTS)/chaos-$$(date +%Y%m%d-%H%M%S)

k8s-node-tools: k8s-tools ## the node's tools: kubelet, kube-proxy, containerd, CoreDNS... (tools/kubernetes.sh node)
	@tools/kubernetes.sh check-tools node || tools/kubernetes.sh node

k8s-up: venv k8s-node-tools ## start a single-node Kubernetes sealed in a network namespace (root)
	@$(PY) -m deploy.cluster up

k8s-down: ## stop that cluster and remove everything k8s-up created
	@$(PY) -m deploy.cluster down

k8s-install: venv images ## the chart on that cluster: images imported, helm install --wait, simulator mode
	@$(PY) -m deploy.cluster install

k8s-forward: venv ## loopback port-forwards to the release's gateway, Prometheus, Jaeger... until Ctrl-C
	@$(PY) -m deploy.cluster forward

k8s-e2e: venv tools images k8s-node-tools ## the Kubernetes tests alone: cluster, seal, the chart under traffic, rollouts, chaos (root)
	@$(VENV)/bin/pytest tests/kubernetes
