#!/bin/bash
# SPDX-License-Identifier: MIT
# System callers: cron as root, mdadm, smartd. Root without a configuration
# of its own and without the system configuration gets exit 75 and one line;
# with "[system] deliver-to = USER" in SYSCONFDIR/outbox/config root's mail
# lands in USER's queue, owned by USER; a bad system configuration is exit 78;
# a system user (UID < 1000) without a configuration gets exit 75.
#
# Needs root: it makes throwaway users (removed afterwards) and writes the
# system configuration only when the machine has none (removed afterwards).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99

[ "$(id -u)" -eq 0 ] || skip "must run as root (it creates throwaway users)"
need useradd userdel setpriv
: "${OUTBOX_SYSCONFDIR:?OUTBOX_SYSCONFDIR must name the sysconfdir of the build}"
syscfg=$OUTBOX_SYSCONFDIR/outbox/config

printf 'From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@%s> /usr/local/sbin/check\n\nroot cron output\n.\nafter a lone dot\n' \
	"$(hostname)" >"$T/in"

# as_root ARGS... < in: sendmail as root with no configuration of root's own;
# sets $rc, $T/out, $T/err. Root's XDG_DATA_HOME points at $T/rootdata, which
# must stay untouched.
mkdir -p "$T/roothome"
as_root() {
	rc=0
	env -u XDG_CONFIG_HOME HOME="$T/roothome" XDG_DATA_HOME="$T/rootdata" \
		"$SM" "$@" >"$T/out" 2>"$T/err" || rc=$?
}

# as_user USER HOME ARGS... < in: sendmail as USER with a clean environment.
as_user() {
	local user=$1 home=$2
	shift 2
	rc=0
	env -i PATH=/usr/bin:/bin HOME="$home" LOGNAME="$user" USER="$user" \
		setpriv --reuid="$user" --regid="$user" --init-groups \
		"$SM" "$@" >"$T/out" 2>"$T/err" || rc=$?
}

# A throwaway user; its home is under $T.
new_user() {
	local name=$1
	shift
	useradd "$@" -m -d "$T/users/$name" -s /usr/sbin/nologin -c "Outbox Test" "$name" ||
		{ fail "useradd $name failed"; return 1; }
	on_exit "userdel $name 2>/dev/null"
}
mkdir -p "$T/users"
chmod 755 "$T/users"
suffix=$$
user=obxu$suffix
sysuser=obxs$suffix
new_user "$user" || finish
uid=$(id -u "$user")

# --- root without any configuration ----------------------------------------
if [ -e "$syscfg" ]; then
	echo "note: $syscfg exists on this machine: the root checks that need it absent are skipped"
	syscfg_ours=false
else
	check "root without a configuration and without $syscfg: exit 75"
	as_root -FCronDaemon -i -B8BITMIME -oem root <"$T/in"
	expect_rc 75
	expect_one_error_line
	grep -qF "$syscfg" "$T/err" || fail "the message does not name $syscfg: $(cat "$T/err")"
	[ -e "$T/rootdata" ] && fail "root's data directory was created"
	[ -e "$T/users/$user/.local" ] && fail "something was written into $user's home"
	syscfg_ours=true
fi

