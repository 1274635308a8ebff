# mailctl: build, test, format. `make test` is what CI runs.
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build test vet fmt lab-validate clean

all: build

## build: the mailctl binary in the repository root
build:
	go build -trimpath -ldflags '$(LDFLAGS)' -o mailctl ./cmd/mailctl

## test: install the Debian test peers if missing, go vet, go test -race
test:
	scripts/test

vet:
	go vet ./...

## fmt: gofmt the Go sources and mailctl fmt the example configurations
fmt:
	gofmt -l -w .
	go run ./cmd/mailctl fmt -recursive examples

## lab-validate: check the local lab's configuration
lab-validate: build
	./mailctl -chdir examples/local validate

clean:
	rm -f mailctl
