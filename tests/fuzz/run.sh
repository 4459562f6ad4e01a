#!/usr/bin/env bash
# make fuzz: builds every libFuzzer target of tests/fuzz once, runs each
# for FUZZ_SECONDS (FUZZ_JOBS targets at a time), then prints per target
# the executions, executions per second and coverage (libFuzzer's final
# `cov:` and `ft:`) and fails if any target crashed.
#
# Each target's corpus grows in target/fuzz/corpus/<target> (the
# committed seeds in tests/fuzz/seeds/<target> are read, never written);
# a crashing input lands in target/fuzz/artifacts/<target>/ and its log in
# target/fuzz/logs/<target>.log.
set -euo pipefail

seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-2}
sanitizer=${FUZZ_SANITIZER:-address}
root=$(cd "$(dirname "$0")/../.." && pwd)
fuzz_dir=$root/tests/fuzz
out=$root/target/fuzz
cargo_fuzz=$root/target/cargo-fuzz/bin/cargo-fuzz
cd "$root"

build() {
	# Stable rustc takes cargo-fuzz's -Z flags with RUSTC_BOOTSTRAP; its
	# rust-std ships the ASan runtime. No -Zbuild-std (rust-src is not
	# installed): the standard library itself is not instrumented.
	RUSTC_BOOTSTRAP=1 nice -n 10 "$cargo_fuzz" build --fuzz-dir "$fuzz_dir" \
		--target-dir "$out" --sanitizer "$sanitizer"
}

# One target: runs the built binary on its corpus; the log's last lines
# hold the figures.
run_one() {
	local t=$1
	mkdir -p "$out/corpus/$t" "$out/artifacts/$t" "$out/logs"
	if nice -n 10 "$out/x86_64-unknown-linux-gnu/release/$t" \
		-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$out/artifacts/$t/" \
		"$out/corpus/$t" "$fuzz_dir/seeds/$t" >"$out/logs/$t.log" 2>&1; then
		echo ok >"$out/logs/$t.status"
	else
		echo "crashed (exit $?)" >"$out/logs/$t.status"
	fi
}

# "executions exec/s cov ft" of a finished run's log.
figures() {
	local log=$1
	local execs rate cov ft
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
	cov=$(grep -o ' cov: [0-9]*' "$log" | tail -n1 | tr -dc 0-9)
	ft=$(grep -o ' ft: [0-9]*' "$log" | tail -n1 | tr -dc 0-9)
	echo "${execs:-?} ${rate:-?} ${cov:-?} ${ft:-?}"
}

main() {
	local start=$SECONDS
	build
	local built=$((SECONDS - start))
	mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' "$fuzz_dir/Cargo.toml" | grep -v '^skytime-fuzz$')
	rm -f "$out"/logs/*.status
	export -f run_one
	export seconds out fuzz_dir
	printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
	local failed=0
	printf '\n%-16s %12s %9s %7s %7s  %s\n' target executions exec/s cov ft result
	for t in "${targets[@]}"; do
		local status
		status=$(cat "$out/logs/$t.status" 2>/dev/null || echo "not run")
		# shellcheck disable=SC2046
		printf '%-16s %12s %9s %7s %7s  %s\n' "$t" $(figures "$out/logs/$t.log") "$status"
		if [ "$status" != ok ]; then
			failed=1
			echo "  log: $out/logs/$t.log; input: $(ls "$out/artifacts/$t/" 2>/dev/null | head -n1)"
		fi
	done
	echo "fuzz: ${#targets[@]} targets, ${seconds} s each, $jobs at a time, sanitizer $sanitizer;" \
		"build ${built} s, all $((SECONDS - start)) s"
	return "$failed"
}

main
