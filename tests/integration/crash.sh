#!/bin/bash
# SPDX-License-Identifier: MIT
# Durability: sendmail killed with SIGKILL at random points while it reads a
# large message from a slow pipe leaves either no message or a whole one,
# every run that exited 0 has its message, and mailq never lists what a
# killed run left in tmp/; 50 concurrent runs make 50 intact messages with
# distinct IDs. (A full disk is tested in full-disk.sh.)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99

# --- kill -9 at random points -------------------------------------------------
check "kill -9 while reading a large message from a slow pipe (30 runs)"
mkdir -p "$T/chunks"
{ for i in $(seq 1 16000); do printf 'line %06d of the message body, to make it long enough to take a while\n' "$i"; done; } >"$T/base"
split -b 65536 "$T/base" "$T/chunks/c"
runs=30
killed=0 completed=0 killed_after_commit=0
declare -A rc_of
for n in $(seq 1 $runs); do
	printf 'To: bob@example.org\nSubject: run %d\n\n' "$n" >"$T/hdr.$n"
	rm -f "$T/fifo"
	mkfifo "$T/fifo"
	( cat "$T/hdr.$n"; for c in "$T"/chunks/c*; do cat "$c"; sleep 0.01; done ) >"$T/fifo" 2>/dev/null &
	writer=$!
	"$SM" -oi bob@example.org <"$T/fifo" 2>"$T/err.$n" &
	pid=$!
	# The writer takes about 0.25 s; kill anywhere in it, or a little after.
	sleep "0.$(printf %03d $((RANDOM % 350)))"
	kill -9 "$pid" 2>/dev/null
	r=0
	{ wait "$pid"; } 2>/dev/null || r=$?
	kill "$writer" 2>/dev/null
	wait "$writer" 2>/dev/null
	rc_of[$n]=$r
	case $r in
	0) completed=$((completed + 1)) ;;
	137) killed=$((killed + 1)) ;;
	*) fail "run $n: exit status $r: $(cat "$T/err.$n")" ;;
	esac
done
echo "$completed runs exited 0, $killed were killed"
declare -A seen
for id in $(msg_ids); do
	f=$Q/msg/$id
	n=$(body "$f" | head -c 200 | sed -n 's/^Subject: run \([0-9]*\)$/\1/p')
	if [ -z "$n" ] || [ -n "${seen[$n]:-}" ]; then
		fail "message $id: no run number or a second message for run [$n]"
		continue
	fi
	seen[$n]=$id
	cmp -s <(body "$f") <(cat "$T/hdr.$n" "$T/base") ||
		fail "message $id (run $n, exit ${rc_of[$n]}) is not whole: $(body "$f" | wc -c) bytes"
	[ "${rc_of[$n]}" -eq 137 ] && killed_after_commit=$((killed_after_commit + 1))
done
for n in $(seq 1 $runs); do
	[ "${rc_of[$n]}" -eq 0 ] && [ -z "${seen[$n]:-}" ] && fail "run $n exited 0 but its message is lost"
done
# A run killed between the rename and its exit has a whole message: that is allowed.
echo "$killed_after_commit killed run(s) had already committed their message"
[ $((killed - killed_after_commit)) -ge 5 ] ||
	fail "too few runs were killed while reading ($killed killed): the test did not test"
echo "tmp/ holds $(ls -A "$Q/tmp" | wc -l) leftover(s)"
rc=0
"$SM" -bp >"$T/mailq" 2>"$T/err" || rc=$?
expect_ok
listed=$(grep -Eo '^[0-9A-Z]{16}' "$T/mailq" | LC_ALL=C sort)
[ "$listed" = "$(msg_ids)" ] || fail "mailq lists [$(printf "%s" "$listed" | tr "\n" " ")], msg/ holds [$(msg_ids | tr '\n' ' ')]"
for t in $(ls -A "$Q/tmp"); do
	grep -q "$t" "$T/mailq" && fail "mailq lists $t, a leftover in tmp/"
done
check_count=$(msg_count)
printf 'Subject: after the crashes\n\nok\n' >"$T/after"
run -oi bob@example.org <"$T/after"
expect_ok
[ "$(msg_count)" -eq $((check_count + 1)) ] || fail "a run after the crashes did not queue"

# --- concurrency ------------------------------------------------------------
check "50 concurrent sendmail runs"
pids=()
for n in $(seq 1 50); do
	{ printf 'To: bob@example.org\nSubject: concurrent %d\n\n' "$n"; head -c $((20000 + n * 997)) "$T/base"; } >"$T/c.$n"
done
for n in $(seq 1 50); do
	"$SM" -oi "rcpt$n@example.org" <"$T/c.$n" 2>"$T/cerr.$n" &
	pids[$n]=$!
done
for n in $(seq 1 50); do
	r=0
	wait "${pids[$n]}" || r=$?
	[ "$r" -eq 0 ] || fail "run $n exited $r: $(cat "$T/cerr.$n")"
done
expect_count 50
unset seen
declare -A seen
for id in $(msg_ids); do
	f=$Q/msg/$id
	n=$(env_values "$f" rcpt | sed -n 's/^rcpt\([0-9]*\)@example.org$/\1/p')
	if [ -z "$n" ] || [ -n "${seen[$n]:-}" ]; then
		fail "message $id: recipient run [$n] missing or seen twice"
		continue
	fi
	seen[$n]=$id
	cmp -s <(body "$f") "$T/c.$n" || fail "message $id (run $n) differs from its input"
done
[ "${#seen[@]}" -eq 50 ] || fail "${#seen[@]} distinct runs in the queue, expected 50"
[ "$(msg_ids | sort -u | wc -l)" -eq 50 ] || fail "queue IDs are not distinct"
expect_no_tmp

finish
