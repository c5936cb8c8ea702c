#!/bin/bash
# SPDX-License-Identifier: MIT
# A server that misbehaves, one way per case: no banner within the timeout,
# no reply to the end of data within it (BDAT and DATA), malformed replies
# (garbage, a multi-line reply whose code changes midway), huge multi-line
# replies (100000 lines), a TLS alert in the middle of the session, a
# certificate that is expired, for another name, self-signed or with a weak
# key, and a server that accepts AUTH and then answers 421 to every MAIL.
# Each time the message is deferred (not failed, not lost) on the backoff
# schedule, with at most a few connections in the run; then a well-behaved
# server gets it, exactly once unless its first copy fell into the
# duplicate window (stored by the faulty server, whose reply outboxd never
# took in). outboxd as a daemon against the 421 server for about 20 s shows
# the retry rate: the backoff is 5 minutes, so one attempt.
FAULT_DELIVERY=1
FAULT_NEED_STDERR_LOG=1
. "${BASH_SOURCE%/*}/lib-fault.sh" || exit 99

TIMEOUT=2			# [delivery] timeout for these cases
DAEMON_SECONDS=${FAULT_DAEMON_SECONDS:-20}

# The well-behaved server that takes every message in the end.
start_server
GOOD_PORT=$PORT GOOD_SDIR=$SDIR

cases=0 deferred=0 failed_n=0 lost=0 delivered=0 dups=0 window_dups=0 max_conns=0
# fault_case NAME SCRIPT-JSON [start_server options...]: one case.
fault_case() {
	local name=$1 script=$2 certs=$CERTS a prev= start log conns got_faulty got_good next now subj in_window
	shift 2
	check "$name"
	cases=$((cases + 1))
	for a; do [ "$prev" = --cert-dir ] && certs=$a; prev=$a; done
	printf '%s\n' "$script" >"$T/script.json"
	start_server --script "$T/script.json" "$@"
	write_config "account.ca-file=$certs/ca.pem" "delivery.timeout=${TIMEOUT}s"
	subj="fault case $cases"
	fault_msg "$subj" bob@example.com
	start=$SECONDS
	od_try
	sed 's/^/    | /' "$log" | cut -c1-220 | tail -n 4
	now=$(date +%s)
	[ "$od_rc" -ne 124 ] || fail "outboxd --once hung (killed after 60 s)"
	[ "$od_rc" -eq 75 ] || fail "outboxd --once exited $od_rc, expected 75 (mail deferred)"
	[ $((SECONDS - start)) -le $((4 * TIMEOUT + 10)) ] || fail "the run took $((SECONDS - start)) s"
	conns=$(srv_count '^CONNECT$')
	[ "$conns" -gt "$max_conns" ] && max_conns=$conns
	[ "$conns" -le 3 ] || fail "$conns connections in one run (at most 3 are allowed)"
	# Deferred: queued, no recipient failed, next try on the backoff schedule.
	if [ "$(msg_count)" -eq 1 ]; then
		expect_state_lacks '^rcpt	failed	'
		next=$(state_all | sed -n 's/^next	//p')
		if [ -n "$next" ] && [ "$next" -ge $((now + 240)) ]; then
			deferred=$((deferred + 1))
		else
			fail "not deferred for the backoff: next=[$next], now $now"
		fi
	else
		fail "the message is no longer queued"
	fi
	# A copy the faulty server stored is a duplicate in the window when outboxd
	# never took in its reply and says the message may have been delivered.
	got_faulty=$(stored "^Subject: $subj"$'\r'"?\$")
	in_window=0
	if [ "$got_faulty" -gt 0 ]; then
		if state_all | grep -q 'may have been delivered' && ! grep -q 'status=sent' "$log"; then
			in_window=$got_faulty
		else
			fail "the faulty server stored the message, and outboxd's state does not say it may have been delivered"
		fi
	fi
	stop_server
	# Now a server that behaves.
	PORT=$GOOD_PORT SDIR=$GOOD_SDIR
	write_config
	force_due
	od_once
	expect_od_rc 0
	expect_empty_queue
	got_good=$(stored "^Subject: $subj"$'\r'"?\$")
	expect_eq "copies at the good server" "$got_good" 1
	if [ $((got_faulty + got_good)) -eq 0 ]; then
		lost=$((lost + 1))
	else
		delivered=$((delivered + 1))
		a=$((got_faulty + got_good - 1))
		dups=$((dups + a))
		window_dups=$((window_dups + (in_window < a ? in_window : a)))
	fi
	grep -q 'status=bounced' "$log" && failed_n=$((failed_n + 1))
	echo "    connections: $conns; copies: $got_faulty at the faulty server, $got_good at the good one"
}

