# Outpost build, test and benchmark entry points. See README.md.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/outpost-edge/outpost/cmd/internal/cli.Version=$(VERSION)
FUZZTIME  ?= 100000x
BENCHTIME ?= 1x
PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
SAMPLES   := outpost-tempsensor outpost-filter

.PHONY: build test interop screenshots bench fuzz lint clean install uninstall

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/outpost ./cmd/outpost
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/outpost-tempsensor ./cmd/samples/tempsensor
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/outpost-filter ./cmd/samples/filter

# Installs bin/outpost (and the sample modules' binaries, when built) in
# $(DESTDIR)$(BINDIR), /usr/local/bin by default: `make install
# PREFIX=$$HOME/.local` needs no root. bin/outpost is built when missing or
# older than the sources, so `make build && sudo make install` does not
# build as root.
install: bin/outpost
	install -d '$(DESTDIR)$(BINDIR)'
	install -m 0755 bin/outpost '$(DESTDIR)$(BINDIR)/outpost'
	for f in $(SAMPLES); do if [ -f bin/$$f ]; then install -m 0755 bin/$$f '$(DESTDIR)$(BINDIR)/'$$f || exit 1; fi; done

uninstall:
	rm -f '$(DESTDIR)$(BINDIR)/outpost' $(foreach f,$(SAMPLES),'$(DESTDIR)$(BINDIR)/$(f)')

bin/outpost: $(shell git ls-files '*.go' 2>/dev/null) go.mod go.sum
	$(MAKE) build

# Every test with the race detector, scenarios (testdata/script) included.
test:
	$(GO) build -tags tools ./cmd/internal/pins
	$(GO) test -race -timeout 14m ./...

# Third-party clients (mosquitto-clients, the Azure IoT Node SDK) against a
# real edge: scenarios in testdata/interop; installs what is missing.
interop:
	.ci/interop

# The dashboards' screenshots in docs/screenshots/ (edge-dashboard.png,
# hub-ui.png), taken by the dashboard test in headless chromium. Run by
# hand and committed; CI never writes docs/.
screenshots:
	mkdir -p docs/screenshots
	OUTPOST_BROWSER_TESTS=1 OUTPOST_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^TestDashboardBrowser$$' ./cmd/outpost/

# Benchmarks; figures go to docs/benchmarks.md (see scripts in .ci/bench).
bench:
	.ci/bench

# A short smoke run of every fuzz target (FUZZTIME each). Counts (Nx), not
# durations: a duration trips a race in Go 1.26's fuzz coordinator that
# fails the run with "context deadline exceeded" (golang/go#75804).
fuzz:
	.ci/fuzz $(FUZZTIME)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
