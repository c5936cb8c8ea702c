#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each, one after the other, on a
# copy of its checked-in corpus in a temporary directory: the corpus in the
# tree never grows. Fails when a target crashes, leaks, hangs or runs out of
# memory, naming the target and the reproducer, which is kept.
#
#   tests/fuzz/run-all.sh BUILD_DIR SECONDS [TARGET...]
#
# BUILD_DIR is configured with -Dfuzz=true (see README.md). Without TARGETs,
# all of them run.
set -uo pipefail

if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt 1 ]; then
	echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
	exit 64
fi
build=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: $1: no such directory" >&2; exit 66; }
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for src in "$here"/fuzz-*.c; do
		src=${src##*/fuzz-}
		targets+=("${src%.c}")
	done
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/outbox-fuzz.XXXXXX") || exit 71
keep=false
cleanup() { $keep || rm -rf "$work"; }
trap cleanup EXIT

# A UBSan report is a crash (the targets are built so, this holds for the rest).
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

failed=()
for t in "${targets[@]}"; do
	exe=$build/tests/fuzz/fuzz-$t
	if [ ! -x "$exe" ]; then
		echo "$t: $exe missing: configure $build with -Dfuzz=true (tests/fuzz/README.md)" >&2
		failed+=("$t")
		continue
	fi
	mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
	cp -R "$here/corpus/$t/." "$work/$t/corpus/"
	# FUZZ_SEED fixes libFuzzer's random choices: a run then repeats a prefix of
	# the same input sequence whatever the machine's speed (CI sets it).
	"$exe" -max_total_time="$seconds" ${FUZZ_SEED:+-seed="$FUZZ_SEED"} -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 \
		-artifact_prefix="$work/$t/artifacts/" "$work/$t/corpus" >"$work/$t/log" 2>&1
	status=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t/log")
	found=$(find "$work/$t/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' \
		-o -name 'timeout-*' -o -name 'oom-*' \) | head -n 1)
	if [ $status -ne 0 ] || [ -n "$found" ]; then
		keep=true
		failed+=("$t")
		echo "FAIL fuzz-$t (exit $status)"
		grep -m 3 -E 'ERROR:|runtime error:|Assertion|SUMMARY' "$work/$t/log" | sed 's/^/    /'
		echo "    reproducer: ${found:-none written}"
		echo "    log: $work/$t/log"
		echo "    rerun: $exe ${found:-<input>}"
	else
		echo "ok   fuzz-$t: ${seconds}s, ${runs:-?} runs, ${rate:-?} exec/s"
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzzing failed: ${failed[*]}"
	exit 1
fi
echo "fuzzing: ${#targets[@]} targets, no crash"
