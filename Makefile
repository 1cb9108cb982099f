# Run `make help` for the targets. The README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
STACK ?= dev

.PHONY: help deps demo test lint bench preview up destroy golden plan

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## Install Azurite (pinned in package-lock.json) and download Go modules
	npm ci --no-audit --no-fund
	go mod download

demo: deps ## Run producer + consumer locally against a fresh Azurite, with progress and a summary
	go run ./cmd/demo

test: deps ## Run the full test suite (mock stack tests, builders, programs against Azurite)
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	go test -count=1 -timeout 20m ./...

lint: ## gofmt and go vet
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	go vet ./...

bench: deps ## Consumer vs reference client on one Azurite; last line is the throughput ratio
	go run ./cmd/bench

golden: ## Regenerate the golden resource inventories after reviewing a change
	go test . -run TestStacks -update

plan: ## Offline plan (no Azure): resource tree, key settings, Kubernetes YAML for STACK
	go run ./cmd/plan -stack $(STACK)

preview: ## pulumi preview for STACK (default dev)
	pulumi preview --stack $(STACK)

up: ## pulumi up for STACK (default dev)
	pulumi up --stack $(STACK)

destroy: ## pulumi destroy for STACK (default dev)
	pulumi destroy --stack $(STACK)
