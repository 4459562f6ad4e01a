# skytime: the two commands a new machine needs are `make demo` and
# `make test`; each installs what it needs (idempotently) first.

CARGO ?= cargo
DEMO_PACKAGES := chrony dbus openssl curl
TEST_PACKAGES := chrony ntpsec-ntpdig iproute2 util-linux procps dbus systemd libglib2.0-bin passwd device-tree-compiler cpp qemu-system-x86 busybox xz-utils gcc-12 make binutils libelf1 openssl curl prometheus python3-prometheus-client chromium mmdebstrap squashfs-tools gcc libc6-dev
BENCH_PACKAGES := valgrind
# The other NTS implementations the tests and the benchmark run: ntpd-rs
# 1.9.0 (built from crates.io, a few minutes once) and Debian 13's chrony
# 4.6.1 (AES-128-GCM-SIV and record 1024), unpacked beside the host's.
NTPD_RS := target/ntpd-rs/bin/ntp-daemon
TRIXIE_CHRONY := target/trixie-chrony/bin/chronyd
# cargo-fuzz from crates.io; it runs on the stable toolchain with
# RUSTC_BOOTSTRAP (README: Fuzzing).
CARGO_FUZZ := target/cargo-fuzz/bin/cargo-fuzz
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 2
# make soak: how long skytimed runs with faults (README: Soak).
SOAK_SECONDS ?= 600
IMAGE_PACKAGES := mmdebstrap erofs-utils squashfs-tools genimage u-boot-tools mtools dosfstools e2fsprogs kmod qemu-user-static qemu-system-arm u-boot-qemu ipxe-qemu gcc-aarch64-linux-gnu libc6-dev-arm64-cross libubootenv-tool arch-test

.PHONY: demo test demo-deps test-deps lint bench sim image image-deps image-test image-boot image-beside-soak bundle fuzz asan soak help

help:
	@echo "make demo   run skytimed on localhost (NTP 127.0.0.1:11123, gateway https://127.0.0.1:18443), Ctrl-C stops it"
	@echo "make test   run every test (formatting, lints, unit and system tests, the image in QEMU)"
	@echo "make bench  throughput, CPU, instructions and memory of skytimed against chronyd and ntpd-rs"
	@echo "make sim    clock-discipline simulator scenarios (target/sim/report.json)"
	@echo "make image  the Raspberry Pi SD-card image: target/image/skytime-rpi4.img (image/README.md)"
	@echo "make bundle the signed update bundle of that build: target/image/skytime-rpi4-VERSION.raucb (ota/README.md)"
	@echo "make image-test  boot it in QEMU (NTS, A/B, clock steering) and check a rebuild is bit-identical"
	@echo "make fuzz   every libFuzzer target for FUZZ_SECONDS (60) each, FUZZ_JOBS (2) at a time"
	@echo "make asan   the unit tests of skytimed's unsafe modules under AddressSanitizer"
	@echo "make soak   skytimed for SOAK_SECONDS (600) with GPS faults, clients and D-Bus writes; fails on growth, panics, false sync claims"

demo-deps:
	@tests/scripts/install-deps.sh $(DEMO_PACKAGES)

test-deps:
	@tests/scripts/install-deps.sh $(TEST_PACKAGES)
	@grep -qs '+deb13-arm64 ' target/overlays/base/SOURCE || overlays/fetch-base-dtb.sh
	@test -x $(NTPD_RS) || $(CARGO) install ntpd --version 1.9.0 --locked --root target/ntpd-rs
	@test -x $(TRIXIE_CHRONY) || tests/scripts/trixie-tools.sh target/trixie-chrony chrony chronyd
	@test -x $(CARGO_FUZZ) || $(CARGO) install cargo-fuzz --version 0.13.2 --locked --root target/cargo-fuzz

sim:
	$(CARGO) run --release --locked -p skytime-sim

image-deps: test-deps
	@tests/scripts/install-deps.sh $(IMAGE_PACKAGES)
	@rustup target list --installed | grep -q aarch64-unknown-linux-musl || rustup target add aarch64-unknown-linux-musl

