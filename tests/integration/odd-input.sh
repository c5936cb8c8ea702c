#!/bin/bash
# SPDX-License-Identifier: MIT
# Whatever bytes a client gives are queued exactly as given: bare CR, NUL,
# very long lines, no header/body separator, no final newline, an empty
# message, 8-bit and encoded headers, folding, arbitrary binary. Each case
# is sent with -oi, and where it has no lone "." line also without -i; cases
# with a To: are sent with -t too. Then memory: a 50 MB message is streamed
# through a small, fixed amount of memory.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99

# exact NAME FILE [-t]: FILE is queued byte for byte to bob@example.org with
# -oi and without -i (and with -t -i, taking bob@example.org from its To:).
exact() {
	local name=$1 in=$2 args
	for args in "-oi bob@example.org" "bob@example.org" ${3:+"-t -i"} ${3:+"-t"}; do
		check "$name ($args)"
		# shellcheck disable=SC2086
		run $args <"$in"
		expect_ok || continue
		single_msg || continue
		expect_envelope_sane "$M"
		expect_env "$M" rcpt bob@example.org
		expect_body "$M" "$in"
	done
}

printf 'To: bob@example.org\nSubject: a\rb\n\nline\rwith a bare CR\r\nCRLF line\rlast\r' >"$T/cr"
exact "bare CR" "$T/cr" -t

printf 'To: bob@example.org\nSubject: nul\0here\n\nbody \0\0 with NULs\n\0\n\0' >"$T/nul"
exact "NUL bytes" "$T/nul" -t

{ printf 'To: bob@example.org\nSubject: long lines\n\n'; head -c 102400 /dev/zero | tr '\0' a; printf '\n';
  head -c 102400 /dev/zero | tr '\0' b; } >"$T/longbody"
exact "100 KB body lines, the last without a newline" "$T/longbody" -t

{ printf 'X-Long: '; head -c 102400 /dev/zero | tr '\0' h; printf '\nTo: bob@example.org\n\nbody\n'; } >"$T/longhdr"
exact "a 100 KB header line before To:" "$T/longhdr" -t

{ printf 'To: bob@example.org\n'; for i in $(seq 1 30000); do printf 'X-Filler-%05d: %s\n' "$i" 'some header text here'; done
  printf '\nbody after a 1.3 MB header section\n'; } >"$T/bighdr"
exact "a header section over 1 MB" "$T/bighdr" -t

printf 'To: bob@example.org\nSubject: header only, no blank line, no body\n' >"$T/nosep"
exact "no header/body separator" "$T/nosep" -t

printf 'just text, no header at all\nsecond line\n' >"$T/noheader"
exact "no header at all" "$T/noheader"

printf 'To: bob@example.org\nSubject: x\n\nno newline at the end' >"$T/nonl"
exact "no trailing newline" "$T/nonl" -t

: >"$T/empty"
exact "an empty message" "$T/empty"

printf 'To: Jörg Müller <bob@example.org>\nFrom: Zoë <alice@gmail.com>\nSubject: Grüße — 日本語\n\nÄÖÜ äöü ß € 日本語 🙂\n\xff\xfe latin-1: caf\xe9\n' >"$T/utf8"
exact "8-bit UTF-8 (and not UTF-8) headers and body" "$T/utf8" -t

printf 'To: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <bob@example.org>\nSubject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\n =?ISO-8859-1?Q?caf=E9?=\n\nencoded words\n' >"$T/encoded"
exact "encoded words" "$T/encoded" -t

printf 'Subject: a folded\n  subject line\n\tcontinued with a tab\nTo: "Bob\n (the builder)" <bob@example.org>\nX-Empty:\n\nbody\n' >"$T/folded"
exact "folded headers, folded To:" "$T/folded" -t

printf 'From alice@gmail.com Mon Jan  1 00:00:00 2024\nTo: bob@example.org\nSubject: mbox\n\n>From the body\n' >"$T/mbox"
exact "an mbox From_ line first" "$T/mbox" -t

printf 'To: bob@example.org\n\n.x leading dot\n..\n.\r\n\r.\n.\r\r\n' >"$T/dots-i"
check "dot lines with -i are kept"
run -i bob@example.org <"$T/dots-i"
expect_ok
single_msg && expect_body "$M" "$T/dots-i"

check "without -i a final '.' without newline ends the message"
printf 'Subject: s\n\nbody\n' >"$T/expect"
{ cat "$T/expect"; printf '.'; } >"$T/in"
run bob@example.org <"$T/in"
expect_ok
single_msg && expect_body "$M" "$T/expect"

check "without -i a '.' as the first line is an empty message"
printf '.\nSubject: after the end\n' >"$T/in"
run bob@example.org <"$T/in"
expect_ok
single_msg && expect_body "$M" "$T/empty"

head -c 262144 /dev/urandom >"$T/binary"
check "256 KB of random bytes with -oi"
run -oi bob@example.org <"$T/binary"
expect_ok
single_msg && expect_body "$M" "$T/binary"

# Memory: peak RSS of a 1 MB and of a 50 MB message, streamed through a pipe.
# maxrss ARGS... < input: prints the peak RSS in KB of outbox-sendmail ARGS.
maxrss() {
	rc=0
	/usr/bin/time -f %M -o "$T/rss" "$SM" "$@" >"$T/out" 2>"$T/err" || rc=$?
	tail -n 1 "$T/rss"
}
if [ -x /usr/bin/time ]; then
	line=$(printf '%-79s' 'All work and no play makes Jack a dull boy.')
	{ printf 'To: bob@example.org\nSubject: big\n\n'; yes "$line" | head -c 1048576; } >"$T/1m"
	{ printf 'To: bob@example.org\nSubject: big\n\n'; yes "$line" | head -c 52428800; } >"$T/50m"
	for args in "-oi bob@example.org" "bob@example.org" "-t -i"; do
		check "memory does not grow with the message ($args)"
		# shellcheck disable=SC2086
		small=$(cat "$T/1m" | maxrss $args)
		expect_ok
		rm -rf "$Q"
		# shellcheck disable=SC2086
		big=$(cat "$T/50m" | maxrss $args)
		expect_ok
		echo "peak RSS: 1 MB message ${small} KB, 50 MB message ${big} KB"
		# A sanitizer's shadow memory adds a fixed few MB; the growth check below still holds.
		limit=8192
		ldd "$SM" 2>/dev/null | grep -q libasan && limit=32768
		[ "$big" -lt "$limit" ] || fail "a 50 MB message takes ${big} KB of memory"
		[ "$big" -lt $((small + 1024)) ] || fail "memory grows with the message: ${small} KB for 1 MB, ${big} KB for 50 MB"
		single_msg && expect_body "$M" "$T/50m"
	done
	rm -f "$T/1m" "$T/50m"
else
	check "memory does not grow with the message"
	fail "/usr/bin/time (Debian package time) is needed to measure memory"
fi

finish
