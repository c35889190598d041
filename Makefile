# Sluice. `make demo` runs the main job; `make test` passes the tests.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/sluice-proxy/sluice/internal/buildinfo.Version=$(VERSION)
PKGS      := ./...

.PHONY: build test test-short test-pool test-ha test-package package cross bench bench-broker fuzz demo lab deps clean

build:
	$(GO) build -buildvcs=auto -ldflags "$(LDFLAGS)" -o bin/sluice ./cmd/sluice

# dist/sluice_VERSION_ARCH.deb (amd64 and arm64; ARCHES= narrows it) with
# nfpm: packaging/README.md.
package:
	GO=$(GO) VERSION=$(VERSION) ./packaging/build.sh

# The package alone: built, linted, installed, upgraded and purged on this
# machine (root; packaging/README.md).
test-package: deps
	$(GO) test -count=1 -v -timeout 10m ./packaging/

# Installs the Debian packages the tests need when they are missing (root or sudo).
deps:
	./scripts/install-deps.sh

# Unit and integration tests against real MariaDB, sysbench, kcat and Kafka clients.
test: deps build
	$(GO) vet $(PKGS)
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s
	$(GO) test -count=1 -timeout 20m $(PKGS)
	$(MAKE) --no-print-directory test-pool

# The router, prepared-statement, transaction-replay, replay and failover
# tests again, with sessions sharing pooled connections (pool.mode multiplex).
POOL_PKGS = ./proxy/ ./replay/replaytest/ ./internal/testenv/failovertest/
test-pool: build
	SLUICE_TEST_POOL=multiplex $(GO) test -count=1 -timeout 10m $(POOL_PKGS)

# Sluice builds (and vets) for macOS and FreeBSD too: Linux-only code sits in
# _linux.go files with a _other.go fallback.
CROSS_GOOS ?= darwin freebsd
cross:
	@set -e; for os in $(CROSS_GOOS); do \
	  echo "cross $$os"; \
	  GOOS=$$os $(GO) build $(PKGS); \
	  GOOS=$$os $(GO) vet $(PKGS); \
	done

# The Pacemaker resource agent alone: exit codes, ocf-tester, a real cluster (ha/README.md).
test-ha: deps
	$(GO) test -count=1 -v -timeout 10m ./ha/hatest/

# Each fuzz target briefly, from its checked-in seed corpus.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    if ! out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); then \
	      echo "$$out" | tail -20; \
	      if $(GO) test -count=1 -run "^$$f$$" $$pkg >/dev/null 2>&1; then \
	        echo "fuzz $$f: the failure does not reproduce from its saved input (a worker stalled on a loaded machine?); not a failure"; \
	      else exit 1; fi; \
	    fi; \
	  done; \
	done

# sysbench (point select, read-only, read-write; both ps modes; 8 and 64 threads)
# direct, through HAProxy (TCP mode) and through Sluice, and the memory of 1,000
# idle sessions, written to BENCHMARKS.md (SLUICE_BENCH_* narrow it: see there);
# then the hot paths' micro-benchmarks with allocation counts.
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./internal/testenv/bench/
	$(GO) test -run '^$$' -bench . -benchmem ./proxy/ ./router/ ./audit/ ./internal/digest/

bench-broker:
	$(GO) test -run '^$$' -bench BenchmarkBroker -benchtime 1x -timeout 20m ./logbroker/

# A MariaDB primary with two GTID replicas on loopback, until Ctrl-C.
lab: deps
	$(GO) run ./internal/testenv/lab/cmd/lab -replicas 2 -dir .lab

# The main job: MariaDB topology, Sluice with its bundled broker, sample traffic.
demo: deps build
	$(GO) run ./internal/testenv/lab/cmd/demo -sluice bin/sluice

clean:
	rm -rf bin data .lab dist
