#!/bin/bash
# SPDX-License-Identifier: MIT
# The sendmail(1) command line of doc/design.md: every documented option is
# accepted (and none of their values is taken for a recipient), unknown ones
# are refused with exit 64 and one line, and no option makes outbox read or
# write a file. Also: recipients, -t, -f, mailq and newaliases.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99

printf 'Subject: options\n\nbody\n' >"$T/in"

# files: every path under $T except the files run() writes; to see that nothing was created.
files() {
	find "$T" -path "$T/out" -prune -o -path "$T/err" -prune -o -print | LC_ALL=C sort
}

# accepted WHAT RCPTS -- ARGS...: the command line queues $T/in to exactly RCPTS.
accepted() {
	local what=$1 rcpts=() a
	shift
	while [ "$1" != -- ]; do rcpts+=("$1"); shift; done
	shift
	check "accepted: $what"
	run "$@" <"$T/in"
	expect_ok || return
	single_msg || return
	expect_env "$M" rcpt "${rcpts[@]}"
	expect_body "$M" "$T/in"
}

accepted "-N never" bob@example.org -- -N never bob@example.org
accepted "-Nnever (one word)" bob@example.org -- -Nnever bob@example.org
accepted "-N success,failure,delay" bob@example.org -- -N success,failure,delay bob@example.org
accepted "-R hdrs" bob@example.org -- -R hdrs bob@example.org
accepted "-Rfull (one word)" bob@example.org -- -Rfull bob@example.org
accepted "-V envid" bob@example.org -- -V envid-123 bob@example.org
accepted "-h 3" bob@example.org -- -h 3 bob@example.org
accepted "-h3 (one word)" bob@example.org -- -h3 bob@example.org
accepted "-L tag" bob@example.org -- -L mytag bob@example.org
accepted "-v" bob@example.org -- -v bob@example.org
accepted "-bm" bob@example.org -- -bm bob@example.org
accepted "-i and -oi" bob@example.org -- -i -oi bob@example.org
accepted "-B8BITMIME, -B 8BITMIME, -B 7BIT" bob@example.org -- -B8BITMIME -B 8BITMIME -B 7BIT bob@example.org
accepted "-odb -odi -odq" bob@example.org -- -odb -odi -odq bob@example.org
accepted "-oem -oep -oeq -oew" bob@example.org -- -oem -oep -oeq -oew bob@example.org
accepted "-oQ/x and other -oXXX" bob@example.org -- "-oQ$T/spool" -oQ/x -oDeliveryMode=b -om bob@example.org
[ -e "$T/spool" ] || [ -e /x ] && fail "-oQ created a directory"
accepted "a Mutt line with everything" bob@example.org carol@example.net -- \
	-oem -oi -B8BITMIME -f alice@gmail.com -N failure,delay -R hdrs -V envid -- bob@example.org carol@example.net
accepted "several addresses in one argument" a@example.org b@example.org c@example.org -- \
	-i 'a@example.org, Bob <b@example.org>' c@example.org
accepted "-- then a recipient starting with '-'" -oi@example.org -- -i -- -oi@example.org
accepted "after the first recipient, '-x' is a recipient too" bob@example.org -v@example.org -- \
	-i bob@example.org -v@example.org

check "accepted: -F NAME and -f ADDR, -r ADDR"
run -F 'Alice Example' -f bounce@example.org bob@example.org <"$T/in"
expect_ok
if single_msg; then
	expect_env "$M" fullname 'Alice Example'
	expect_env "$M" sender bounce@example.org
fi
check "accepted: -r ADDR (as -f), -fADDR in one word"
run -rbounce@example.org bob@example.org <"$T/in"
expect_ok
single_msg && expect_env "$M" sender bounce@example.org
check "accepted: -f '<>' is the null sender, -f '<a@b>' loses its brackets"
run -f '<>' bob@example.org <"$T/in"
expect_ok
single_msg && { envelope "$M" | grep -qx 'sender ' || fail "no null sender in [$(envelope "$M" | tr '\n' '|')]"; }
check "accepted: -f '<a@b>'"
run -f '<a@example.org>' bob@example.org <"$T/in"
expect_ok
single_msg && expect_env "$M" sender a@example.org

check "accepted: -F with a line break cannot add an envelope line"
run -F $'Mallory\nrcpt evil@example.org' bob@example.org <"$T/in"
expect_ok
if single_msg; then
	expect_env "$M" rcpt bob@example.org
	expect_env "$M" fullname 'Mallory rcpt evil@example.org'
fi

