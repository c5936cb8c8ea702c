#!/bin/bash
# outbox queue and queue --json: the JSON parses and follows its schema,
# each state a user can see (queued, deferred, failed, held, and held for
# the account) shows as such, mailq lists the same messages, and the table
# has colour only on a terminal and never with NO_COLOR.
. "${BASH_SOURCE%/*}/lib-cli.sh" || exit 99

check "no queue at all: 'The queue is empty.' and an empty JSON list"
ob queue
expect_ob_rc 0
out_has '^The queue is empty\.$'
qjson
expect_eq "JSON of no queue" "$(py 'j')" '{"version": 1, "held": null, "messages": []}'
ob queue --bogus
expect_ob_rc 64

check "one message in each state: the JSON schema and values"
t0=$(date +%s)
make_states
now=$(date +%s)
expect_eq "version" "$(py "j['version']")" 1
expect_eq "held (the account)" "$(py "j['held']")" None
expect_eq "messages" "$(py "len(j['messages'])")" 4
# Every message has every field, with the right type.
bad=$(py "[(m.get('id'), k) for m in j['messages'] for k, t in (('id', str), ('status', str), ('arrival', int), ('size', int), ('sender', str), ('attempts', int), ('next_attempt', (int, type(None))), ('reply', (str, type(None))), ('recipients', list)) if not isinstance(m.get(k, KeyError), t)]")
expect_eq "fields missing or of the wrong type" "$bad" "[]"
bad=$(py "[(m['id'], r) for m in j['messages'] for r in m['recipients'] if sorted(r) != ['address', 'reply', 'status'] or not isinstance(r['address'], str) or r['status'] not in ('pending', 'sent', 'deferred', 'failed') or not isinstance(r['reply'], (str, type(None)))]")
expect_eq "malformed recipients" "$bad" "[]"
bad=$(py "[m['id'] for m in j['messages'] if not ($t0 <= m['arrival'] <= $now)]")
expect_eq "arrival times outside the test's run" "$bad" "[]"
expect_eq "senders" "$(py "sorted(set(m['sender'] for m in j['messages']))")" "[\"$ACCOUNT\"]"
for id in "$ID_QUEUED" "$ID_DEFERRED" "$ID_FAILED" "$ID_HELD"; do
	expect_eq "$id: size (the message bytes in msg/$id)" "$(py "[m['size'] for m in j['messages'] if m['id'] == '$id'][0]")" \
		"$(body "$Q/msg/$id" | wc -c)"
done
# m ID EXPR-SUFFIX [ARG]: EXPR on the message ID of $T/q.json (the message is "m"; ARG is sys.argv[3]).
m() {
	"$SPY" -c 'import json,sys
j = json.load(open(sys.argv[1]))
m = [m for m in j["messages"] if m["id"] == sys.argv[2]][0]
r = eval("m" + sys.argv[4])
print(r if not isinstance(r, (list, dict)) else json.dumps(r))' "$T/q.json" "$1" "${3:-}" "$2"
}
# queued: never tried.
expect_eq "queued: status" "$(m "$ID_QUEUED" "['status']")" queued
expect_eq "queued: attempts" "$(m "$ID_QUEUED" "['attempts']")" 0
expect_eq "queued: next_attempt" "$(m "$ID_QUEUED" "['next_attempt']")" None
expect_eq "queued: reply" "$(m "$ID_QUEUED" "['reply']")" None
expect_eq "queued: recipients" "$(m "$ID_QUEUED" "['recipients']")" '[{"address": "dave@example.com", "status": "pending", "reply": null}]'
# deferred: one attempt, a 451, a next attempt in the future.
expect_eq "deferred: status" "$(m "$ID_DEFERRED" "['status']")" deferred
expect_eq "deferred: attempts" "$(m "$ID_DEFERRED" "['attempts']")" 1
[ "$(m "$ID_DEFERRED" "['next_attempt'] > $now")" = True ] ||
	fail "deferred: next_attempt $(m "$ID_DEFERRED" "['next_attempt']") is not in the future"
m "$ID_DEFERRED" "['reply']" | grep -q '^451 4\.3\.0 ' || fail "deferred: reply is [$(m "$ID_DEFERRED" "['reply']")]"
expect_eq "deferred: recipient" "$(m "$ID_DEFERRED" "['recipients'][0]['address'] + ' ' + m['recipients'][0]['status']")" "bob@example.com deferred"
m "$ID_DEFERRED" "['recipients'][0]['reply']" | grep -q '^451 4\.3\.0 ' ||
	fail "deferred: recipient reply is [$(m "$ID_DEFERRED" "['recipients'][0]['reply']")]"
