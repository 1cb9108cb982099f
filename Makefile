# Run `make help` for the targets. The README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
STACK ?= dev

.PHONY: help deps promtool demo test lint bench preview up destroy golden docs plan FORCE

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: node_modules/.package-lock.json promtool ## Install Azurite (pinned in package-lock.json) and promtool if missing or stale; download Go modules
	go mod download

# promtool, Prometheus's rule tester, runs the alert rule tests (app/observability). It comes
# with Debian's prometheus package (2.42 on bookworm); installed only when missing. The package's
# server is not started (no init system on CI machines; on a desktop, disable it if unwanted).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
promtool:
	@command -v promtool >/dev/null || { \
		echo "installing Debian's prometheus package for promtool"; \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; }
	@promtool --version | head -1

# npm ci (30 s to 2 min) runs only when Azurite is missing or package-lock.json or package.json
# changed after the last install: npm ci writes node_modules/.package-lock.json last, so its time
# is the install's. harness/azurite decides the same way when `go test` runs without make.
node_modules/.package-lock.json: package-lock.json package.json $(if $(realpath node_modules/.bin/azurite),,FORCE)
	npm ci --no-audit --no-fund

FORCE:

demo: deps ## Run producer + consumer locally against a fresh Azurite, with progress and a summary [ARGS="-messages 100000 -rate 0"]
	go run ./cmd/demo $(ARGS)

test: deps lint ## Lint, then run the full test suite (mock stack tests, builders, programs against Azurite)
	go test -count=1 -timeout 20m ./...

lint: ## gofmt check, go vet, staticcheck (pinned in go.mod, checks in staticcheck.conf)
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	go tool staticcheck ./...

bench: deps ## Consumer vs reference with storage 0/5/10/20 ms away (azproxy), replicas 1,2,4, throttled; ends with the two summary lines [ARGS="-rtt 10ms,20ms"]
	go run ./cmd/bench $(ARGS)

docs: ## Regenerate docs/configuration.md (every config key and output) from Pulumi.yaml, infra.Config and infra.OutputDocs
	go run ./cmd/docs

golden: ## Regenerate the golden inventories and docs/plan.dev.md after reviewing a change
	go test . -run '^(TestStacks|TestContainerAppsStacks|TestPlan)$$' -update

# imageSourceRepository has no default (only you know where your copy of this project lives); the
# offline plan shows a placeholder unless you pass yours.
PLAN_IMAGE_REPO ?= https://git.example.com/your-org/aks-edw.git

plan: ## Offline plan (no Azure): key settings, resource tree, Kubernetes YAML for STACK [PLAN_CONFIG="k=v ..."] [PLAN_IMAGE_REPO=url]
	go run ./cmd/plan -stack $(STACK) -config imageSourceRepository=$(PLAN_IMAGE_REPO) $(foreach kv,$(PLAN_CONFIG),-config $(kv))

preview: ## pulumi preview for STACK (default dev)
	pulumi preview --stack $(STACK)

up: ## pulumi up for STACK (default dev)
	pulumi up --stack $(STACK)

destroy: ## pulumi destroy for STACK (default dev)
	pulumi destroy --stack $(STACK)

.PHONY: preflight

preflight: ## Before the first `pulumi up` on a subscription: are the resource providers the stack needs registered? Prints the az commands for any that are not, and whether you are among STACK's cluster admins [PREFLIGHT_ARGS="-subscription ID -json"]
	go run ./cmd/preflight -stack $(STACK) $(PREFLIGHT_ARGS)

.PHONY: verify

verify: ## After `pulumi up`: tagged burst, then scale-up, NAP nodes, stored once, drained, not poisoned, back to rest, for STACK [VERIFY_ARGS="-json"]
	go run ./cmd/verify -stack $(STACK) $(VERIFY_ARGS)

.PHONY: redrive

redrive: ## The poison queue of STACK by reason and source; with ARGS="-reason rejected -yes" put the selected messages back on their queue, byte for byte [ARGS="-since 36h -id ID -limit N -rate 50 -to QUEUE -json"]
	go run ./cmd/redrive -stack $(STACK) $(ARGS)

.PHONY: e2e e2e-tools

e2e: e2e-tools ## Real Pulumi engine, Kubernetes provider, KEDA and Karpenter on a local API server (kwok nodes, Azurite); last line `e2e: 16/16 steps hold` [E2E_BREAK=kind]
	go run ./e2e

e2e-tools: ## Build the pinned e2e tools (Pulumi CLI, kubernetes plugin, etcd, kube-*, kwok, KEDA, Karpenter, kubelogin) into E2E_TOOLS_DIR; skips what is built
	e2e/tools.sh
