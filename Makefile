# The two commands a newcomer needs:
#   make run    builds, sets up PostgreSQL, starts both programs with a demo user
#   make test   runs every test (against a real PostgreSQL)

SHELL := bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
export TEST_DATABASE_URL

.PHONY: run test build vet fmt bench clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/proxy ./proxy
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/storage-backend ./storage-backend

run: build
	@scripts/run.sh

test:
	@scripts/postgres.sh "$(TEST_DATABASE_URL)"
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .run
