# routerscope: zero-code eBPF tracing for LLM routers.
#   make demo   router + fake model server + agent, traces on stdout
#   make test   every test (root-gated eBPF tests run when root)

GO        ?= go
BIN       := bin
EXPORTER  ?= stdout
GOTESTFLAGS ?= -count=1 -timeout 40m

.PHONY: all build cross generate check-generated deps prereqs demo test unit bench bench-short memory lint fuzz faults image clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Regenerate the eBPF objects and bindings (needs clang, llvm-strip, libbpf headers).
generate: prereqs
	$(GO) generate ./bpf/...

# Fail when the committed eBPF objects differ from what the sources generate.
check-generated: generate
	git diff --exit-code -- bpf/

# Install every build and test prerequisite on a Debian machine (run as root).
deps:
	./scripts/deps.sh --all

# Install only the missing prerequisites when root; otherwise name the command
# that does. make test runs this first, so it works on a fresh machine.
prereqs:
	@./scripts/deps.sh

demo: build
	./scripts/demo.sh $(EXPORTER)

# The agent and the router for linux/arm64 (a compile check; nothing is kept).
cross:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/routerscope
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./probes ./bpf ./agent ./cmd/routerscope

test: check-generated lint cross fuzz
	$(GO) test $(GOTESTFLAGS) -skip '^TestFault' ./...
	@$(MAKE) --no-print-directory faults

# The fault suite (root; e2e/faults_test.go): collector down under load then
# back, collector flapping, a burst beyond the ring buffer, agent and router killed with -9, broken configs on SIGHUP while
# serving. Prints each fault's figures (the FAULT lines); the full log is kept
# in $(BIN)/faults.log.
faults:
	@mkdir -p $(BIN); \
	$(GO) test -count=1 -timeout 20m -v -run '^TestFault' ./e2e >$(BIN)/faults.log 2>&1; rc=$$?; \
	grep -E '^(--- |ok|FAIL|panic)|FAULT' $(BIN)/faults.log | sed -E 's/^ +faults_test.go:[0-9]+: //'; exit $$rc

# Fuzz every parser of hostile input for FUZZTIME each, from the seed corpora
# in */testdata/fuzz (plain `go test` runs the seeds too). A failing input is
# written to testdata/fuzz/<target>/ to reproduce and commit.
# FUZZTIME is a count of inputs (Nx), not a duration: with a duration, Go
# 1.26's fuzz coordinator can report its own deadline as a failure
# ("context deadline exceeded", no input written) when a loaded machine
# delays a worker's stop (go.dev/issue/75804, fixed in Go 1.27). 10000
# inputs take about 1-4 s per target on the 2-core test machine.
FUZZTIME ?= 10000x
FUZZ_TARGETS := \
	agent/config:FuzzParseConfig cmd/routerscope:FuzzRenderTrees agent/discovery:FuzzParseStartTime \
	agent/discovery:FuzzCgroupIDs agent/discovery:FuzzConfigFlag agent/spans:FuzzRepairUTF8 \
	probes:FuzzDecodeEvent probes:FuzzParseSource probes:FuzzParseSpec \
	probes:FuzzSpecErrorsBounded

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz ./$$pkg $$name for $(FUZZTIME)"; \
		$(GO) test ./$$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) >/tmp/fuzz.$$$$.log 2>&1 \
			|| { cat /tmp/fuzz.$$$$.log; rm -f /tmp/fuzz.$$$$.log; exit 1; }; \
		grep '^fuzz: elapsed' /tmp/fuzz.$$$$.log | tail -1; rm -f /tmp/fuzz.$$$$.log; \
	done

# Pure-Go tests only: no root, no clang.
unit:
	$(GO) test -count=1 -short ./...

# Overhead report (root): router alone vs agent setups vs in-process OTel,
# interleaved rounds; writes build/bench/report.md and prints it.
bench:
	$(GO) run ./bench --out build/bench $(BENCHFLAGS)

# The same report in a few minutes: fewer rounds, requests and setups.
bench-short:
	$(GO) run ./bench --out build/bench --short $(BENCHFLAGS)

# The agent's OCI image, built without a container engine: build/image/oci (OCI layout)
# and build/image/routerscope.tar (docker-archive).
image:
	$(GO) run ./deploy/image --out build/image

# Kernel memory of one capture (maps and ring buffer, default sizes) with 1,
# 8 and 64 traced processes, per map (root): the figures in the README.
memory:
	$(GO) test ./probes -run 'TestCaptureSixtyFourProcesses$$' -count=1 -v | sed -n '/memory by process count/,/per map/p'

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfe[lb]\.go$$')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(BIN) build