# failed: the server's reply, quotes and backslash included, survives JSON.
expect_eq "failed: status" "$(m "$ID_FAILED" "['status']")" failed
expect_eq "failed: attempts" "$(m "$ID_FAILED" "['attempts']")" 1
expect_eq "failed: recipient" "$(m "$ID_FAILED" "['recipients'][0]['address'] + ' ' + m['recipients'][0]['status']")" "bad@example.com failed"
expect_eq "failed: recipient reply" "$(m "$ID_FAILED" "['recipients'][0]['reply'].startswith(sys.argv[3])" "$BAD_REPLY")" True
expect_eq "failed: reply" "$(m "$ID_FAILED" "['reply'].startswith(sys.argv[3])" "$BAD_REPLY")" True
# held: by the user, before outboxd ran; the server never saw it.
expect_eq "held: status" "$(m "$ID_HELD" "['status']")" held
expect_eq "held: attempts" "$(m "$ID_HELD" "['attempts']")" 0
expect_eq "RCPT TO carol (held) on the server" "$(srv_count 'RCPT TO:<carol@')" 0

step "mailq and sendmail -bp list the same IDs, with the held one marked"
ln -s "$SM" "$T/mailq"
"$SPY" -c 'import json,sys; [print(m["id"]) for m in json.load(open(sys.argv[1]))["messages"]]' "$T/q.json" | sort >"$T/ids.json"
for cmd in "$SM -bp" "$T/mailq"; do
	$cmd >"$T/mailq.out" 2>"$T/mailq.err" || fail "$cmd exited non-zero: $(head -c 200 "$T/mailq.err")"
	grep -oE '^[0-9A-Z]{16}' "$T/mailq.out" | sort >"$T/ids.mailq"
	cmp -s "$T/ids.json" "$T/ids.mailq" ||
		fail "$cmd lists [$(tr '\n' ' ' <"$T/ids.mailq")], outbox queue --json [$(tr '\n' ' ' <"$T/ids.json")]"
done
grep -q "^$ID_HELD!" "$T/mailq.out" || fail "mailq does not mark the held message with '!': $(grep "^$ID_HELD" "$T/mailq.out")"

step "the table, piped: every message with its status, no escape sequences"
ob queue
expect_ob_rc 0
for pair in "$ID_QUEUED queued" "$ID_DEFERRED deferred" "$ID_FAILED failed" "$ID_HELD held"; do
	grep -qE "^${pair% *} +${pair#* } " "$T/out" || fail "no line '${pair% *}  ${pair#* }' in the table: $(tr '\n' '|' <"$T/out")"
done
grep -qF "$BAD_REPLY" "$T/out" || fail "the table does not show the failed message's reply"
grep -q $'\033' "$T/out" && fail "escape sequences in piped output: $(od -c "$T/out" | grep -m1 '033')"
TERM=xterm NO_COLOR= ob queue
grep -q $'\033' "$T/out" && fail "escape sequences in piped output with an empty NO_COLOR"

step "the table on a terminal: colour, except with NO_COLOR or TERM=dumb"
if command -v script >/dev/null 2>&1; then
	tty_run() { script -q -e -c "$*" /dev/null >"$T/tty.out" 2>&1 </dev/null; }
	tty_run "TERM=xterm $OB queue" || fail "outbox queue on a terminal failed: $(head -c 200 "$T/tty.out")"
	grep -q "$ID_FAILED" "$T/tty.out" || fail "outbox queue printed no table on a terminal: $(head -c 200 "$T/tty.out")"
	grep -q $'\033\[' "$T/tty.out" || fail "no colour on a terminal: $(head -3 "$T/tty.out")"
	tty_run "TERM=xterm NO_COLOR=1 $OB queue"
	grep -q "$ID_FAILED" "$T/tty.out" || fail "outbox queue printed nothing on a terminal with NO_COLOR"
	grep -q $'\033' "$T/tty.out" && fail "escape sequences on a terminal with NO_COLOR=1: $(od -c "$T/tty.out" | grep -m1 '033')"
	tty_run "TERM=dumb $OB queue"
	grep -q $'\033' "$T/tty.out" && fail "escape sequences on a terminal with TERM=dumb"
	tty_run "TERM=xterm NO_COLOR=1 $OB show $ID_FAILED"
	grep -q $'\033' "$T/tty.out" && fail "escape sequences from show with NO_COLOR=1"
else
	echo "script(1) is not installed: colour on a terminal not checked"
fi

step "an account hold: JSON 'held' gives the reason, queued and deferred show as held, failed stays failed"
printf 'localhost said: 535 5.7.8 Username and Password not accepted.\n' >"$Q/account-hold"
qjson
expect_eq "held" "$(py "j['held']")" "localhost said: 535 5.7.8 Username and Password not accepted."
expect_eq "statuses (queued, deferred, failed, held)" \
	"$(status_of "$ID_QUEUED") $(status_of "$ID_DEFERRED") $(status_of "$ID_FAILED") $(status_of "$ID_HELD")" "held held failed held"
ob queue
out_has '^All mail is held: localhost said: 535'
"$SM" -bp >"$T/mailq.out" 2>&1
grep -q '^Queue held: ' "$T/mailq.out" || fail "mailq does not say the queue is held: $(head -3 "$T/mailq.out")"
rm -f "$Q/account-hold"

stop_server
finish
