#!/bin/bash
# valgrind memcheck over the enqueue and one whole delivery cycle: no invalid
# access, no use of uninitialised memory, no definite leak.
. "${BASH_SOURCE%/*}/lib.sh"
. "${BASH_SOURCE%/*}/lib-deliver.sh"

command -v valgrind >/dev/null || skip "valgrind is not installed"

VG=(valgrind --quiet --error-exitcode=42 --leak-check=full --errors-for-leak-kinds=definite
	--show-leak-kinds=definite --track-origins=yes)

start_server
write_config delivery.timeout=60s

check "sendmail -t under valgrind: clean"
printf 'From: Alice <alice@gmail.com>\nTo: bob@example.com, Carol <carol@example.org>\nBcc: x@example.net\nSubject: vg\n\nbody\n.\n' >"$T/in"
"${VG[@]}" --log-file="$T/vg-sendmail" "$SM" -t -i <"$T/in"
rc=$?
[ $rc -eq 0 ] || fail "sendmail under valgrind exited $rc: $(head -c 1500 "$T/vg-sendmail")"

check "sendmail -bs under valgrind: clean"
printf 'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: bs\r\n\r\n..dot\r\n.\r\nQUIT\r\n' |
	"${VG[@]}" --log-file="$T/vg-bs" "$SM" -bs >/dev/null
rc=$?
[ $rc -eq 0 ] || fail "sendmail -bs under valgrind exited $rc: $(head -c 1500 "$T/vg-bs")"

# sendmail hands mailq over to its twin by exec: the twin is checked itself.
check "mailq (outbox-sendmail-config -bp) under valgrind: clean"
"${VG[@]}" --log-file="$T/vg-mailq" "$(dirname "$SM")/outbox-sendmail-config" -bp >/dev/null
rc=$?
[ $rc -eq 0 ] || fail "mailq under valgrind exited $rc: $(head -c 1500 "$T/vg-mailq")"

check "outboxd --once under valgrind delivers everything: clean"
"$SM" -t -i <"$T/in" || fail "sendmail failed"
rc=0
timeout 120 "${VG[@]}" --log-file="$T/vg-outboxd" "$OD" --once 2>"$T/od.err" || rc=$?
[ $rc -eq 0 ] || fail "outboxd under valgrind exited $rc: $(head -c 2000 "$T/vg-outboxd")"
expect_eq "messages stored" "$(stored)" 1
expect_empty_queue

finish