fault_case "no banner within the timeout" '[{"on": "connect", "delay": 6}]'
fault_case "no reply to BDAT LAST within the timeout" '[{"on": "data-end", "delay": 6}]'
fault_case "no reply to the final dot within the timeout" '[{"on": "data-end", "delay": 6}]' --no-chunking
fault_case "garbage instead of the reply to MAIL" '[{"on": "mail", "raw": "garbage \u0001\u00ff no code\r\n"}]'
fault_case "EHLO reply whose code changes in a continuation" '[{"on": "ehlo", "raw": "250-localhost\r\n251-PIPELINING\r\n250 CHUNKING\r\n"}]'
fault_case "end-of-data reply whose code changes in a continuation (stored)" \
	'[{"on": "data-end", "raw": "250-2.0.0 OK\r\n550 5.0.0 changed my mind\r\n"}]'
fault_case "a reply without CRLF, then silence" '[{"on": "rcpt", "raw": "250 2.1.5 OK"}]'
fault_case "huge EHLO reply (100000 lines)" '[{"on": "ehlo", "huge": 100000}]'
fault_case "huge reply to MAIL (100000 lines)" '[{"on": "mail", "huge": 100000}]'
fault_case "huge reply to BDAT LAST (100000 lines, stored)" '[{"on": "data-end", "huge": 100000}]'
fault_case "TLS alert after MAIL" '[{"on": "mail", "tls-alert": true}]'
fault_case "TLS alert at BDAT (mid-message)" '[{"on": "bdat", "tls-alert": true}]'
fault_case "TLS alert after the final dot" '[{"on": "data-end", "tls-alert": true}]' --no-chunking
for variant in expired wrong-name self-signed weak-key; do
	gen_certs "$T/certs-$variant" "--$variant"
	fault_case "certificate: $variant" '[]' --cert-dir "$T/certs-$variant"
done
fault_case "AUTH accepted, then 421 to every MAIL" \
	'[{"on": "mail", "reply": "421 4.7.0 Try again later, closing connection.", "close": true}]'

check "AUTH accepted, then 421 to every MAIL: outboxd as a daemon for ${DAEMON_SECONDS} s"
printf '%s\n' '[{"on": "mail", "reply": "421 4.7.0 Try again later, closing connection.", "close": true}]' >"$T/script.json"
start_server --script "$T/script.json"
write_config "delivery.timeout=${TIMEOUT}s" "delivery.idle-exit=600s"
for i in 1 2 3; do
	fault_msg "daemon 421 $i" bob@example.com carol@example.net
done
log=$(od_log_file)
"$OD" >/dev/null 2>"$log" &
od=$!
_od_pids+=("$od")
# The doorbell, rung now and then, must not make it try again before the backoff either.
for ((s = 0; s < DAEMON_SECONDS; s += 5)); do
	sleep 5
	ring
done
kill -TERM "$od"
wait_gone "$od" 10 || fail "outboxd did not stop on SIGTERM"
wait "$od" 2>/dev/null
conns=$(srv_count '^CONNECT$')
mails=$(srv_count '^C MAIL FROM')
next_in=$(( $(state_all | sed -n 's/^next	//p' | sort -n | head -n 1) - $(date +%s) ))
echo "    $conns connection(s), $mails MAIL command(s) in $DAEMON_SECONDS s; the next try is due in $next_in s"
sed 's/^/    | /' "$log" | cut -c1-200 | tail -n 6
[ "$conns" -le 3 ] || fail "$conns connections in $DAEMON_SECONDS s: outboxd retries too fast"
expect_count 3
expect_state_lacks '^rcpt	failed	'
[ "$next_in" -ge 240 ] || fail "the next try is due in $next_in s, before the 5-minute backoff"
expect_eq "stored" "$(stored)" 0
stop_server

note="all deferred; every duplicate in the window"
[ "$deferred" -eq "$cases" ] || note="$((cases - deferred)) case(s) NOT deferred"
[ "$window_dups" -eq "$dups" ] || note="$note; $((dups - window_dups)) duplicate(s) OUTSIDE the window"
figures "cases=$cases" "messages=$cases" "deferred=$deferred" "failed=$failed_n" "delivered=$delivered" \
	"lost=$lost" "duplicates=$dups" "max_connections_per_run=$max_conns" \
	"daemon_connections=$conns/${DAEMON_SECONDS}s" "daemon_next_try_in=${next_in}s" -- "$note"
finish
