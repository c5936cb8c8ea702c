#!/bin/bash
# SPDX-License-Identifier: MIT
# The exact command lines of programs that call sendmail non-interactively,
# with the messages they write: Debian cron, cronie, systemd-cron, PHP
# mail(), logwatch/mdadm and unattended-upgrades. Each message must be queued
# byte for byte as given (header changes happen on the way out), with the
# envelope those command lines ask for.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99

host=$(hostname)

check "Debian cron: -FCronDaemon -i -B8BITMIME -oem alice, message without Date"
cat >"$T/in" <<EOF
From: root (Cron Daemon)
To: alice
Subject: Cron <alice@$host> /usr/local/bin/backup
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit
X-Cron-Env: <SHELL=/bin/sh>
X-Cron-Env: <HOME=/home/alice>
X-Cron-Env: <PATH=/usr/bin:/bin>
X-Cron-Env: <LOGNAME=alice>

backup: 3 files copied
.
Größe: 12 KB
EOF
run -FCronDaemon -i -B8BITMIME -oem alice <"$T/in"
expect_ok
if single_msg; then
	expect_envelope_sane "$M"
	expect_env "$M" rcpt alice
	expect_env "$M" fullname CronDaemon
	expect_env "$M" sender
	expect_body "$M" "$T/in"
fi

check "cronie: -FCronDaemon -i -odi -oem -oi -t -f alice, To: alice"
cat >"$T/in" <<EOF
From: "(Cron Daemon)" <alice>
To: alice
Subject: Cron <alice@$host> run-parts /etc/cron.hourly
Content-Type: text/plain; charset=UTF-8
Auto-Submitted: auto-generated
Precedence: bulk
X-Cron-Env: <XDG_SESSION_ID=3>
X-Cron-Env: <LANG=C.UTF-8>

job output
.
more output after a lone dot
EOF
run -FCronDaemon -i -odi -oem -oi -t -f alice <"$T/in"
expect_ok
if single_msg; then
	expect_env "$M" rcpt alice
	expect_env "$M" sender alice
	expect_env "$M" fullname CronDaemon
	expect_body "$M" "$T/in"
fi

check "systemd-cron: -i -B 8BITMIME alice (the type as its own word)"
cat >"$T/in" <<EOF
From: root
To: alice
Subject: [$host] result from cron-daily-backup.service
Content-Transfer-Encoding: 8bit
Content-Type: text/plain; charset=UTF-8

● cron-daily-backup.service - [Cron] "backup"
     Active: failed (Result: exit-code)
EOF
run -i -B 8BITMIME alice <"$T/in"
expect_ok
if single_msg; then
	expect_env "$M" rcpt alice
	expect_env "$M" sender
	expect_body "$M" "$T/in"
fi

check "PHP mail(): -t -i with CRLF line ends"
printf 'To: bob@example.org\r\nSubject: Order 42\r\nFrom: shop@example.org\r\nX-Mailer: PHP/8.2\r\n\r\nThank you.\r\n.\r\nLine after a lone dot.\r\n' >"$T/in"
run -t -i <"$T/in"
expect_ok
if single_msg; then
	expect_env "$M" rcpt bob@example.org
	expect_body "$M" "$T/in"
fi

check "PHP mail(): -t -i with mixed line ends and several recipients"
printf 'To: bob@example.org, Carol Smith <carol@example.net>\nSubject: mixed\nFrom: shop@example.org\r\nCc: "Dave, D." <dave@example.org>\r\n\nBody line one\r\nline two\n' >"$T/in"
run -t -i <"$T/in"
expect_ok
if single_msg; then
	expect_env "$M" rcpt bob@example.org carol@example.net dave@example.org
	expect_body "$M" "$T/in"
fi

check "logwatch/mdadm: -t without -i, a lone '.' ends the message"
printf 'From: mdadm monitoring <root>\nTo: root\nSubject: Fail event on /dev/md0:%s\n\nA Fail event had been detected on md device /dev/md0.\n..this line starts with two dots and stays so\n' "$host" >"$T/expect"
{ cat "$T/expect"; printf '.\nThis text comes after the end and is ignored.\n'; } >"$T/in"
run -t <"$T/in"
expect_ok
if single_msg; then
	expect_env "$M" rcpt root
	expect_body "$M" "$T/expect"
fi

check "logwatch: -t without -i, a lone '.' with CRLF ends the message too"
printf 'To: root\r\nSubject: Logwatch for %s\r\n\r\n ################### Logwatch ####\r\n' "$host" >"$T/expect"
{ cat "$T/expect"; printf '.\r\nignored\r\n'; } >"$T/in"
run -t <"$T/in"
expect_ok
if single_msg; then
	expect_env "$M" rcpt root
	expect_body "$M" "$T/expect"
fi

check "unattended-upgrades: -oi -t with an 8-bit subject"
printf 'Subject: [reboot required] unattended-upgrades result for %s: SUCCESS — ok\nTo: root\nAuto-Submitted: auto-generated\nMIME-Version: 1.0\nContent-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n\nUnattended upgrade result: All upgrades installed\n.\n' "$host" >"$T/in"
run -oi -t <"$T/in"
expect_ok
if single_msg; then
	expect_env "$M" rcpt root
	expect_body "$M" "$T/in"
fi

finish
