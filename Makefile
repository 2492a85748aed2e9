# bootsrv's build, test and benchmark entry points. `make help` lists them.
GO        ?= go
BIN       ?= bin/bootsrv
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PKGS      := ./...
# The QEMU lab and demo run alone, after the rest: four emulated vCPUs on a
# 2-core machine leave nothing to spare, and beside the other packages'
# race builds and namespace tests master1's apiserver starved (TLS handshake
# timeouts on its own loopback) and the demo failed in CI.
LABPKG    := ./examples/qemu-lab
GOFILES    = $(shell find cmd pkg assets examples bench -name '*.go')

.PHONY: help deps build assets releases run test test-short lint bench bench-dhcp bench-dhcp-stores bench-http-stores bench-tftp bench-http bench-compare bench-storm test-faults fuzz demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

deps: ## install the Debian packages the tests, benchmarks and lab use (root; once)
	@if [ "$$(id -u)" = 0 ]; then bash .ci/install-deps; else echo "deps: not root: skipping apt-get (tests that need packages will say so)"; fi

build: assets ## build bin/bootsrv with the iPXE binaries embedded
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/bootsrv

assets: ## fetch the pinned iPXE binaries into assets/ipxe (from Debian's ipxe package)
	bash assets/fetch-ipxe.sh

releases: ## build Kubernetes, etcd, CNI, flannel and CoreDNS releases from their Go modules into /var/cache/bootsrv-test/releases (once; ~15 min)
	@if [ "$$(id -u)" = 0 ]; then bash examples/releases/build.sh; else echo "releases: not root: skipping (tests that run them will say so)"; fi

run: build ## run the server on built-in defaults
	$(BIN) serve

test: deps assets releases ## vet, then every test with the race detector (root runs the namespace, control-plane, QEMU lab and demo-cluster tests too)
	$(GO) vet $(PKGS)
	cd examples/qemu-lab/labpod && $(GO) vet ./...
	@test -z "$$(gofmt -l $(GOFILES))" || { echo "gofmt would change:"; gofmt -l $(GOFILES); exit 1; }
	@# The lab runs even when a package before it failed, so one run shows both.
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list $(PKGS) | grep -v '/examples/qemu-lab$$'); rc=$$?; \
	$(GO) test -race -count=1 -timeout 60m $(LABPKG) && exit $$rc

test-short: ## unit tests only, no namespaces or VMs
	$(GO) test -short -count=1 $(PKGS)

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $(GOFILES))" || { echo "gofmt would change:"; gofmt -l $(GOFILES); exit 1; }
	$(GO) vet $(PKGS)
	cd examples/qemu-lab/labpod && $(GO) vet ./...

FUZZTIME  ?= 30s
FUZZ      := FuzzDecide:./pkg/dhcp FuzzParseRequest:./pkg/tftp FuzzParseMachinesFile:./pkg/model FuzzQuery:./pkg/httpd

fuzz: ## each fuzz target for FUZZTIME (30s): DHCP packets to decisions, TFTP requests, machine imports, HTTP queries
	@for t in $(FUZZ); do \
		echo "fuzz: $${t%%:*} ($${t#*:}) for $(FUZZTIME)"; \
		out=$$($(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) $${t#*:} 2>&1); rc=$$?; \
		echo "$$out" | grep 'elapsed:' | tail -1; echo "$$out" | grep -E '^(ok|FAIL|---|    )'; \
		[ $$rc = 0 ] || { echo "fuzz: $${t%%:*} failed: the crasher is in $${t#*:}/testdata/fuzz/$${t%%:*}/ (go test -run $${t%%:*} $${t#*:} replays it)"; exit 1; }; \
	done

bench: ## Go benchmarks of every package
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s $(PKGS)

bench-dhcp: build ## DORA/s: bootsrv serve against dnsmasq and Kea memfile with perfdhcp (root)
	bench/dhcp.sh

bench-dhcp-stores: ## DORA/s: bootsrv on bbolt, on a 3-member etcd, and Kea memfile, with perfdhcp (root)
	BOOTSRV_BENCH_DHCP=1 $(GO) test -count=1 -run '^TestPerfdhcpStores$$' -v ./pkg/dhcp/ | grep -E 'DORA/s|^(ok|FAIL|---)'

bench-http-stores: ## /ipxe and /ignition req/s of bootsrv serve on bbolt and on a 3-member etcd, one run
	BOOTSRV_BENCH_HTTP_STORES=1 $(GO) test -count=1 -run '^TestBenchHTTPStores$$' -v ./cmd/bootsrv/ | grep -E 'bbolt:|etcd:|^(ok|FAIL|---)'

bench-tftp: build ## fetches/s of ipxe.efi: bootsrv serve against tftpd-hpa and dnsmasq, clients on many addresses (root)
	bench/tftp.sh

bench-http: build ## /ipxe and /ignition req/s at 10 and 10,000 machines
	bench/http.sh

STORM     ?= bin/bootstorm

$(STORM): $(GOFILES)
	$(GO) build -o $(STORM) ./cmd/bootstorm

bench-storm: build $(STORM) ## boot storms of 1,000 and 10,000 machines through the whole journey against bootsrv serve, then the state checked (root)
	$(STORM) -n 1000 -bin $(BIN)
	$(STORM) -n 10000 -bin $(BIN)

test-faults: build $(STORM) ## a 1,000-machine storm with bootsrv SIGKILLed 6 times and SIGTERMed twice mid-storm, then the state checked (root)
	$(STORM) -n 1000 -kills 6 -terms 2 -ramp 20s -bin $(BIN)

bench-compare: build ## before/after in one run: /ipxe, /ignition req/s and DHCP DORA/s of BEFORE (default c88dc13, built if missing) against bin/bootsrv (root)
	bench/compare.sh "$(BEFORE)" $(BIN)

demo: deps build releases ## the example cluster's 3 machines netboot as QEMU VMs against bootsrv and become a Kubernetes cluster (root; ~15 min)
	bash examples/qemu-lab/demo.sh

clean: ## remove build products
	rm -rf bin
