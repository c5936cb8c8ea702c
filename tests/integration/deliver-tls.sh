#!/bin/bash
# The connection: a server that is down defers (past the lifetime, the
# message fails); a certificate that cannot be verified (unknown CA,
# self-signed, wrong name, expired) or a STARTTLS server that does not offer
# STARTTLS gets nothing after the handshake, and the mail waits; STARTTLS
# mode delivers when TLS is there.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

# expect_deferred_kept: the one message is queued, deferred to a later time,
# no recipient decided.
expect_deferred_kept() {
	local next
	single_msg || return 1
	next=$(state_of "${M##*/}" | sed -n 's/^next\t//p')
	[ -n "$next" ] && [ "$next" -gt "$(date +%s)" ] || fail "not deferred to a later time: next=[$next]"
	expect_state_lacks '^rcpt	(failed|sent)'
	expect_no_account_hold
}

# json_stat KEY: a number from the last server's --stats file.
json_stat() {
	"$SPY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/stats" "$1" 2>/dev/null
}

# expect_no_smtp: the server received no SMTP command at all on this server
expect_no_smtp() {
	local n
	n=$(srv_count '^C ')
	[ "$n" -eq 0 ] && return 0
	fail "the client sent $n command(s): $(cut -d' ' -f2- "$SDIR/log" | grep '^C ' | head -3 | tr '\n' '|')"
}

check "server down (nothing listening): deferred, kept"
PORT=$(free_port)
write_config
queue_msg "server down"
od_once
expect_od_rc 75
expect_deferred_kept
expect_state_has '^reply	.*(refused|connect)'

check "server down past the message's lifetime: failed (4.4.7) with the last error, reported, not retried forever"
PORT=$(free_port)
write_config "delivery.lifetime=2s"
queue_msg "expires"
single_msg
id=${M##*/}
od_once
expect_od_rc 75
expect_state_lacks '^rcpt	failed'
sleep 2.2
od_once
grep -qP '^rcpt\tfailed\t[0-9]+\tbob@example\.com\tmessage expired after 2 seconds .*last reply: .*refused' "$Q/state/$id" 2>/dev/null ||
	fail "not failed as expired with the last error: $(state_of "$id" | grep '^rcpt')"
[ -f "$Q/msg/$id" ] || fail "the expired message left the queue"
expect_count 2	# and the bounce report, waiting for the server

for variant in unknown-ca --self-signed --wrong-name --expired; do
	check "certificate not verifiable ($variant): nothing sent after the handshake, kept"
	if [ "$variant" = unknown-ca ]; then
		start_server
		write_config "account.ca-file="	# the system store does not know the test CA
	else
		gen_certs "$T/certs$variant" "$variant"
		start_server --cert-dir "$T/certs$variant"
		write_config "account.ca-file=$T/certs$variant/ca.pem"
	fi
	queue_msg "bad cert $variant"
	od_once
	expect_od_rc 75
	expect_no_smtp
	expect_eq "messages stored" "$(stored)" 0
	expect_deferred_kept
	grep -qi 'certificate\|verif' "$T/od.err" || fail "the log does not say why: $(cat "$T/od.err")"
	stop_server
done

# A bundle as distributions ship them: the system's CAs with ours among them.
# outboxd reads it a line at a time and keeps only the issuers the server's
# chain names, so its place in the bundle must not matter.
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
	for where in first middle last; do
		check "ca-file is a bundle of $(grep -c 'BEGIN CERT' /etc/ssl/certs/ca-certificates.crt) CAs, ours $where: delivered"
		bundle=$T/bundle-$where.pem
		case $where in
		first) cat "$CERTS/ca.pem" /etc/ssl/certs/ca-certificates.crt ;;
		middle) awk -v ca="$CERTS/ca.pem" '/END CERT/ { n++ } { print } /END CERT/ && n == 70 { while ((getline l < ca) > 0) print l }' /etc/ssl/certs/ca-certificates.crt ;;
		last) cat /etc/ssl/certs/ca-certificates.crt "$CERTS/ca.pem" ;;
		esac >"$bundle"
		start_server
		write_config "account.ca-file=$bundle"
		queue_msg "bundle $where"
		od_once
		expect_od_rc 0
		expect_eq "messages stored" "$(stored)" 1
		expect_empty_queue
		stop_server
	done
