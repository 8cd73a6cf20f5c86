# The two commands a newcomer needs:
#   make run    builds and starts both programs with a demo user (embedded store)
#   make test   runs every test (against a real PostgreSQL)

SHELL := bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
export TEST_DATABASE_URL

.PHONY: run run-postgres restart-proxy test build vet fmt bench clean chaos soak

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/proxy ./proxy
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/storage-backend ./storage-backend

run: build
	@scripts/run.sh

# The same on PostgreSQL: DATABASE_URL, or the local server's database
# "authsidecar" (created if missing).
run-postgres: build
	@DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/authsidecar?sslmode=disable} scripts/run.sh

# While make run (or run-postgres) runs in another terminal: stop the proxy
# and start it again (from bin/proxy, so after make build a new one), with
# the storage backend and the sessions left as they are.
restart-proxy:
	@if [ -f .run/run.pid ] && kill -0 "$$(cat .run/run.pid)" 2>/dev/null; then \
		kill -USR1 "$$(cat .run/run.pid)" && echo "restarting the proxy; 'make run' says when it is back"; \
	else \
		echo "make run is not running here (no .run/run.pid)" >&2; exit 1; \
	fi

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Tests at once within a package (go test's default is the number of CPUs):
# most of a test's time is spent waiting on PostgreSQL, a child process or
# a clock. Not more: at four a whole run holds up to ~70 connections at
# once (at eight the end-to-end tests alone do), and the server's default
# max_connections is 100.
# GORACE: a binary built with -race otherwise sleeps a second before it
# exits, a second per package.
TEST_PARALLEL ?= 4

test:
	@scripts/postgres.sh "$(TEST_DATABASE_URL)"
	@scripts/ingress-tools.sh
	@scripts/observability-tools.sh
	@scripts/browser-tools.sh
	@scripts/scale-tools.sh
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	GORACE=atexit_sleep_ms=0 $(GO) test -race -count=1 -parallel $(TEST_PARALLEL) ./...

# make bench   measures the proxy against a bare reverse proxy (about three
#              minutes) and writes docs/benchmarks.md; see proxy/bench.
bench: build
	@scripts/postgres.sh "$(TEST_DATABASE_URL)"
	$(GO) run ./proxy/bench

# make chaos   the fault suite (about two minutes; not part of make test):
#              PostgreSQL restarted, killed and frozen (a server of its own,
#              started for each fault), the listener cut, a proxy killed,
#              all under load; writes docs/faults.md.
chaos:
	@scripts/scale-tools.sh chaos
	$(GO) test -tags chaos -count=1 -timeout 10m -run '^TestChaos$$' ./e2e/ -args -chaos.report=$(CURDIR)/docs/faults.md

# make soak    ten minutes of steady mixed load through two replicas; the
#              proxy's heap, goroutines, open files and database connections
#              printed every minute must stay flat. SOAK=1m for a short run.
SOAK ?= 10m
soak:
	@scripts/postgres.sh "$(TEST_DATABASE_URL)"
	$(GO) test -tags soak -count=1 -v -timeout 60m -run '^TestSoak$$' ./e2e/ -args -soak.duration=$(SOAK) -soak.report=$(CURDIR)/docs/soak.md

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .run
