#!/bin/bash
# SPDX-License-Identifier: MIT
# sendmail killed with SIGKILL at every stage of writing a message, many
# times: while it reads a slow pipe (random moments), and right around the
# commit (an LD_PRELOAD shim built here sleeps before and after each step:
# creating the file, each write, fsync, the rename, the directory fsyncs, the
# doorbell; the kill lands inside those sleeps, at a chosen step or at a
# random moment). Afterwards every file in msg/ parses and holds exactly the
# bytes one run gave, no run has two, a run killed before the rename has
# none, a run killed after it has its whole message, and every run that
# exited 0 has its message.
#
# FAULT_KILL_RUNS (default 200) sets the number of runs.
. "${BASH_SOURCE%/*}/lib-fault.sh" || exit 99

RUNS=${FAULT_KILL_RUNS:-200}
LANES=4				# runs going on at once (they share the queue)
SLOW_RUNS=$((RUNS / 2))		# random kills while reading a slow pipe
STEP_REPS=2			# per step and message size, kills at a chosen step
mkdir -p "$T/in" "$T/res" "$T/chunks" "$T/trace"

cat >"$T/steps.c" <<'C'
/* Sleeps SHIM_SLEEP_US before and after each step of writing a message and
 * notes the step in SHIM_TRACE ("N call pre|post"), so that a SIGKILL lands
 * inside the sleep, on one side of the step or the other. SHIM_JITTER=1
 * makes each sleep a random part of SHIM_SLEEP_US. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int trace_fd = -2, jitter;
static long sleep_us;
static unsigned seq;

static void note(const char *call, const char *when)
{
	char line[80];
	int e = errno, n;
	long us;

	if (trace_fd == -2) {
		const char *p = getenv("SHIM_TRACE"), *s = getenv("SHIM_SLEEP_US");

		trace_fd = p ? (int)syscall(SYS_openat, AT_FDCWD, p, O_WRONLY | O_APPEND | O_CLOEXEC) : -1;
		sleep_us = s ? atol(s) : 0;
		jitter = getenv("SHIM_JITTER") != NULL;
		srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	}
	if (trace_fd >= 0) {
		n = snprintf(line, sizeof line, "%u %s %s\n", ++seq, call, when);
		syscall(SYS_write, trace_fd, line, (size_t)n);
	}
	us = jitter && sleep_us > 0 ? random() % (sleep_us + 1) : sleep_us;
	if (us > 0) {
		struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

		nanosleep(&ts, NULL);
	}
	errno = e;
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = dlsym(RTLD_NEXT, #name)
#define AROUND(label, call) do { note(label, "pre"); r = call; note(label, "post"); } while (0)

static int is_file(int fd)
{
	struct stat st;

	return syscall(SYS_fstat, fd, &st) == 0 && S_ISREG(st.st_mode);
}

ssize_t write(int fd, const void *buf, size_t len)
{
	ssize_t r;
	REAL(write);
	if (!is_file(fd) || fd == 2)
		return real(fd, buf, len);
	AROUND("write", real(fd, buf, len));
	return r;
}

int fsync(int fd)
{
	int r;
	REAL(fsync);
	AROUND("fsync", real(fd));
	return r;
}

int renameat2(int a, const char *b, int c, const char *d, unsigned flags)
{
	int r;
	REAL(renameat2);
	AROUND("renameat2", real(a, b, c, d, flags));
	return r;
}

int renameat(int a, const char *b, int c, const char *d)
{
	int r;
	REAL(renameat);
	AROUND("renameat", real(a, b, c, d));
	return r;
}

int linkat(int a, const char *b, int c, const char *d, int flags)
{
	int r;
	REAL(linkat);
	AROUND("linkat", real(a, b, c, d, flags));
	return r;
}

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	int r;
	REAL(connect);
	AROUND("connect", real(fd, sa, len));
	return r;
}

int openat64(int dir, const char *path, int flags, ...)
{
	mode_t mode = 0;
	int r;
	REAL(openat64);
	if (flags & O_CREAT) {
		va_list ap;

		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
		AROUND("create", real(dir, path, flags, mode));
		return r;
	}
	return real(dir, path, flags);
}
C
build_shim steps

# The message bodies: prefixes of one long text, cut in 16 KiB pieces for the slow writer.
"$PY" - "$T/base" <<'PY'
import random, sys
rnd = random.Random(7)
with open(sys.argv[1], "w") as f:
    for i in range(12000):
        f.write("line %06d %s\n" % (i, "".join(rnd.choice("abcdefghij .,") for _ in range(rnd.randint(0, 70)))))
PY
split -b 16384 -d -a 4 "$T/base" "$T/chunks/"
base_size=$(wc -c <"$T/base")

# input N SIZE: the header of run N; the run's message is it plus SIZE bytes of base.
input() {
	printf 'To: bob@example.org\nSubject: run %d\n\n' "$1" >"$T/in/$1.hdr"
	echo "$2" >"$T/in/$1.size"
}

# slow_writer N: run N's message, in 16 KiB pieces 10 ms apart.
slow_writer() {
	local left i=0 n
	cat "$T/in/$1.hdr"
	left=$(cat "$T/in/$1.size")
	while [ "$left" -gt 0 ]; do
		n=$((left < 16384 ? left : 16384))
		head -c "$n" "$T/chunks/$(printf %04d $i)"
		left=$((left - n))
		i=$((i + 1))
		sleep 0.01
	done
}

# result N RC [PUBLISHED [LAST-STEP]]: what a run did, for the checks at the
# end. PUBLISHED: y when the shim saw the rename done, n when it saw the kill
# land before the rename began, ? when it landed at the rename, - unknown.
result() {
	printf '%s %s %s\n' "$2" "${3:--}" "${4:--}" >"$T/res/$1"
}

# published TRACE: y, n or ? from the steps a trace holds.
published() {
	if grep -q ' renameat2 post$' "$1"; then
		echo y
	elif [ "$(tail -n 1 "$1" | cut -d' ' -f2-)" = "renameat2 pre" ]; then
		echo '?'
	else
		echo n
	fi
}

# --- random kills while sendmail reads a slow pipe --------------------------
slow_lane() {
	local lane=$1 n pid w rc size delay
	for ((n = lane; n <= SLOW_RUNS; n += LANES)); do
		size=$(( (RANDOM * 32768 + RANDOM) % (base_size < 400000 ? base_size : 400000) ))
		input "$n" "$size"
		rm -f "$T/fifo.$lane"
		mkfifo "$T/fifo.$lane"
		slow_writer "$n" >"$T/fifo.$lane" 2>/dev/null &
		w=$!
		"$SM" -oi bob@example.org <"$T/fifo.$lane" 2>"$T/res/$n.err" &
		pid=$!
		# The writer takes about 12 ms per 16 KiB: kill anywhere in it, or after it.
		delay=$(( RANDOM % (size / 16384 * 26 + 90) ))
		sleep "$(printf '0.%03d' "$delay")"
		kill -9 "$pid" 2>/dev/null
		rc=0
		wait "$pid" 2>/dev/null || rc=$?
		kill "$w" 2>/dev/null
		wait "$w" 2>/dev/null
		result "$n" "$rc"
	done
}

# --- kills at a chosen step around the commit --------------------------------
# step_run N SIZE K: kills run N when the shim notes its K-th step (0: never).
step_run() {
	local n=$1 k=$3 lane=$4 fd pid rc line i
	input "$n" "$2"
	: >"$T/trace/$lane.log"
	rm -f "$T/trace/$lane"
	mkfifo "$T/trace/$lane"
	exec {fd}<>"$T/trace/$lane"
	cat "$T/in/$n.hdr" >"$T/in/cur.$lane"
	head -c "$2" "$T/base" >>"$T/in/cur.$lane"
	SHIM_TRACE=$T/trace/$lane SHIM_SLEEP_US=20000 LD_PRELOAD=$T/steps.so \
		"$SM" -oi bob@example.org <"$T/in/cur.$lane" 2>"$T/res/$n.err" &
	pid=$!
	for ((i = 1; i <= k; i++)); do
		read -r -t 5 -u "$fd" line || break
		echo "$line" >>"$T/trace/$lane.log"
	done
	[ "$k" -gt 0 ] && kill -9 "$pid" 2>/dev/null
	rc=0
	wait "$pid" 2>/dev/null || rc=$?
	while read -r -t 0.05 -u "$fd" line; do
		echo "$line" >>"$T/trace/$lane.log"
	done
	exec {fd}<&-
	result "$n" "$rc" "$(published "$T/trace/$lane.log")" "$(tail -n 1 "$T/trace/$lane.log" | cut -d' ' -f2-)"
}

# The steps of one run, from a run that is not killed.
steps_of() {
	local size=$1 n=$2 lane=$3
	: >"$T/trace/cal"
	input "$n" "$size"
	{ cat "$T/in/$n.hdr"; head -c "$size" "$T/base"; } |
		SHIM_TRACE=$T/trace/cal LD_PRELOAD=$T/steps.so "$SM" -oi bob@example.org 2>"$T/res/$n.err"
	result "$n" "$?" y
	wc -l <"$T/trace/cal"
}

# --- random kills around the commit --------------------------------------
# Each step sleeps a random part of 4 ms; the kill comes at a random moment
# of the whole run; the trace file tells the last step reached.
random_run() {
	local n=$1 size=$2 pid rc delay
	input "$n" "$size"
	: >"$T/trace/r.$n"
	{ cat "$T/in/$n.hdr"; head -c "$size" "$T/base"; } >"$T/in/cur.r$n"
	SHIM_TRACE=$T/trace/r.$n SHIM_SLEEP_US=4000 SHIM_JITTER=1 LD_PRELOAD=$T/steps.so \
		"$SM" -oi bob@example.org <"$T/in/cur.r$n" 2>"$T/res/$n.err" &
	pid=$!
	delay=$((RANDOM % 60))
	sleep "$(printf '0.%03d' "$delay")"
	kill -9 "$pid" 2>/dev/null
	rc=0
	wait "$pid" 2>/dev/null || rc=$?
	result "$n" "$rc" "$(published "$T/trace/r.$n")" "$(tail -n 1 "$T/trace/r.$n" | cut -d' ' -f2-)"
	rm -f "$T/in/cur.r$n"
}

check "kill -9 while sendmail reads a slow pipe ($SLOW_RUNS runs, $LANES at a time)"
started=$SECONDS
pids=()
for ((l = 1; l <= LANES; l++)); do
	slow_lane "$l" &
	pids+=("$!")
done
wait "${pids[@]}"
echo "    $((SECONDS - started)) s"

section "kill -9 at each step of the commit, small and large messages"
steps_small=$(steps_of 2000 $((SLOW_RUNS + 1)) 1)
steps_large=$(steps_of 300000 $((SLOW_RUNS + 2)) 1)
n=$((SLOW_RUNS + 2))
echo "    the commit of a small message takes $steps_small steps, of a large one $steps_large"
sed 's/^/    | /' "$T/trace/cal"
[ "$steps_small" -ge 10 ] || fail "the shim saw only $steps_small steps: it does not work"
jobs_list=()
for ((r = 1; r <= STEP_REPS; r++)); do
	for ((k = 1; k <= steps_small; k++)); do jobs_list+=("2000 $k"); done
	for ((k = 1; k <= steps_large; k++)); do jobs_list+=("300000 $k"); done
done
step_runs=${#jobs_list[@]}
random_runs=$((RUNS - SLOW_RUNS - 2 - step_runs))
[ "$random_runs" -ge 0 ] || random_runs=0
first_step=$((n + 1))
started=$SECONDS
pids=()
for ((l = 1; l <= LANES; l++)); do
	(
		for ((j = l - 1; j < step_runs; j += LANES)); do
			# shellcheck disable=SC2086
			step_run $((first_step + j)) ${jobs_list[$j]} "$l"
		done
	) &
	pids+=("$!")
done
wait "${pids[@]}"
n=$((first_step + step_runs - 1))
echo "    $step_runs runs, $((SECONDS - started)) s"

section "kill -9 at random moments around the commit ($random_runs runs)"
first_random=$((n + 1))
started=$SECONDS
pids=()
for ((l = 1; l <= LANES; l++)); do
	(
		for ((j = l - 1; j < random_runs; j += LANES)); do
			random_run $((first_random + j)) $(( (RANDOM * 7) % 200000 + 1 ))
		done
	) &
	pids+=("$!")
done
wait "${pids[@]}"
n=$((first_random + random_runs - 1))
echo "    $((SECONDS - started)) s"

# --- what the queue holds ----------------------------------------------------
section "every message whole, none partial, none lost, none twice"
total=$n
declare -A found
partial=0 phantom=0 twice=0
for id in $(msg_ids); do
	f=$Q/msg/$id
	if ! expect_envelope_sane "$f" 2>/dev/null; then
		partial=$((partial + 1))
		continue
	fi
	[ "$(env_values "$f" rcpt)" = bob@example.org ] || { fail "$id: envelope recipients $(env_values "$f" rcpt)"; partial=$((partial + 1)); }
	r=$(body "$f" | head -c 200 | sed -n 's/^Subject: run \([0-9]*\)$/\1/p')
	if [ -z "$r" ] || [ ! -f "$T/in/$r.hdr" ]; then
		fail "$id: a message no run wrote"
		phantom=$((phantom + 1))
		continue
	fi
	if [ -n "${found[$r]:-}" ]; then
		fail "run $r has two messages: ${found[$r]} and $id"
		twice=$((twice + 1))
		continue
	fi
	found[$r]=$id
	cmp -s <(body "$f") <(cat "$T/in/$r.hdr"; head -c "$(cat "$T/in/$r.size")" "$T/base") || {
		fail "$id (run $r) is not the run's message: $(body "$f" | wc -c) bytes, expected $(( $(wc -c <"$T/in/$r.hdr") + $(cat "$T/in/$r.size") ))"
		partial=$((partial + 1))
	}
done
exit0=0 killed=0 committed_killed=0 lost=0 other=0
declare -A at_step
for ((r = 1; r <= total; r++)); do
	[ -f "$T/res/$r" ] || { fail "run $r left no result"; continue; }
	read -r rc pub last <"$T/res/$r"
	case $rc in
	0) exit0=$((exit0 + 1))
	   [ -n "${found[$r]:-}" ] || { fail "run $r exited 0 but its message is not in the queue"; lost=$((lost + 1)); } ;;
	137) killed=$((killed + 1))
	     [ -n "${found[$r]:-}" ] && committed_killed=$((committed_killed + 1)) ;;
	*) other=$((other + 1)); fail "run $r exited $rc: $(head -c 300 "$T/res/$r.err")" ;;
	esac
	# Where the shim saw the kill land: before the rename, nothing; after it, the whole message.
	if [ "$rc" = 137 ] && [ "$last" != - ]; then
		at_step["$last, published $pub"]=$(( ${at_step["$last, published $pub"]:-0} + 1 ))
		case $pub in
		n) [ -z "${found[$r]:-}" ] || fail "run $r was killed at \"$last\", before the rename, yet its message is in msg/" ;;
		y) [ -n "${found[$r]:-}" ] || { fail "run $r was killed at \"$last\", after the rename, and its message is not in msg/"; lost=$((lost + 1)); } ;;
		esac
	fi
done
echo "    kills by the step they landed after:"
for s in "${!at_step[@]}"; do
	printf '      %-16s %d\n' "$s" "${at_step[$s]}"
done | sort
# mailq reads every message too: it must list exactly what msg/ holds.
"$SM" -bp >"$T/mailq" 2>"$T/mailq.err" || fail "mailq failed: $(cat "$T/mailq.err")"
[ "$(grep -Eo '^[0-9A-Z]{16}' "$T/mailq" | sort)" = "$(msg_ids)" ] || fail "mailq does not list exactly the messages in msg/"
leftovers=$(ls -A "$Q/tmp" | wc -l)
messages=$(msg_count)
echo "    $total runs: $exit0 exited 0, $killed killed ($committed_killed of them after the rename), $leftovers file(s) left in tmp/"
figures "cases=$total" "messages=$messages" "exited0=$exit0" "killed=$killed" \
	"killed_after_commit=$committed_killed" "steps_hit=${#at_step[@]}" "lost=$lost" \
	"partial=$partial" "phantom=$phantom" "duplicates=$twice" -- "tmp leftovers $leftovers, never listed"
finish
