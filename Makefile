# skytime: the two commands a new machine needs are `make demo` and
# `make test`; each installs what it needs (idempotently) first.

CARGO ?= cargo
DEMO_PACKAGES := chrony
TEST_PACKAGES := chrony ntpsec-ntpdig iproute2 util-linux procps

.PHONY: demo test demo-deps test-deps build lint bench help

help:
	@echo "make demo   run skytimed on localhost (NTP 127.0.0.1:11123), Ctrl-C stops it"
	@echo "make test   run every test (formatting, lints, unit, system tests with chrony)"
	@echo "make bench  throughput and memory of skytimed against chronyd"

demo-deps:
	@tests/scripts/install-deps.sh $(DEMO_PACKAGES)

test-deps:
	@tests/scripts/install-deps.sh $(TEST_PACKAGES)

demo: demo-deps
	$(CARGO) build --release --locked -p skytimed
	@daemon/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

test: test-deps lint
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked --workspace

bench: test-deps
	$(CARGO) build --release --locked -p skytimed -p skytime-tests --bins
	target/release/skytime-bench
