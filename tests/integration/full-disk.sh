#!/bin/bash
# SPDX-License-Identifier: MIT
# A full disk: in a private mount namespace a 1 MB tmpfs holds the queue. A
# message larger than the space gives exit 74 (or 75) and one line, leaves
# nothing in msg/ or tmp/; -bs answers 452 and the session goes on; a small
# message still goes in afterwards.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99

if [ "${1:-}" = --full-disk ]; then
	# Run by the part below inside "unshare -m": mounts are private here.
	mkdir -p "$XDG_DATA_HOME"
	mount -t tmpfs -o size=1m,mode=0755 outbox-test "$XDG_DATA_HOME" 2>"$T/err" ||
		skip "cannot mount a tmpfs in a private mount namespace: $(cat "$T/err")"
	on_exit 'umount "$XDG_DATA_HOME"'
	{ printf 'To: bob@example.org\nSubject: too big\n\n'; head -c 2097152 /dev/urandom | base64; } >"$T/big"
	printf 'To: bob@example.org\nSubject: small\n\nsmall message\n' >"$T/small"

	for args in "-oi bob@example.org" "-t -i" "bob@example.org"; do
		check "full disk: a message larger than the space ($args)"
		# shellcheck disable=SC2086
		run $args <"$T/big"
		[ "$rc" -eq 74 ] || [ "$rc" -eq 75 ] || fail "exit status $rc, expected 74 or 75 ($(cat "$T/err"))"
		expect_one_error_line
		expect_empty_queue
		expect_no_tmp
	done

	check "full disk: -bs answers 452 and the session goes on"
	{ printf 'EHLO client\r\nMAIL FROM:<alice@gmail.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n'
	  sed 's/$/\r/' "$T/big"; printf '.\r\nMAIL FROM:<alice@gmail.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: small\r\n\r\nfits\r\n.\r\nQUIT\r\n'; } >"$T/bs"
	run -bs <"$T/bs"
	expect_ok
	codes=$(tr -d '\r' <"$T/out" | grep -Eo '^[0-9]{3} ' | tr -d ' ' | tr '\n' ' ')
	[ "$codes" = "220 250 250 250 354 452 250 250 354 250 221 " ] || fail "reply codes: $codes"
	expect_count 1
	expect_no_tmp

	check "full disk: a small message still goes in"
	run -oi bob@example.org <"$T/small"
	expect_ok
	single_msg && expect_body "$M" "$T/small"
	expect_no_tmp
	finish
fi

command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
unshare -m true 2>/dev/null || skip "unshare -m is not permitted here"
r=0
unshare -m --propagation private bash "${BASH_SOURCE[0]}" --full-disk || r=$?
exit "$r"
