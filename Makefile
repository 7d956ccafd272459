# Everything the tests need is installed by `make tools`; `make test` runs it
# first, so on a fresh machine (as root) `make test` is the one command.

SHELL := /bin/bash
GO ?= go
TOOLS_DIR := $(CURDIR)/.tools/bin
CONTAINERD_VERSION := v2.4.2
# Debian packages: containerd 1.6 + runc (the second test daemon and the
# runtime of both), busybox-static (the test rootfs), criu (real checkpoint
# tests run when `criu check` passes), iptables (CRIU locks a container's
# network with iptables-restore while it dumps).
APT_PACKAGES := containerd runc busybox-static criu iptables
# Where `make tools` puts the first CRIU that passes a real dump and
# restore: the machine's own, else Debian trixie's, else Debian sid's,
# fetched here (see internal/tools/criu.sh; the choice is cached in
# $(CRIU_DIR)/selected). Its bin goes first in the PATH of everything
# make runs, which the test harness, demo and bench hand to containerd,
# whose runc looks `criu` up in it.
CRIU_DIR := $(CURDIR)/.tools/criu
export PATH := $(CRIU_DIR)/bin:$(PATH)
TEST_FLAGS ?= -race -count=1 -timeout 25m
LIBCONTAINERD_TEST_CONTAINERD ?= v2
export LIBCONTAINERD_TOOLS_DIR := $(TOOLS_DIR)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: tools
tools: $(TOOLS_DIR)/.containerd-$(CONTAINERD_VERSION) ## install test dependencies: Debian packages if missing, containerd 2.4 (CONTAINERD_VERSION) into .tools/bin, a criu that passes a dump-and-restore self-test into .tools/criu
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run make tools as root)"; exit 1; fi; \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@internal/tools/criu.sh $(CRIU_DIR)

$(TOOLS_DIR)/.containerd-$(CONTAINERD_VERSION):
	mkdir -p $(TOOLS_DIR)
	GOBIN=$(TOOLS_DIR) GOFLAGS= $(GO) install -tags no_btrfs \
		github.com/containerd/containerd/v2/cmd/containerd@$(CONTAINERD_VERSION) \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$(CONTAINERD_VERSION)
	touch $@

.PHONY: test
test: tools ## unit and integration tests with -race against one daemon (LIBCONTAINERD_TEST_CONTAINERD=v2|debian, default v2); prints each real CRIU step's time
	@steps=$(CURDIR)/.tools/criu-steps-$(LIBCONTAINERD_TEST_CONTAINERD).log; rm -f $$steps; \
	LIBCONTAINERD_CRIU_STEPS=$$steps LIBCONTAINERD_TEST_CONTAINERD=$(LIBCONTAINERD_TEST_CONTAINERD) $(GO) test $(TEST_FLAGS) ./...; status=$$?; \
	echo "=== real CRIU steps (containerd $(LIBCONTAINERD_TEST_CONTAINERD)):"; sort $$steps 2>/dev/null || echo "none ran"; exit $$status

.PHONY: test-matrix
test-matrix: tools ## the tests against both daemons: containerd 2.4 and Debian's 1.6
	$(MAKE) test LIBCONTAINERD_TEST_CONTAINERD=v2
	$(MAKE) test LIBCONTAINERD_TEST_CONTAINERD=debian

.PHONY: demo
demo: tools ## run one container through the library on a private containerd (LIBCONTAINERD_TEST_CONTAINERD=v2|debian)
	$(GO) run ./examples/demo -containerd $(LIBCONTAINERD_TEST_CONTAINERD)

.PHONY: bench
bench: tools ## library vs baselines (raw client, moby's libcontainerd) in one run, table into docs/benchmarks.md (LIBCONTAINERD_TEST_CONTAINERD=v2|debian|v2,debian; BENCH_FLAGS=-scale=0.1)
	cd internal/cmd/lcdbench && $(GO) run . -containerd $(LIBCONTAINERD_TEST_CONTAINERD) -doc $(CURDIR)/docs/benchmarks.md $(BENCH_FLAGS)

FUZZTIME ?= 10s
FUZZ_TARGETS := FuzzValidateID FuzzMapEvent FuzzProcessStoreModel

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 10s); seeds are in fuzz_test.go
	@for f in $(FUZZ_TARGETS); do \
		echo "fuzzing $$f for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) . || exit 1; \
	done

.PHONY: lint
lint: ## gofmt check and go vet (also of the nested module internal/cmd/lcdbench)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd internal/cmd/lcdbench && $(GO) vet ./...

# Platforms `make cross` builds and vets. Only Linux runs the tests.
CROSS_PLATFORMS ?= linux/amd64 linux/arm64 windows/amd64 darwin/arm64 freebsd/amd64

.PHONY: cross
cross: ## build and vet the library, types, queue and containerdtest (with their tests) for CROSS_PLATFORMS
	@set -e; for p in $(CROSS_PLATFORMS); do \
		echo "cross: $$p"; \
		export GOOS=$${p%/*} GOARCH=$${p#*/}; \
		$(GO) build . ./types ./queue ./containerdtest ./internal/testutil; \
		$(GO) vet . ./types ./queue ./containerdtest ./internal/testutil; \
	done

comma := ,
ENGINE_CONTAINERD ?= v2,debian
# The engines: v28 (dockerd v28.5.2) and v29 (moby's v2 module at
# ENGINE_MOBY_V2_VERSION; bump it to test a newer v29 engine, see docs/engine.md).
ENGINE_DOCKERD ?= v28,v29
ENGINE_MOBY_V2_VERSION ?= v2.0.0-beta.24

.PHONY: engine-build
engine-build: ## build the engine test's dockerds (skipped when up to date); see enginetest/build.sh
	GO=$(GO) MOBY_V2_VERSION=$(ENGINE_MOBY_V2_VERSION) enginetest/build.sh $(subst $(comma), ,$(ENGINE_DOCKERD))

.PHONY: engine-test
engine-test: tools engine-build ## dockerd v28.5.2 and v29 (moby v2 module), each stock vs on this module, compared through the docker CLI on containerd 2.4 and 1.6 (ENGINE_DOCKERD=v28,v29 ENGINE_CONTAINERD=v2,debian ENGINE_MOBY_V2_VERSION); see docs/engine.md
	$(GO) vet -tags enginetest ./enginetest
	ENGINE_DOCKERD=$(ENGINE_DOCKERD) ENGINE_CONTAINERD=$(ENGINE_CONTAINERD) $(GO) test -tags enginetest -count=1 -timeout 40m -v ./enginetest
