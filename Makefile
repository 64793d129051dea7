# seb: `make run` to see it work, `make test` to prove it.

GO        ?= go
BIN       := bin/seb
# The Terraform binary for tests: SEB_TERRAFORM, else terraform on PATH, else
# Terraform 1.5.7 built from the Go module proxy (see scripts/terraform.sh).
TERRAFORM  = $(shell ./scripts/terraform.sh)
BENCHTIME ?= 5x

# The sandbox provider, in a filesystem mirror, and a Terraform CLI
# configuration that installs providers from that mirror only.
MIRROR    := $(CURDIR)/bin/mirror
TFRC      := $(CURDIR)/bin/terraform.rc
PROVIDER  := seb.invalid/seb/sandbox
PROVIDER_VERSION := 0.1.0
GOOSARCH  := $(shell $(GO) env GOOS)_$(shell $(GO) env GOARCH)

.PHONY: all build provider test bench lint fmt terraform bubblewrap run demo fuzz clean

all: build provider

build:
	$(GO) build -o $(BIN) ./cmd/seb
	$(GO) build -o bin/seb-sandbox ./cmd/seb-sandbox
	$(GO) build -o bin/sandboxcloud ./fixtures/sandboxcloud/cmd/sandboxcloud

provider:
	$(GO) build -ldflags "-X main.version=$(PROVIDER_VERSION)" \
	  -o $(MIRROR)/$(PROVIDER)/$(PROVIDER_VERSION)/$(GOOSARCH)/terraform-provider-sandbox_v$(PROVIDER_VERSION) \
	  ./fixtures/provider
	@printf 'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' "$(MIRROR)" > $(TFRC)
	@echo "provider mirror: $(MIRROR); use it with TF_CLI_CONFIG_FILE=$(TFRC)"

terraform:
	@./scripts/terraform.sh

# seb runs Terraform only in a bubblewrap sandbox; installed when missing.
bubblewrap:
	@./scripts/bubblewrap.sh

# The packages with concurrency (the broker and its store, the server, the
# runner, Terraform's workdirs and sandbox) run under the race detector,
# which needs cgo and a C compiler; SEB_REQUIRE_RACE=1 (CI) fails without.
RACE_PKGS := ./broker/... ./web/... ./runner/... ./drift/... ./sandbox/...
RACE      := $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v "$$($(GO) env CC)" >/dev/null 2>&1 && echo -race)

# The PostgreSQL tests use the server scripts/postgres.sh finds or starts.
test: build provider
	@if [ -z "$(RACE)" ]; then \
	  if [ -n "$$SEB_REQUIRE_RACE" ]; then echo "test: the race detector needs cgo and a C compiler" >&2; exit 1; fi; \
	  echo "test: no C compiler: running without the race detector" >&2; \
	fi
	@tf=$$(./scripts/terraform.sh) && echo "terraform: $$tf" && \
	export SEB_TERRAFORM="$$tf" SEB_PROVIDER_MIRROR="$(MIRROR)" SEB_SANDBOX_SHIM="$(CURDIR)/bin/seb-sandbox" && \
	./scripts/postgres.sh sh -c '$(GO) test -count=1 $(RACE) $(RACE_PKGS) && \
	  $(GO) test -count=1 $$($(GO) list ./... | grep -v -e /broker -e /web -e /runner -e /drift -e "/sandbox$$")'

bench: build provider
	@tf=$$(./scripts/terraform.sh) && \
	SEB_TERRAFORM="$$tf" SEB_PROVIDER_MIRROR="$(MIRROR)" SEB_SANDBOX_SHIM="$(CURDIR)/bin/seb-sandbox" \
	./scripts/postgres.sh $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# Each fuzz target for a short while; FUZZTIME=10m for a long run.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./planparse -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./planparse -run '^$$' -fuzz '^FuzzCanonicalNumber$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./planparse -run '^$$' -fuzz '^FuzzSummaryJSON$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./drift -run '^$$' -fuzz '^FuzzExtractBundle$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./drift -run '^$$' -fuzz '^FuzzBundleTar$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./drift -run '^$$' -fuzz '^FuzzCheckConfig$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./web -run '^$$' -fuzz '^FuzzUnknownMember$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# The sandbox cloud and seb serve with the demo workspace; prints the URLs
# and fresh tokens.
run: build provider bubblewrap
	@./scripts/run.sh

# The seed scenario end to end over HTTP, narrated.
demo: build provider bubblewrap
	@TF_CLI_CONFIG_FILE=$(TFRC) $(BIN) demo

clean:
	rm -rf bin