fi

check "a server that sends its intermediate CA, the root in ca-file: delivered"
gen_certs "$T/certs-int" --intermediate
start_server --cert-dir "$T/certs-int"
write_config "account.ca-file=$T/certs-int/ca.pem"
queue_msg "intermediate"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored)" 1
expect_empty_queue
stop_server

check "the same chain with an unrelated root in ca-file: refused"
start_server --cert-dir "$T/certs-int"
write_config "account.ca-file=$CERTS/ca.pem"
queue_msg "intermediate, wrong root"
od_once
expect_od_rc 75
expect_no_smtp
expect_eq "messages stored" "$(stored)" 0
expect_deferred_kept
grep -q 'not trusted' "$T/od.err" || fail "the log does not say why: $(cat "$T/od.err")"
stop_server

check "ca-file without a certificate: the error names it, nothing sent"
start_server
printf 'not a certificate\n' >"$T/empty.pem"
write_config "account.ca-file=$T/empty.pem"
queue_msg "no ca"
od_once
expect_od_rc 75
expect_no_smtp
grep -q "ca-file $T/empty.pem: no certificates" "$T/od.err" || fail "the log does not name the ca-file: $(cat "$T/od.err")"
stop_server

# A server that ends connections after a number of messages (421, as Gmail
# does after many): outboxd reconnects and sends the rest, under TLS 1.3 and
# TLS 1.2 alike.
for v in 1.3 1.2; do
	check "TLS $v, a server that closes after 2 messages: 5 delivered over 3 connections"
	start_server --tls-max "$v" --conn-messages 2 --stats "$T/stats"
	write_config
	for i in 1 2 3 4 5; do queue_msg "reconnect $v $i"; done
	od_once
	expect_od_rc 0
	expect_eq "messages stored" "$(stored)" 5
	expect_empty_queue
	stop_server
	expect_eq "connections" "$(json_stat connections)" 3
	expect_eq "TLS version of message 5" "$(json_of 5 tls)" "\"TLS$v\""
done

check "implicit TLS against a plaintext server: no AUTH, no MAIL"
start_server --tls none
write_config
queue_msg "plaintext server"
od_once
expect_od_rc 75
expect_eq "AUTH or MAIL commands" "$(srv_count '^C (AUTH|MAIL)')" 0
expect_deferred_kept
stop_server

check "tls = starttls: STARTTLS, then AUTH and the mail"
start_server --tls starttls
write_config "account.tls=starttls"
queue_msg "starttls"
od_once
expect_od_rc 0
expect_eq "messages stored" "$(stored)" 1
json_of 1 tls 2>/dev/null | grep -q '"TLS1\.[23]"' || fail "the message did not come over TLS: $(json_of 1 tls 2>/dev/null)"
first_starttls=$(cut -d' ' -f2- "$SDIR/log" | grep -n '^C STARTTLS' | head -1 | cut -d: -f1)
first_auth=$(cut -d' ' -f2- "$SDIR/log" | grep -n '^C AUTH' | head -1 | cut -d: -f1)
[ -n "$first_starttls" ] && [ -n "$first_auth" ] && [ "$first_starttls" -lt "$first_auth" ] ||
	fail "AUTH was not after STARTTLS (STARTTLS at line [$first_starttls], AUTH at [$first_auth])"
expect_empty_queue
stop_server

check "tls = starttls against a server without STARTTLS: nothing in the clear"
start_server --tls none
write_config "account.tls=starttls"
queue_msg "no starttls"
od_once
expect_od_rc 75
expect_eq "AUTH, MAIL, RCPT or DATA commands" "$(srv_count '^C (AUTH|MAIL|RCPT|DATA|BDAT)')" 0
expect_eq "messages stored" "$(stored)" 0
expect_deferred_kept
grep -q 'STARTTLS' "$T/od.err" || fail "the log does not say STARTTLS is missing: $(cat "$T/od.err")"
stop_server

finish