image: image-deps
	image/build.sh

# The signed RAUC bundle (verity) of the last `make image` (its erofs root,
# slot boot files and hook), signed for the keyring that image trusts;
# RAUC 1.13 from Debian 13 (target/trixie-tools) makes it and checks it.
bundle:
	@tests/scripts/install-deps.sh squashfs-tools openssl
	tests/scripts/trixie-tools.sh target/trixie-tools
	image/bundle.sh

# QEMU boots of the image: the Pi 4 boot chain on QEMU 10's raspi4b (Debian
# 13's QEMU, unpacked under target/trixie-tools beside the host's), the
# Pi's U-Boot and boot script on raspi3b; on virt: NTS, A/B slots, first
# boot, management over D-Bus, clock steering from a simulated USB GPS;
# then a second build that must give the same bytes.
image-test: image
	$(MAKE) image-boot

# The QEMU tests of image-test on the image already built.
image-boot:
	tests/scripts/trixie-tools.sh target/trixie-tools
	$(CARGO) build --locked -p skytime-gpssim -p skytimectl
	$(CARGO) test --locked -p skytime-tests --features image --test uboot_env --test image_rpi4 --test image_root --test image_uboot_rpi --test image_qemu --test image_network --test image_update --test image_clock --test image_reproducible

demo: demo-deps
	$(CARGO) build --release --locked -p skytimed -p skytimectl -p skytime-gpssim -p skytime-mgmtd
	@daemon/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

# Every test: lints, the workspace's unit and system tests, fuzzing, the
# soak while the image builds, then the image booted in QEMU (about 74
# minutes from a fresh clone on 2 cores).
test: test-deps lint
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked --workspace
	$(MAKE) fuzz FUZZ_SECONDS=60
	$(MAKE) image-beside-soak
	$(MAKE) image-boot

# The soak (built by `make test` above) in the background while the image
# builds, so that its ten minutes add nothing; both must pass before the
# QEMU tests, which never run beside it. Its report: target/soak.log.
image-beside-soak:
	@target/debug/skytime-soak --seconds $(SOAK_SECONDS) > target/soak.log 2>&1 & soak=$$!; \
	$(MAKE) image; image=$$?; \
	if [ $$image -ne 0 ]; then kill -TERM $$soak; fi; \
	wait $$soak; soaked=$$?; cat target/soak.log; \
	[ $$image -eq 0 ] && [ $$soaked -eq 0 ]

# skytimed for SOAK_SECONDS with every GPS fault, steady NTP and NTS
# clients, key rotations, configuration applies, certificate installs and
# reloads over a private D-Bus (README: Soak).
soak: test-deps
	$(CARGO) build --locked --workspace --bins
	target/debug/skytime-soak --seconds $(SOAK_SECONDS)

# libFuzzer on every parser of outside input (tests/fuzz, README: Fuzzing):
# a table of executions and coverage per target; fails on any crash.
fuzz:
	@test -x $(CARGO_FUZZ) || $(CARGO) install cargo-fuzz --version 0.13.2 --locked --root target/cargo-fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) tests/fuzz/run.sh

# The unit tests of skytimed's unsafe modules (recvmmsg and its control
# messages in ntp/io, the PPS and GPIO ioctls in refclock/*_uapi.rs) under
# AddressSanitizer: stable rustc with RUSTC_BOOTSTRAP, its own target dir
# (about 11 minutes to build on 2 cores). Miri needs nightly (README: Fuzzing).
asan:
	RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR=target/asan \
		$(CARGO) test --locked --target x86_64-unknown-linux-gnu -p skytimed --lib -- ntp::io refclock::

# skytimed against chronyd 4.3 and ntpd-rs 1.9.0 (README: Benchmark).
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--rounds 5 --sections pinned".
bench: test-deps
	@tests/scripts/install-deps.sh $(BENCH_PACKAGES)
	$(CARGO) build --release --locked -p skytimed -p skytime-tests --bins
	target/release/skytime-bench $(BENCH_ARGS)