check "-C FILE: never read, never written"
mkfifo "$T/sendmail.cf"
sum=$(sha256sum /etc/passwd)
before=$(stat -c %Y /etc/passwd)
rc=0
timeout 10 "$SM" -C "$T/sendmail.cf" bob@example.org <"$T/in" >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -eq 124 ] && fail "-C FILE was opened (sendmail blocked on the FIFO)"
expect_ok
expect_count 1
rm -f "$T/sendmail.cf"
check "-C /etc/passwd and -C of a new file"
run -C /etc/passwd bob@example.org <"$T/in"
expect_ok
run "-C$T/new.cf" bob@example.org <"$T/in"
expect_ok
expect_count 2
[ -e "$T/new.cf" ] && fail "-C created its file"
[ "$(sha256sum /etc/passwd)" = "$sum" ] && [ "$(stat -c %Y /etc/passwd)" = "$before" ] ||
	fail "/etc/passwd changed"

check "-q: flush, nothing queued, stdin not read"
run -q </dev/null
expect_ok
run -q30m </dev/null
expect_ok
expect_empty_queue

check "-bi and newaliases: success, no output"
run -bi </dev/null
expect_ok
[ -s "$T/out" ] && fail "-bi printed something"
ln -s "$SM" "$T/newaliases"
rc=0
"$T/newaliases" >"$T/out" 2>"$T/err" </dev/null || rc=$?
expect_ok
[ -s "$T/out" ] && fail "newaliases printed something"
expect_empty_queue

# refused WHAT ARGS...: exit 64, one line on stderr, nothing queued, no file made.
refused() {
	local what=$1 before after
	shift
	check "refused: $what"
	before=$(files)
	run "$@" <"$T/in"
	expect_rc 64
	expect_one_error_line
	after=$(files)
	[ "$before" = "$after" ] || fail "files changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -3 | tr '\n' ' ')"
	expect_empty_queue
}

tmplog_existed=false
[ -e /tmp/log ] && tmplog_existed=true
refused "-X /tmp/log" -X /tmp/log bob@example.org
$tmplog_existed || { [ -e /tmp/log ] && fail "-X created /tmp/log"; }
refused "-X FILE in our directory" -X "$T/x.log" bob@example.org
refused "-XFILE in one word" "-X$T/x.log" bob@example.org
refused "-G" -G bob@example.org
refused "-bd" -bd
refused "-bD" -bD
refused "-bt" -bt
refused "-bv" -bv bob@example.org
refused "-qR" -qR example.org
refused "-qSfoo" -qSfoo
refused "-O option" -O QueueDirectory=/tmp bob@example.org
refused "-o alone" -o bob@example.org
refused "-ti (letters run together)" -ti bob@example.org
refused "no recipients" -i
refused "-f with a line break" -f $'alice@gmail.com\nrcpt evil@example.org' bob@example.org
refused "a recipient with a line break" $'bob@example.org\nrcpt evil@example.org'
refused "two addresses without a comma" 'bob@example.org carol@example.org'
refused "a bare address with a space" 'bob smith@example.org'
refused "-f without its value" -f
refused "recipients with -bp" -bp bob@example.org

check "-t without To, Cc or Bcc: exit 65, nothing queued"
printf 'Subject: nobody\n\nbody\n' >"$T/in.noto"
run -t -i <"$T/in.noto"
expect_rc 65
expect_one_error_line
expect_empty_queue
expect_no_tmp

check "-t: To, Cc, Bcc and the command line recipients; the message is not changed"
printf 'From: alice@gmail.com\nTo: Bob <bob@example.org>\nCc: carol@example.net,\n dave@example.org\nBcc: secret@example.com\nSubject: t\n\nTo: not-a-header@example.org\n' >"$T/in.t"
run -t -i extra@example.org <"$T/in.t"
expect_ok
if single_msg; then
	expect_env "$M" rcpt extra@example.org bob@example.org carol@example.net dave@example.org secret@example.com
	expect_body "$M" "$T/in.t"
fi

check "-t: Resent-To/Resent-Cc take the place of To/Cc"
printf 'Resent-From: alice@gmail.com\nResent-To: new@example.org\nResent-Cc: also@example.org\nFrom: someone@example.org\nTo: old@example.org\nSubject: fwd\n\nbody\n' >"$T/in.r"
run -t -i <"$T/in.r"
expect_ok
if single_msg; then
	expect_env "$M" rcpt new@example.org also@example.org
	expect_body "$M" "$T/in.r"
fi

check "mailq and -bp on an empty queue"
ln -s "$SM" "$T/mailq"
before=$(files)
rc=0
"$T/mailq" >"$T/out" 2>"$T/err" || rc=$?
expect_ok
[ "$(cat "$T/out")" = "Mail queue is empty" ] || fail "mailq without a queue: $(cat "$T/out")"
[ "$before" = "$(files)" ] || fail "mailq created files"
run -bp
expect_ok
[ "$(cat "$T/out")" = "Mail queue is empty" ] || fail "-bp without a queue: $(cat "$T/out")"
mkdir -p "$Q/msg" "$Q/state" "$Q/tmp"
chmod 700 "$Q"
run -bp
expect_ok
[ "$(cat "$T/out")" = "Mail queue is empty" ] || fail "-bp on an empty queue: $(cat "$T/out")"

