# genlbridge: kernel generic netlink events to NATS.
#
#   make demo     the module in a VM, the bridge and `genlbridge tail` on it
#   make run      build and run the bridge with an embedded NATS server
#   make tail     print what make run publishes
#   make test     everything CI runs: vet, gofmt, unit and real-kernel tests
#                 (race detector), short fuzzing, the kernel module in qemu,
#                 and make demo
#   make bench    microbenchmarks and genlbench, the side-by-side harness
#   make bench-vm the module's burst in the VM: a raw receiver against the bridge
#
# Tests that need root (network namespaces, multicast injection) skip with a
# message otherwise; CI runs as root. Every tool this needs is installed here.

GO        ?= go
BIN       := build/genlbridge
# Fuzzing runs a count of inputs, not seconds: with a duration, Go's fuzzing
# coordinator can fail a target that found nothing ("context deadline
# exceeded", a race at the deadline), and a slow machine then fails for
# being slow. FUZZMIN bounds the minimizing of each new interesting input.
FUZZTIME  ?= 40000x
FUZZMIN   ?= 2000x
# Tools the tests call: ip (netns, veth, ip mptcp), ethtool, modinfo, and the
# kernel's YNL specs (Debian's linux-doc-6.12) the decoder tests compare with.
APT_PKGS  := iproute2 ethtool kmod linux-doc-6.12

.DEFAULT_GOAL := build
.PHONY: build run tail test deps node-tools vet fmt-check unit fuzz bench clean

# vm-test puts the bridge binary in the VM: build it first.
VM_TEST_DEPS := build
include mk/vm.mk
include mk/k8s.mk

# promtool, for the alert tests (deploy/prometheusrule_test.go): from
# Debian's prometheus package, unpacked rather than installed (installing it
# would start a Prometheus server).
PROMTOOL := build/tools/promtool
# The JavaScript consumer's packages (see node-tools below).
NODE_MODULES := build/node/node_modules/.package-lock.json

deps: $(PROMTOOL) $(NODE_MODULES)
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

# The README's consumers in Python and JavaScript (examples/consumers, run by
# examples/consumers_test.go): python3, and node with the NATS JavaScript
# client from the npm registry, installed into build/node as the lock says.
# A node already on the machine will do (Debian's is 18; the client needs 18).
node-tools:
	@command -v python3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3; }
	@{ command -v node && command -v npm; } >/dev/null || { echo "installing: nodejs npm"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; }

$(NODE_MODULES): examples/consumers/js/package.json examples/consumers/js/package-lock.json | node-tools
	@mkdir -p build/node && cp examples/consumers/js/package.json examples/consumers/js/package-lock.json build/node/
	cd build/node && npm ci --no-audit --no-fund --loglevel=error

$(PROMTOOL):
	@rm -rf build/tools/prometheus-deb && mkdir -p build/tools/prometheus-deb
	cd build/tools/prometheus-deb && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb -x build/tools/prometheus-deb/prometheus_*.deb build/tools/prometheus-deb/root
	cp build/tools/prometheus-deb/root/usr/bin/promtool $@
	rm -rf build/tools/prometheus-deb
	$@ --version | head -1

# build/ holds build outputs and tool caches (Go module trees among them):
# a go.mod of its own keeps it out of the main module's ./... patterns.
build/go.mod:
	@mkdir -p build && printf 'module genlbridge.invalid/build\n' > $@

build: build/go.mod
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$$(git describe --always --dirty 2>/dev/null || echo dev)" -o $(BIN) ./cmd/genlbridge

# The embedded server keeps its JetStream store under build/ unless told otherwise.
run: build
	GENLBRIDGE_DATA_DIR=$${GENLBRIDGE_DATA_DIR:-$(CURDIR)/build/data} $(BIN) run

# tail what make run publishes, with the credentials it keeps in build/data.
tail: build
	GENLBRIDGE_DATA_DIR=$${GENLBRIDGE_DATA_DIR:-$(CURDIR)/build/data} $(BIN) tail

vet: build/go.mod
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# e2e takes about 10 minutes under -race on 2 cores; the timeout only
# catches a hang, with room for a machine twice as slow and loaded.
unit: deps build/go.mod
	$(GO) test -race -count=1 -timeout 45m ./...

# Each fuzzer runs FUZZTIME inputs: the bridge's decoder, the JSON encoder, and the
# YNL engine's spec loader (arbitrary YAML), decoder (arbitrary messages
# against every shipped spec) and exmpl schema (against the old decoder),
# and the spool's pack and record meta readers.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./bridge
	$(GO) test -run '^$$' -fuzz '^FuzzAppendJSON$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./event
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./ynl
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./ynl
	$(GO) test -run '^$$' -fuzz '^FuzzExmpl$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./ynl
	$(GO) test -run '^$$' -fuzz '^FuzzUnpack$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./spool
	$(GO) test -run '^$$' -fuzz '^FuzzParseMeta$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./spool

# demo: the README's first command is part of what CI proves; it fails
# unless its burst ends fully accounted (received + reported lost).
test: deps vet fmt-check fuzz vm-test demo unit k8s-test

# Microbenchmarks, then the side-by-side harness (root; a few minutes):
# table on stdout, build/bench/results.json and build/bench/chart.png.
BENCH_FLAGS ?=
# The hub runs as its own nats-server process (its CPU is measured apart).
bench: build build/nats-server
	$(GO) test -run '^$$' -bench . -benchmem ./event ./bridge ./ynl ./sink
	$(GO) build -o build/genlbench ./cmd/genlbench
	build/genlbench -bridge $(BIN) -nats-server build/nats-server -out build/bench $(BENCH_FLAGS)

build/nats-server: go.mod go.sum
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ github.com/nats-io/nats-server/v2

clean:
	rm -rf build