# --- [system] deliver-to -----------------------------------------------------
if $syscfg_ours; then
	made_dir=false
	if [ ! -d "${syscfg%/*}" ]; then
		mkdir -p "${syscfg%/*}"
		made_dir=true
	fi
	on_exit "rm -f '$syscfg'"
	$made_dir && on_exit "rmdir '${syscfg%/*}' 2>/dev/null"

	check "root's cron mail goes to the deliver-to user's queue, owned by that user"
	printf '[system]\ndeliver-to = %s\n' "$user" >"$syscfg"
	as_root -FCronDaemon -i -B8BITMIME -oem root <"$T/in"
	expect_ok
	Q=$T/users/$user/.local/share/outbox
	if single_msg; then
		expect_envelope_sane "$M"
		expect_env "$M" user "$user"
		expect_env "$M" rcpt root
		expect_env "$M" fullname CronDaemon
		expect_body "$M" "$T/in"
		for f in "$Q" "$Q/msg" "$Q/tmp" "$Q/state" "$M"; do
			[ "$(stat -c %u "$f")" = "$uid" ] || fail "$f is owned by UID $(stat -c %u "$f"), not $user"
		done
		[ "$(stat -c %a "$Q")" = 700 ] || fail "the queue directory has mode $(stat -c %a "$Q")"
		[ "$(stat -c %u "$T/users/$user/.local/share")" = "$uid" ] || fail "~/.local/share is not owned by $user"
	fi
	[ -e "$T/rootdata" ] && fail "root's own XDG_DATA_HOME was used"

	check "root's -t mail (mdadm) goes to the deliver-to user too"
	printf 'From: mdadm monitoring <root>\nTo: root\nSubject: Fail event\n\nA Fail event\n' >"$T/in.t"
	as_root -t <"$T/in.t"
	expect_ok
	expect_count 1
	Q=$XDG_DATA_HOME/outbox

	check "root with a configuration of its own uses its own queue"
	before=$(ls -A "$T/users/$user/.local/share/outbox/msg" | wc -l)
	rc=0
	"$SM" -i root <"$T/in" >"$T/out" 2>"$T/err" || rc=$?
	expect_ok
	single_msg && expect_env "$M" user root
	[ "$(ls -A "$T/users/$user/.local/share/outbox/msg" | wc -l)" -eq "$before" ] ||
		fail "the deliver-to user's queue changed"

	# bad_system NAME CONTENT: root's mail with this system configuration is refused with 78.
	bad_system() {
		check "system configuration: $1: exit 78"
		printf '%s' "$2" >"$syscfg"
		before=$(ls -A "$T/users/$user/.local/share/outbox/msg" | wc -l)
		as_root -i root <"$T/in"
		expect_rc 78
		expect_one_error_line
		grep -qF "$syscfg" "$T/err" || fail "the message does not name $syscfg: $(cat "$T/err")"
		[ "$(ls -A "$T/users/$user/.local/share/outbox/msg" | wc -l)" -eq "$before" ] ||
			fail "a message was queued"
	}
	bad_system "no such user" $'[system]\ndeliver-to = nosuchuser-obx\n'
	bad_system "deliver-to root" $'[system]\ndeliver-to = root\n'
	bad_system "not a user name" $'[system]\ndeliver-to = a/b\n'
	bad_system "not a key file" $'this is not\na key file\n'

	check "system configuration without deliver-to: exit 75"
	printf '[system]\n' >"$syscfg"
	as_root -i root <"$T/in"
	expect_rc 75
	expect_one_error_line
	rm -f "$syscfg"
fi

# --- system users --------------------------------------------------------------
check "daemon (UID 1) without a configuration: exit 75, nothing written"
mkdir -p "$T/daemonhome"
chown daemon: "$T/daemonhome"
as_user daemon "$T/daemonhome" -i root <"$T/in"
expect_rc 75
expect_one_error_line
[ -z "$(ls -A "$T/daemonhome")" ] || fail "files were made in daemon's home: $(ls -A "$T/daemonhome")"

check "daemon with its real home (/usr/sbin), as under cron: exit 75"
had_local=false
[ -e /usr/sbin/.local ] && had_local=true
as_user daemon /usr/sbin -i root <"$T/in"
expect_rc 75
expect_one_error_line
$had_local || { [ -e /usr/sbin/.local ] && fail "/usr/sbin/.local was created"; }

check "a throwaway system user without a configuration: exit 75"
new_user "$sysuser" -r || finish
[ "$(id -u "$sysuser")" -lt 1000 ] || fail "useradd -r gave UID $(id -u "$sysuser")"
as_user "$sysuser" "$T/users/$sysuser" -t <"$T/in.t"
expect_rc 75
expect_one_error_line
[ -e "$T/users/$sysuser/.local" ] && fail "a queue was made for $sysuser"

check "the same system user with a configuration queues its mail"
mkdir -p "$T/users/$sysuser/.config/outbox"
printf '[account]\naddress = alice@gmail.com\n' >"$T/users/$sysuser/.config/outbox/config"
chown -R "$sysuser": "$T/users/$sysuser/.config"
as_user "$sysuser" "$T/users/$sysuser" -t <"$T/in.t"
expect_ok
Q=$T/users/$sysuser/.local/share/outbox
if single_msg; then
	expect_env "$M" user "$sysuser"
	expect_env "$M" rcpt root
	expect_body "$M" "$T/in.t"
fi
Q=$XDG_DATA_HOME/outbox

check "a desktop user (UID >= 1000) without a configuration still queues"
[ "$uid" -ge 1000 ] || fail "useradd gave $user UID $uid"
rm -rf "$T/users/$user/.local"
as_user "$user" "$T/users/$user" -i someone@example.org <"$T/in"
expect_ok
Q=$T/users/$user/.local/share/outbox
single_msg && expect_env "$M" user "$user"
Q=$XDG_DATA_HOME/outbox

finish