check "mailq lists queued messages the Postfix way"
printf 'Subject: one\n\nfirst\n' >"$T/in1"
head -c 3000 /dev/zero | tr '\0' x >"$T/in2"
run -i bob@example.org 'Carol <carol@example.net>' <"$T/in1"
expect_ok
run -i -f bounce@example.org dave@example.org <"$T/in2"
expect_ok
rc=0
"$T/mailq" >"$T/out" 2>"$T/err" || rc=$?
expect_ok
cp "$T/out" "$T/mailq.out"
run -bp
expect_ok
cmp -s "$T/out" "$T/mailq.out" || fail "-bp and mailq differ"
set -- $(msg_ids)
if [ $# -eq 2 ]; then
	id1=$1 id2=$2
	head -n 1 "$T/mailq.out" | grep -q '^-Queue ID-* --Size-- ' || fail "no Postfix header line: $(head -n 1 "$T/mailq.out")"
	line1=$(grep "^$id1" "$T/mailq.out")
	line2=$(grep "^$id2" "$T/mailq.out")
	read -r a size1 _ _ _ _ sender1 <<<"$line1"
	read -r b size2 _ _ _ _ sender2 <<<"$line2"
	[ "$a" = "$id1" ] || fail "no line for $id1: [$line1]"
	[ "$b" = "$id2" ] || fail "no line for $id2: [$line2]"
	[ "$size1" = "$(wc -c <"$T/in1")" ] || fail "size of $id1: $size1"
	[ "$size2" = 3000 ] || fail "size of $id2: $size2"
	[ "$sender1" = alice@gmail.com ] || fail "sender of $id1 (the account): [$sender1]"
	[ "$sender2" = bounce@example.org ] || fail "sender of $id2: [$sender2]"
	# Recipients follow their message, indented.
	awk -v id="$id1" '$1 == id {on=1; next} /^$/ {on=0} on {print $1}' "$T/mailq.out" >"$T/r1"
	printf 'bob@example.org\ncarol@example.net\n' | cmp -s - "$T/r1" || fail "recipients of $id1: $(tr '\n' ' ' <"$T/r1")"
	awk -v id="$id2" '$1 == id {on=1; next} /^$/ {on=0} on {print $1}' "$T/mailq.out" >"$T/r2"
	echo dave@example.org | cmp -s - "$T/r2" || fail "recipients of $id2: $(tr '\n' ' ' <"$T/r2")"
	tail -n 1 "$T/mailq.out" | grep -q '^-- [0-9]* Kbytes in 2 Requests\.$' || fail "no summary line: $(tail -n 1 "$T/mailq.out")"
else
	fail "expected 2 queued messages, found $#"
fi
check "mailq refuses recipients"
rc=0
"$T/mailq" bob@example.org >"$T/out" 2>"$T/err" || rc=$?
expect_rc 64
expect_one_error_line

# sendmail loads libc alone and hands mailq to outbox-sendmail-config, next
# to it or in LIBEXECDIR. A copy with neither still queues mail.
check "sendmail links libc alone"
if command -v ldd >/dev/null; then
	extra=$(ldd "$SM" | grep -vE '^[[:space:]]*(linux-vdso|/lib.*/ld-linux|lib(c|asan|ubsan|m|gcc_s|stdc\+\+)\.so)')
	[ -z "$extra" ] || fail "outbox-sendmail loads more than libc: $extra"
fi
if [ -e "$OUTBOX_LIBEXECDIR/outbox-sendmail-config" ]; then
	echo "--- left out: mailq without outbox-sendmail-config (one is installed in $OUTBOX_LIBEXECDIR)"
else
	check "mailq with no outbox-sendmail-config to hand over to: exit 75, one line"
	mkdir -p "$T/alone"
	cp "$SM" "$T/alone/outbox-sendmail"
	ln -s outbox-sendmail "$T/alone/mailq"
	rc=0
	"$T/alone/mailq" >"$T/out" 2>"$T/err" || rc=$?
	expect_rc 75
	expect_one_error_line
	grep -q "^mailq: cannot run $OUTBOX_LIBEXECDIR/outbox-sendmail-config: " "$T/err" ||
		fail "the error does not name the program: $(cat "$T/err")"
	check "a copy of sendmail with no outbox-sendmail-config still queues mail"
	rc=0
	"$T/alone/outbox-sendmail" bob@example.org <"$T/in" >"$T/out" 2>"$T/err" || rc=$?
	expect_ok && expect_count 1
fi

finish
