# faceguard — the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need is fetched by the project itself: Go modules through the proxy, the OPA
# command line as a pinned Go tool (go.mod), Debian packages through apt-get where a target needs one.

SHELL      := bash
.SHELLFLAGS := -eu -o pipefail -c
GO         ?= go
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X github.com/faceguard/faceguard/internal/buildinfo.Version=$(VERSION)
OPA        := $(GO) tool opa
TERMINALS  := $(sort $(wildcard testdata/terminals/*))

# Debian packages the tests need; tests start their own servers on free ports. Mosquitto is the interop
# broker, PostgreSQL the shared fleet store, Chromium renders the dashboard in its browser test, Python
# checks an exported audit chain with nothing of ours (agent/store).
DEB_PACKAGES := mosquitto mosquitto-clients postgresql chromium python3

.PHONY: all build deps test test-go test-policy lint bench bench-check deps-cross cross demo check-examples fuzz soak clean

all: build

## build: bin/faceguard-agent (the device binary) and bin/faceguard (the operator's tool)
build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/faceguard-agent ./cmd/faceguard-agent
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/faceguard ./cmd/faceguard

## deps: install the Debian packages the tests use, only those missing (apt-get; sudo when not root)
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	  for svc in mosquitto postgresql; do case "$$missing" in *"$$svc"*) \
	    $$sudo systemctl disable --now $$svc >/dev/null 2>&1 || $$sudo service $$svc stop >/dev/null 2>&1 || true;; \
	  esac; done; \
	fi

## test: every test — Go (with the fuzz seed corpora), and the policy pack (fmt, strict check, tests, coverage)
test: deps lint test-go

test-go:
	$(GO) test -count=1 -timeout 20m ./...

test-policy:
	$(OPA) fmt --fail -l policies
	$(OPA) check --strict policies
	$(OPA) test policies --coverage --threshold 95 --format json > /dev/null || \
	  { $(OPA) test policies -v; echo "policy tests failed or coverage below 95 %"; exit 1; }
	@$(OPA) test policies --coverage --format json | \
	  sed -n 's/^  "coverage": \([0-9.]*\).*/policy coverage: \1 %/p'

## lint: go vet, gofmt, and the Rego checks
lint: test-policy
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## bench: run the benchmarks and write BENCHMARKS.md (section "benchmarks") and the baseline
## testdata/bench/baseline.txt from this run (about 10 minutes; internal/benchrun). BENCH_COUNT runs of
## each repeated benchmark (default 6); BENCH_FLAGS="-only 'decision|match'" runs some and writes nothing.
## On a shared machine keep other measurements off it: flock /tmp/fg-measure.lock make bench
BENCH_COUNT     ?= 6
BENCH_THRESHOLD ?= 10
BENCH_FLAGS     ?=
bench: deps build cross
	$(GO) run ./internal/benchrun bench -count $(BENCH_COUNT) $(BENCH_FLAGS)

## bench-check: run the guarded benchmarks again and compare them with the baseline (benchstat, pinned in
## go.mod); fails on a significant slowdown beyond BENCH_THRESHOLD % (p99: 50 %). New output: bench.out
bench-check: deps
	$(GO) run ./internal/benchrun check -count $(BENCH_COUNT) -threshold $(BENCH_THRESHOLD) $(BENCH_FLAGS)

## deps-cross: Debian's cross compiler for linux/arm64, only if missing (apt-get; sudo when not root)
CROSS_PACKAGES := gcc-aarch64-linux-gnu libc6-dev-arm64-cross
deps-cross:
	@missing=""; for p in $(CROSS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi

## cross: the device binary for linux/arm64, bin/linux-arm64/faceguard-agent (cgo for SQLite, so Debian's
## cross compiler), checked with file(1)
cross: deps-cross
	@mkdir -p bin/linux-arm64
	CGO_ENABLED=1 CC=aarch64-linux-gnu-gcc GOOS=linux GOARCH=arm64 \
	  $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/linux-arm64/faceguard-agent ./cmd/faceguard-agent
	@desc=$$(file -b bin/linux-arm64/faceguard-agent); echo "bin/linux-arm64/faceguard-agent: $$desc"; \
	  case "$$desc" in *ELF*aarch64*stripped) ;; *) echo "not a stripped linux/arm64 ELF binary"; exit 1;; esac

## fuzz: every fuzz target for FUZZTIME each (default 1m; `make test` runs only their seed corpora).
## New crashers are written under the package's testdata/fuzz/ and fail `make test` until fixed.
FUZZTIME ?= 1m
fuzz:
	@for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "════ $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## soak: the reliability suite long and large (sim/reliability): every fault for SOAK_DURATION
## (default 10m), the fleet test with SOAK_DEVICES (default 10000) against Mosquitto. About twenty
## minutes with the defaults. The fleet figures go into BENCHMARKS.md only from a run at the recorded
## size (10,000 devices), so a small trial does not replace them; SOAK_FIGURES=FILE writes them anywhere.
SOAK_DURATION ?= 10m
SOAK_DEVICES  ?= 10000
SOAK_FIGURES  ?= $(if $(filter 10000,$(SOAK_DEVICES)),$(CURDIR)/BENCHMARKS.md,)
soak: deps
	FACEGUARD_SOAK=1 FACEGUARD_SOAK_DURATION=$(SOAK_DURATION) FACEGUARD_SOAK_DEVICES=$(SOAK_DEVICES) \
	  FACEGUARD_FIGURES=$(SOAK_FIGURES) \
	  $(GO) test -count=1 -timeout 8h -v ./sim/reliability/ 2>&1 | tee soak.out

## demo: the whole system in one process: an embedded broker, the controller with its dashboard
## (http://127.0.0.1:8080/), and a dozen simulated terminals with faults. Ctrl-C stops it.
## Addresses: make demo DEMO_FLAGS="--mqtt-addr 127.0.0.1:1884 --http-addr 127.0.0.1:8081"
demo: build
	bin/faceguard demo $(DEMO_FLAGS)

## check-examples: check every example terminal and print its report in both languages
check-examples: build
	@for t in $(TERMINALS); do \
	  for lang in zh en; do \
	    echo "════ $$t ($$lang)"; \
	    rc=0; bin/faceguard-agent check --root $$t --lang $$lang || rc=$$?; \
	    if [ $$rc -gt 1 ]; then exit $$rc; fi; \
	    echo; \
	  done; \
	done

clean:
	rm -rf bin bench.out soak.out
