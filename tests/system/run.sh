#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The system test: outbox as a user meets it, in a Debian 12 container booted
# with systemd-nspawn -b. A real systemd user manager (socket activation,
# Type=notify, the timer, reload, the sandbox), a real logind session, a real
# gnome-keyring, the real cron daemon and journald; the TLS test server of
# tests/server inside the container stands in for Gmail.
#
# Usage: run.sh BUILD_ROOT   (meson's build directory; run by meson test --suite system)
#
# Stages: a minimal bookworm root filesystem (debootstrap, the mirror read
# from /etc/apt/sources.list.d/debian.sources; cached in
# BUILD_ROOT/tests/system unless OUTBOX_SYSTEM_TEST_CACHE=0), outbox built
# with --prefix=/usr -Dsbin-links=true and meson-installed into it (on an
# overlay, so the cache stays clean), boot, then one PASS or FAIL line per
# assertion. Needs root, namespaces, a writable cgroupfs, systemd-nspawn and
# debootstrap; exits 77 (skipped) with the reason when it cannot make a
# container. Every container, mount, cgroup and temporary directory goes on
# every exit path; a guard process finishes the cleanup when this script is
# killed outright (meson sends SIGKILL 0.5 s after SIGTERM).

# The scripts run in the container are single-quoted on purpose.
# shellcheck disable=SC2016

set -uo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)

SUITE=bookworm
# outbox's runtime libraries, the real components the test talks to, and
# python3-cffi-backend, which debootstrap cannot find through the virtual
# package python3-cryptography depends on.
PACKAGES=(libglib2.0-0 libsystemd0 libgnutls30 libgsasl18 libsecret-1-0 gnome-keyring libsecret-tools
	dbus-user-session cron python3 python3-cryptography python3-cffi-backend systemd systemd-sysv dbus
	iproute2 procps)
RECIPE=1	# changes to how the root filesystem is made bump this (it keys the cache)

USER_NAME=alice
ACCOUNT=alice@gmail.com
APP_PASSWORD_SHOWN='abcd efgh ijkl mnop'	# as Gmail shows it: outbox drops the spaces
APP_PASSWORD=abcdefghijklmnop
KEYRING_PASSWORD=alice-login-password
LIB=/usr/local/lib/outbox-test		# in the container: the test server and helpers
DATA=/var/lib/outbox-test		# in the container: certificates, maildir, server log
LOGIN_COLLECTION=/org/freedesktop/secrets/collection/login

now_us() { echo "${EPOCHREALTIME/./}"; }
secs() { printf '%d.%d' $(($1 / 1000000)) $(($1 % 1000000 / 100000)); }
log() { printf '%s\n' "$*"; }

# A process that is there and not a zombie.
alive() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# ---- cleanup (shared by the script's exit trap and the guard) ----

# Everything made is listed in $WORK/state as it is made, so that the guard
# can undo it when this script is killed.
state() { printf '%s=%q\n' "$1" "$2" >>"$WORK/state"; eval "$1=\$2"; }

stop_container() {
	alive "${NSPAWN_PID:-}" && [ "$(cat "/proc/$NSPAWN_PID/comm" 2>/dev/null)" = systemd-nspawn ] || return 0
	kill -TERM "$NSPAWN_PID" 2>/dev/null	# nspawn powers the container off
	for _ in $(seq 100); do
		alive "$NSPAWN_PID" || break
		sleep 0.1
	done
	if alive "$NSPAWN_PID"; then
		log "the container did not power off in 10 s: killing it"
		[ -n "${CPID:-}" ] && kill -KILL "$CPID" 2>/dev/null
		kill -KILL "$NSPAWN_PID" 2>/dev/null
	fi
	[ "${GUARD:-0}" = 1 ] || wait "$NSPAWN_PID" 2>/dev/null
}

remove_cgroups() {
	local top p
	for top in ${CGROUPS:-}; do
		[ -d "$top" ] || continue
		for _ in $(seq 50); do
			p=$(find "$top" -name cgroup.procs -exec cat {} + 2>/dev/null)
			[ -z "$p" ] && break
			# shellcheck disable=SC2086
			kill -KILL $p 2>/dev/null
			sleep 0.1
		done
		# nspawn --keep-unit leaves payload/ and supervisor/ here: deepest first.
		find "$top" -depth -type d -exec rmdir {} + 2>/dev/null
		[ -d "$top" ] && log "cannot remove the cgroup $top"
	done
}

cleanup() {
	local p m d
	for p in ${DEBOOTSTRAP_PID:-} ${BUILD_PID:-}; do
		alive "$p" && kill -TERM "$p" 2>/dev/null
	done
	stop_container
	for p in ${DEBOOTSTRAP_PID:-} ${BUILD_PID:-}; do
		[ "${GUARD:-0}" = 1 ] || wait "$p" 2>/dev/null
	done
	remove_cgroups
	# Mounts under our directories: the overlay, anything a killed debootstrap left.
	for d in "${WORK:-}" "${ROOTFS_NEW:-}"; do
		[ -n "$d" ] || continue
		findmnt -rn -o TARGET | awk -v d="$d" 'index($0, d "/") == 1 || $0 == d' | sort -r |
			while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
	done
	# nspawn keeps these in /run/systemd/nspawn; /run is not always a tmpfs. Ours only.
	if [ -n "${MACHINE:-}" ]; then
		rm -rf "/run/systemd/nspawn/propagate/$MACHINE" "/run/systemd/nspawn/unix-export/$MACHINE"
		[ -n "${NSPAWN_LOCK:-}" ] && rm -f "/run/systemd/nspawn/locks/$NSPAWN_LOCK"
		if [ "${NSPAWN_RUN_MADE:-0}" = 1 ]; then
			for d in propagate unix-export locks ""; do
				rmdir "/run/systemd/nspawn/$d" 2>/dev/null
			done
		fi
	fi
	[ -n "${ROOTFS_NEW:-}" ] && rm -rf --one-file-system "$ROOTFS_NEW"
	if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
		find "$WORK" -mindepth 1 -maxdepth 1 ! -name state -exec rm -rf --one-file-system {} +
		rm -f "$WORK/state"
		rmdir "$WORK" 2>/dev/null || log "could not remove $WORK entirely"
	fi
}

# run.sh --guard WORK PID: waits for PID (this script) to end, then cleans up
# whatever its state file still lists. Started in its own session, so that a
# signal to the test's process group does not reach it.
if [ "${1:-}" = --guard ]; then
	trap '' INT TERM HUP PIPE
	WORK=$2
	GUARD=1
	while alive "$3"; do sleep 0.5; done
	[ -f "$WORK/state" ] || exit 0
	# shellcheck disable=SC1091
	. "$WORK/state"
	cleanup
	exit 0
fi

skip() { log "SKIP: $*"; exit 77; }

BUILD_ROOT=${1:-}
if [ -z "$BUILD_ROOT" ] || [ ! -d "$BUILD_ROOT" ]; then
	log "usage: $0 BUILD_ROOT"
	exit 99
fi
BUILD_ROOT=$(cd "$BUILD_ROOT" && pwd)

# ---- can a container be made here? ----
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, systemd-nspawn, cgroups)"
for p in systemd-nspawn nsenter unshare findmnt setsid; do
	command -v "$p" >/dev/null || skip "$p is not installed (package systemd-container / util-linux)"
done
# shellcheck disable=SC1091
. /etc/os-release
[ "${VERSION_CODENAME:-}" = "$SUITE" ] ||
	skip "the built programs link against this system's libraries and must run in Debian $SUITE; this is ${PRETTY_NAME:-unknown}"
unshare --mount --pid --net --uts --ipc --fork true 2>/dev/null ||
	skip "cannot create namespaces here (an unprivileged container?)"

# The mounts of this run live in a private mount namespace: they go with it.
if [ -z "${OUTBOX_SYSTEM_TEST_NS:-}" ]; then
	export OUTBOX_SYSTEM_TEST_NS=1
	exec unshare --mount --propagation private -- "$BASH" "$0" "$@"
fi

MESON=${MESON:-meson}
command -v "$MESON" >/dev/null || skip "meson is not installed"
unset MALLOC_PERTURB_

# The cgroups to start nspawn in, one per hierarchy this process is in
# (cgroup2 and the named systemd hierarchy; both on a hybrid layout).
CGROUP_NAME=outbox-system-test-$$
cgroup_dirs=()
while IFS=: read -r _ ctrl path; do
	case $ctrl in
	"") base=$(findmnt -rn -t cgroup2 -o TARGET | head -n 1) ;;
	name=systemd) base=$(findmnt -rn -t cgroup -o TARGET,OPTIONS | awk '$2 ~ /(^|,)name=systemd(,|$)/ { print $1; exit }') ;;
	*) continue ;;
	esac
	[ -n "$base" ] && cgroup_dirs+=("$base${path%/}/$CGROUP_NAME")
done </proc/self/cgroup
[ ${#cgroup_dirs[@]} -gt 0 ] || skip "no cgroup2 or systemd cgroup hierarchy is mounted"

# ---- stages, results ----
STAGE='' STAGE_T0='' TIMINGS=() PASSED=0 FAILED=0 T_START=$(now_us)

stage_end() {
	[ -n "$STAGE" ] || return 0
	local dt=$(($(now_us) - STAGE_T0))
	TIMINGS+=("$(printf '%-52s %6s s' "$STAGE" "$(secs "$dt")")")
	log "   ($STAGE: $(secs "$dt") s)"
	STAGE=
}
stage() {
	stage_end
	STAGE=$1
	STAGE_T0=$(now_us)
	log "== $1"
}
pass() { log "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { log "FAIL: $*"; FAILED=$((FAILED + 1)); }
# A step without which nothing after it can be checked.
die() {
	fail "$*"
	exit 1
}
show() { sed 's/^/    | /'; }

on_exit() {
	local rc=$?
	trap - EXIT
	trap '' INT TERM
	stage cleanup
	cleanup
	stage_end
	log ""
	log "Timings:"
	printf '  %s\n' "${TIMINGS[@]}"
	log "  $(printf '%-52s %6s s' total "$(secs $(($(now_us) - T_START)))")"
	[ "$rc" = 77 ] && exit 77
	log "$PASSED passed, $FAILED failed"
	[ "$rc" = 0 ] && [ "$FAILED" -gt 0 ] && rc=1
	exit "$rc"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/outbox-system-test.XXXXXX") || exit 99
chmod 755 "$WORK"
: >"$WORK/state"
state WORK "$WORK"
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM
setsid "$BASH" "$0" --guard "$WORK" "$$" </dev/null >/dev/null 2>&1 &

for d in "${cgroup_dirs[@]}"; do
	mkdir "$d" 2>/dev/null || skip "no write access to the cgroup file system ($d)"
	state CGROUPS "${CGROUPS:+$CGROUPS }$d"
done

# ---- the mirror (never written into a kept file or log) ----
MIRROR='' MIRROR_KEYRING=''
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
	IFS=$'\t' read -r MIRROR MIRROR_KEYRING < <(awk -v suite="$SUITE" '
		BEGIN { RS = ""; FS = "\n" }
		{
			u = ""; s = ""; k = ""
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^URIs:/) { u = $i; sub(/^URIs:[ \t]*/, "", u) }
				else if ($i ~ /^Suites:/) { s = $i " " }
				else if ($i ~ /^Signed-By:/) { k = $i; sub(/^Signed-By:[ \t]*/, "", k) }
			}
			if (index(s, " " suite " ") && u != "") { split(u, a, " "); print a[1] "\t" k; exit }
		}' /etc/apt/sources.list.d/debian.sources)
fi
MIRROR_HOST=$(printf '%s' "$MIRROR" | sed -E 's|^[a-z+]+://([^/:@]*@)?([^/:]+).*|\2|')
[ -f "$MIRROR_KEYRING" ] || MIRROR_KEYRING=
# Lines that may carry the mirror's address (debootstrap's output) pass through this.
mask() {
	M="$MIRROR" H="$MIRROR_HOST" awk '
		function cut(s, m,   i) {
			while (m != "" && (i = index(s, m)) > 0)
				s = substr(s, 1, i - 1) "<mirror>" substr(s, i + length(m))
			return s
		}
		{ print cut(cut($0, ENVIRON["M"]), ENVIRON["H"]); fflush() }'
}

# ---- build outbox for /usr, beside the root filesystem ----
# In the background, while the root filesystem is made.
(
	t0=$(now_us)
	"$MESON" setup "$WORK/build" "$SRC" --prefix=/usr -Dsbin-links=true -Dman=disabled -Dcompletions=false &&
		"$MESON" compile -C "$WORK/build"
	rc=$?
	secs $(($(now_us) - t0)) >"$WORK/build.time"
	exit $rc
) >"$WORK/build.log" 2>&1 &
state BUILD_PID $!

# ---- the root filesystem ----
cache_key=$(printf '%s\n' "$RECIPE" "$SUITE" "${PACKAGES[@]}" | sha256sum | cut -c1-16)
CACHE=${OUTBOX_SYSTEM_TEST_CACHE:-1}
grep -qw overlay /proc/filesystems || CACHE=0	# the cache is only ever mounted read-only under an overlay
CACHE_DIR=$BUILD_ROOT/tests/system
LOWER=
if [ "$CACHE" = 1 ] && [ -d "$CACHE_DIR/rootfs-$cache_key/usr" ]; then
	stage "root filesystem (cached); build outbox"
	LOWER=$CACHE_DIR/rootfs-$cache_key
	log "   $LOWER"
else
	stage "root filesystem (debootstrap); build outbox"
	command -v debootstrap >/dev/null || skip "debootstrap is not installed"
	[ -n "$MIRROR" ] || skip "no $SUITE mirror in /etc/apt/sources.list.d/debian.sources"
	if [ "$CACHE" = 1 ]; then
		mkdir -p "$CACHE_DIR"
		state ROOTFS_NEW "$CACHE_DIR/rootfs-new.$$"
		new=$ROOTFS_NEW
	else
		new=$WORK/rootfs
	fi
	mkdir -p "$new/etc/dpkg/dpkg.cfg.d"
	# Faster: no fsync per file, no documentation, no icons (only the index files dpkg scripts need).
	printf '%s\n' force-unsafe-io 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' \
		'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/locale/*' \
		'path-exclude=/usr/share/icons/*/*/*' >"$new/etc/dpkg/dpkg.cfg.d/outbox-test"
	proxy=$(apt-config shell P Acquire::http::Proxy 2>/dev/null | sed -n "s/^P='\(.*\)'$/\1/p")
	log "   $(IFS=,; echo "${PACKAGES[*]}")"
	# Its own mount namespace: the proc and sys mounts it makes go when it goes.
	http_proxy=${http_proxy:-$proxy} unshare --mount --propagation private -- \
		debootstrap --variant=minbase ${MIRROR_KEYRING:+--keyring="$MIRROR_KEYRING"} \
		--include="$(IFS=,; echo "${PACKAGES[*]}")" "$SUITE" "$new" "$MIRROR" \
		</dev/null > >(mask >"$WORK/debootstrap.log") 2>&1 &
	state DEBOOTSTRAP_PID $!
	wait "$DEBOOTSTRAP_PID"
	rc=$?
	state DEBOOTSTRAP_PID ""
	if [ "$rc" != 0 ]; then
		tail -n 15 "$WORK/debootstrap.log" | show
		[ -f "$new/debootstrap/debootstrap.log" ] && tail -n 25 "$new/debootstrap/debootstrap.log" | mask | show
		die "debootstrap failed (status $rc)"
	fi
	log "   $(grep -c '^I: Retrieving' "$WORK/debootstrap.log") packages retrieved, $(du -sh "$new" | cut -f1)"
	# What debootstrap recorded of the mirror, and what it copied from this host.
	rm -f "$new/etc/apt/sources.list" "$new/var/log/bootstrap.log" "$new/etc/dpkg/dpkg.cfg.d/outbox-test"
	rm -rf "$new/var/lib/apt/lists" "$new/var/cache/apt/archives"
	mkdir -p "$new/var/lib/apt/lists/partial" "$new/var/cache/apt/archives/partial"
	echo outbox-test >"$new/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\toutbox-test\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$new/etc/hosts"
	: >"$new/etc/resolv.conf"
	if grep -rqsF -e "$MIRROR" -e "$MIRROR_HOST" "$new/etc" "$new/var"; then
		die "the mirror's address is still in the root filesystem (etc or var)"
	fi
	if [ "$CACHE" = 1 ]; then
		rm -rf --one-file-system "$CACHE_DIR"/rootfs-[0-9a-f]*
		mv "$new" "$CACHE_DIR/rootfs-$cache_key"
		state ROOTFS_NEW ""
		LOWER=$CACHE_DIR/rootfs-$cache_key
	else
		LOWER=$new
	fi
fi

stage "wait for the build"
wait "$BUILD_PID"
rc=$?
state BUILD_PID ""
if [ "$rc" != 0 ]; then
	tail -n 30 "$WORK/build.log" | show
	die "building outbox with --prefix=/usr failed"
fi
log "   (outbox built in $(cat "$WORK/build.time") s, alongside the root filesystem)"

# ---- install outbox into the container's root ----
stage "install (meson install, DESTDIR on an overlay)"
ROOT=$WORK/root
mkdir -p "$ROOT" "$WORK/upper" "$WORK/overlay-work"
if ! mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$WORK/upper,workdir=$WORK/overlay-work" "$ROOT"; then
	[ "$LOWER" = "$WORK/rootfs" ] || die "cannot mount an overlay on the cached root filesystem"
	rmdir "$ROOT"
	ROOT=$LOWER
fi
DESTDIR=$ROOT "$MESON" install -C "$WORK/build" --no-rebuild --quiet >"$WORK/install.log" 2>&1 || {
	show <"$WORK/install.log"
	die "meson install into the root filesystem failed"
}
for f in usr/bin/outbox usr/bin/outbox-sendmail usr/libexec/outboxd usr/libexec/outbox-desktop \
	usr/lib/systemd/user/outbox.socket \
	usr/lib/systemd/user/outbox.service usr/lib/systemd/user/outbox.timer; do
	[ -e "$ROOT/$f" ] || die "meson install did not install /$f"
done
[ "$(readlink "$ROOT/usr/sbin/sendmail")" = /usr/bin/outbox-sendmail ] ||
	die "/usr/sbin/sendmail is not outbox (-Dsbin-links=true)"
mkdir -p "$ROOT$LIB" "$ROOT/etc/outbox"
cp "$SRC/tests/server/smtpd.py" "$HERE/keyring-unlock.py" "$ROOT$LIB/"
# root's mail (cron, system programs) goes to the user's queue.
printf '[system]\ndeliver-to = %s\n' "$USER_NAME" >"$ROOT/etc/outbox/config"

# ---- boot ----
stage "boot (systemd-nspawn -b)"
state MACHINE "outbox-test-$$"
[ -d /run/systemd/nspawn ] || state NSPAWN_RUN_MADE 1
state NSPAWN_LOCK "inode-$(stat -c '%d:%i' "$ROOT")"
(
	for d in $CGROUPS; do echo "$BASHPID" >"$d/cgroup.procs" || exit 1; done
	exec setsid systemd-nspawn --quiet -D "$ROOT" -b -M "$MACHINE" --register=no --keep-unit \
		--private-network --link-journal=no --console=read-only --resolv-conf=off --timezone=off
) </dev/null >"$WORK/console.log" 2>&1 &
state NSPAWN_PID $!

# The container's PID 1: nspawn's child in another PID namespace.
find_init() {
	local c
	for c in $(pgrep -P "$NSPAWN_PID"); do
		if [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] &&
			[ "$(readlink "/proc/$c/ns/pid")" != "$(readlink /proc/self/ns/pid)" ]; then
			CPID=$c
			return 0
		fi
	done
	return 1
}
wait_for() {	# wait_for SECONDS CMD...: CMD every 0.2 s until it succeeds
	local end=$(($(now_us) + $1 * 1000000))
	shift
	until "$@"; do
		[ "$(now_us)" -lt "$end" ] || return 1
		sleep 0.2
	done
}
boot_failed() {
	tail -n 25 "$WORK/console.log" | show
	die "$1"
}
wait_for 30 find_init || boot_failed "no container init after 30 s"
state CPID "$CPID"
# ct CMD...: runs CMD as root inside the container, with a clean environment.
ct() {
	nsenter -t "$CPID" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		LANG=C.UTF-8 "$@"
}
wait_for 30 ct test -S /run/systemd/private || boot_failed "the container's systemd did not come up"
sysstate=$(ct timeout 90 systemctl is-system-running --wait 2>&1)
case $sysstate in
running) log "   system running" ;;
degraded) log "   system degraded:"; ct systemctl --failed --no-legend | show ;;
*) boot_failed "the container did not finish booting: $sysstate" ;;
esac
missing=$(ct sh -c 'ldd /usr/bin/outbox /usr/bin/outbox-sendmail /usr/libexec/outbox-sendmail-config \
	/usr/libexec/outboxd /usr/libexec/outbox-desktop |
	grep "not found"')
[ -z "$missing" ] || { show <<<"$missing"; die "outbox's libraries are missing in the container"; }

# ---- the test server and the user ----
stage "test server, user with lingering"
# nspawn puts a FIFO over /proc/kmsg: with it, units with PrivateUsers= and
# ProtectKernelLogs= (outbox.service) fail with 226/NAMESPACE in the container only.
ct sh -c 'if findmnt /proc/kmsg >/dev/null; then umount /proc/kmsg; fi'
ct mkdir -p "$DATA"
ct /usr/bin/python3 "$LIB/smtpd.py" gen-certs "$DATA/certs" >/dev/null || die "smtpd.py gen-certs failed"
ct systemd-run --quiet --unit=outbox-test-smtpd --property=Type=exec /usr/bin/python3 "$LIB/smtpd.py" serve \
	--cert-dir "$DATA/certs" --maildir "$DATA/mail" --port-file "$DATA/port" --log "$DATA/smtpd.log" \
	--user "$ACCOUNT" --password "$APP_PASSWORD" || die "cannot start the test server"
wait_for 15 test -s "$ROOT$DATA/port" || {
	ct journalctl -u outbox-test-smtpd --no-pager | tail -n 20 | show
	die "the test server did not start"
}
PORT=$(cat "$ROOT$DATA/port")
MAILDIR=$ROOT$DATA/mail
CA=$DATA/certs/ca.pem
log "   TLS server on localhost:$PORT, CA $CA"

ct useradd --create-home --shell /bin/bash "$USER_NAME" || die "useradd failed"
UID_=$(ct id -u "$USER_NAME")
ct loginctl enable-linger "$USER_NAME" || die "loginctl enable-linger failed"
wait_for 30 ct systemctl -q is-active "user@$UID_.service" || die "user@$UID_.service did not start (lingering)"

# as_user SCRIPT [INPUT]: SCRIPT (bash) in a logind session of the user, as
# a login makes it (runuser -l under systemd-run: XDG_RUNTIME_DIR, the session
# bus), INPUT on its standard input. Output in $OUT; status SCRIPT's.
# systemd-run --wait can return 0 when the container goes away under it: the
# status line the script prints last is required.
as_user() {
	local st
	OUT=$(printf '%s' "${2-}" | ct systemd-run --quiet --wait --pipe --collect --service-type=exec \
		runuser -l "$USER_NAME" -c "("$'\n'"$1"$'\n)\necho "@status=$?"' 2>&1)
	if [[ $OUT != *@status=* ]]; then
		OUT+=$'\n(the session ended without a status)'
		return 255
	fi
	st=${OUT##*@status=}
	OUT=${OUT%@status=*}
	OUT=${OUT%$'\n'}
	return "$st"
}
# User-side helpers, defined at the top of the scripts that need them.
KEYRING_FUNCS='
unlock() { printf %s "$1" | python3 '"$LIB"'/keyring-unlock.py; }
login_locked() {
	busctl --user get-property org.freedesktop.secrets '"$LOGIN_COLLECTION"' \
		org.freedesktop.Secret.Collection Locked 2>/dev/null | sed -n "s/^b //p"
}
'
# stored TEXT: the numbers of the messages the server holds that contain TEXT.
stored() { /usr/bin/python3 "$HERE/maildir.py" find "$MAILDIR" "$1"; }
# mail_field N KEY: one field of message N (maildir.py show).
mail_field() { /usr/bin/python3 "$HERE/maildir.py" show "$MAILDIR" "$1" | sed -n "s/^$2=//p"; }
mail_show() { /usr/bin/python3 "$HERE/maildir.py" show "$MAILDIR" "$1"; }
has_mail() { [ -n "$(stored "$1")" ]; }
TOKEN=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')

# ---- outbox setup in the user's session ----
stage "outbox setup (keyring, password, socket)"
# The login keyring unlocked as pam_gnome_keyring does at login. gnome-keyring
# 42 creates the keyring on the first unlock but serves it only after a restart.
as_user "$KEYRING_FUNCS"'
IFS= read -r kpw
unlock "$kpw" || exit 1
if [ "$(login_locked)" != false ]; then
	echo "(gnome-keyring: restarting once after creating the login keyring)"
	systemctl --user restart gnome-keyring-daemon.service && unlock "$kpw" || exit 1
fi
[ "$(login_locked)" = false ] || { echo "the login keyring is still locked"; exit 1; }
outbox setup --address '"$ACCOUNT"' --host localhost --port '"$PORT"' --ca-file '"$CA"'
echo "setup-status=$?"
echo "socket=$(systemctl --user is-enabled outbox.socket)"
secret-tool lookup service outbox address '"$ACCOUNT"' host localhost >/dev/null && echo "in-keyring=yes"
echo "files-with-password=$(grep -rlsF -- '"$APP_PASSWORD"' ~ | wc -l)"
' "$KEYRING_PASSWORD"$'\n'"$APP_PASSWORD_SHOWN"$'\n'
st=$?
show <<<"$OUT"
[ "$st" = 0 ] || die "the user's session could not unlock the keyring or run outbox setup"
if grep -q '^setup-status=0$' <<<"$OUT" && grep -q '^Test message sent' <<<"$OUT" &&
	has_mail 'Subject: outbox works'; then
	pass "outbox setup (password on stdin, stored in gnome-keyring) sent its test message through localhost:$PORT"
else
	die "outbox setup did not succeed"
fi
if grep -q '^in-keyring=yes$' <<<"$OUT" && grep -q '^files-with-password=0$' <<<"$OUT"; then
	pass "the app password is in gnome-keyring (secret-tool lookup service outbox ...) and in no file under ~$USER_NAME"
else
	fail "the app password is not in the keyring under outbox's attributes, or it is in a file"
fi
if grep -q '^socket=enabled$' <<<"$OUT"; then
	pass "outbox setup enabled outbox.socket (systemctl --user is-enabled: enabled)"
else
	fail "outbox.socket is not enabled after outbox setup"
fi

# ---- systemctl --user reload ----
stage "reload"
# outboxd still runs after the test message (idle-exit is 30 s by default).
# A changed configuration: idle-exit 3 s and an alias. After the reload, the
# same process delivers to the alias and then exits when idle after 3 s.
as_user '
grep -q "^\[aliases\]" ~/.config/outbox/config || printf "\n[aliases]\n" >>~/.config/outbox/config
sed -i "/^\[aliases\]/a bob = carol@example.org" ~/.config/outbox/config
printf "\n[delivery]\nidle-exit = 3s\n" >>~/.config/outbox/config
before=$(systemctl --user show outbox.service -p MainPID --value)
echo "state-before=$(systemctl --user is-active outbox.service)"
t=$(date +%s)
systemctl --user reload outbox.service
for i in $(seq 50); do
	journalctl --user -u outbox.service --since "@$((t - 1))" -o cat | grep -q "configuration reloaded" && break
	sleep 0.2
done
journalctl --user -u outbox.service --since "@$((t - 1))" -o cat | grep "configuration reloaded"
printf "Subject: alias %s\n\nafter the reload\n" '"$TOKEN"' | sendmail bob
for i in $(seq 75); do
	[ -z "$(ls ~/.local/share/outbox/msg)" ] && break
	sleep 0.2
done
after=$(systemctl --user show outbox.service -p MainPID --value)
echo "pid-before=$before pid-after=$after"
'
st=$?
show <<<"$OUT"
n=$(stored "Subject: alias $TOKEN" | head -n 1)
if [ "$st" != 0 ]; then
	fail "reload: the steps in the session failed (status $st)"
elif ! grep -q '^state-before=active$' <<<"$OUT"; then
	fail "reload: outbox.service was not running before the reload"
elif ! grep -q 'configuration reloaded' <<<"$OUT"; then
	fail "reload: the journal does not say \"configuration reloaded\""
elif ! grep -Eq '^pid-before=([1-9][0-9]*) pid-after=\1$' <<<"$OUT"; then
	fail "reload: outbox.service was restarted instead of reloaded"
elif [ -z "$n" ] || [ "$(mail_field "$n" rcpt_tos)" != carol@example.org ]; then
	fail "reload: mail to bob did not reach carol@example.org (the alias added before the reload)"
else
	pass "systemctl --user reload outbox: the running outboxd re-read its configuration (same PID, new alias bob -> carol@example.org used)"
fi
# The new idle-exit = 3s: outboxd leaves by itself.
if wait_for 20 as_user 'systemctl --user is-active -q outbox.service && exit 1 || exit 0'; then
	pass "reload: outboxd then exited when idle, by the reloaded idle-exit = 3s"
else
	fail "reload: outbox.service still runs 20 s after the reload (idle-exit = 3s not applied?)"
fi

# ---- socket activation, Type=notify, idle exit ----
stage "sendmail -> socket activation"
as_user '
echo "before=$(systemctl --user show outbox.service -p ActiveState --value)"
printf "Subject: activation %s\n\nsocket activation\n" '"$TOKEN"' | sendmail someone@example.org
echo "sendmail-status=$?"
for i in $(seq 75); do
	[ -z "$(ls ~/.local/share/outbox/msg)" ] && break
	sleep 0.2
done
for i in $(seq 10); do
	[ "$(systemctl --user show outbox.service -p ActiveState --value)" = active ] && break
	sleep 0.1
done
systemctl --user show outbox.service -p Type -p StatusText -p ActiveState -p MainPID
echo "socket=$(systemctl --user is-active outbox.socket)"
'
show <<<"$OUT"
n=$(stored "Subject: activation $TOKEN" | head -n 1)
if ! grep -q '^before=inactive$' <<<"$OUT"; then
	fail "socket activation: outbox.service was not inactive before sendmail"
elif ! grep -q '^sendmail-status=0$' <<<"$OUT"; then
	fail "socket activation: sendmail failed"
elif [ -z "$n" ]; then
	fail "socket activation: the message did not reach the server"
elif ! grep -q '^ActiveState=active$' <<<"$OUT"; then
	fail "socket activation: outbox.service is not active after sendmail rang the doorbell"
else
	pass "sendmail someone@example.org: outbox.socket started outbox.service (inactive before) and the message reached the server"
fi
if grep -q '^Type=notify$' <<<"$OUT" && grep -Eq '^StatusText=.+' <<<"$OUT"; then
	pass "outbox.service is Type=notify with a status text ($(sed -n 's/^StatusText=//p' <<<"$OUT"))"
else
	fail "outbox.service: expected Type=notify and a StatusText"
fi
t0=$(now_us)
if wait_for 20 as_user '[ "$(systemctl --user show outbox.service -p ActiveState --value)" = inactive ]'; then
	as_user 'systemctl --user show outbox.service -p ActiveState -p Result'
	if grep -q '^Result=success$' <<<"$OUT"; then
		pass "outbox.service stopped by itself when idle (ActiveState=inactive, Result=success, $(secs $(($(now_us) - t0))) s after delivery)"
	else
		show <<<"$OUT"
		fail "outbox.service stopped, but not with Result=success"
	fi
else
	fail "outbox.service did not stop by itself within 20 s (idle-exit = 3s)"
fi

# ---- the journal ----
stage "journal"
id=$([ -n "$n" ] && mail_field "$n" Message-ID | sed -n 's/^<\([^@]*\)@.*/\1/p')
if [ -z "$id" ]; then
	fail "journal: no queue ID (the Message-ID outboxd adds) on the activation message"
else
	line_re="^$id: to=<someone@example\\.org>, relay=localhost\\[[^]]+\\]:$PORT, delay=[0-9.]+, dsn=2\\.0\\.0, status=sent \\(250 .*\\)$"
	if wait_for 10 as_user "journalctl --user -u outbox OUTBOX_ID=$id -o cat --no-pager | grep -E '$line_re'"; then
		pass "journalctl --user -u outbox OUTBOX_ID=$id: $OUT"
	else
		as_user "journalctl --user -u outbox OUTBOX_ID=$id -o cat --no-pager"
		show <<<"$OUT"
		fail "journal: no delivery line for $id in the shape \"<id>: to=<...>, relay=localhost[...]:$PORT, delay=..., dsn=2.0.0, status=sent (250 ...)\""
	fi
fi

# ---- the sandbox under the real manager ----
stage "systemd-analyze security"
as_user 'systemd-analyze security --user --no-pager outbox.service'
level=$(sed -n 's/.*Overall exposure level for outbox.service: \([0-9.]*\).*/\1/p' <<<"$OUT")
if [ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'; then
	pass "systemd-analyze security --user outbox.service: exposure $level (2.0 or lower)"
else
	tail -n 5 <<<"$OUT" | show
	fail "systemd-analyze security --user outbox.service: exposure ${level:-unknown}, above 2.0"
fi

# ---- root's mail ----
stage "root's mail (deliver-to)"
ct sh -c "printf 'Subject: root %s\n\nfrom root\n' $TOKEN | /usr/sbin/sendmail root"
st=$?
if [ "$st" != 0 ]; then
	fail "root: /usr/sbin/sendmail root exited $st"
elif ! wait_for 20 has_mail "Subject: root $TOKEN"; then
	fail "root: the message to root did not reach the server in 20 s"
else
	n=$(stored "Subject: root $TOKEN" | head -n 1)
	if [ "$(mail_field "$n" rcpt_tos)" = "$ACCOUNT" ] && [ "$(mail_field "$n" mail_from)" = "$ACCOUNT" ] &&
		[ "$(mail_field "$n" auth_user)" = "$ACCOUNT" ]; then
		pass "echo x | /usr/sbin/sendmail root (as root): delivered to $ACCOUNT through $USER_NAME's queue and credentials"
	else
		mail_show "$n" | show
		fail "root: the message arrived with the wrong envelope or account"
	fi
fi

# ---- mail queued while the user manager is stopped ----
stage "user manager stopped, mail queued, manager started"
ct systemctl stop "user@$UID_.service"
if ct systemctl -q is-active "user@$UID_.service"; then
	fail "user manager: user@$UID_.service still runs after systemctl stop"
else
	# runuser -u opens no logind session (no pam_systemd): nothing starts the manager.
	ct runuser -u "$USER_NAME" -- sh -c "printf 'Subject: down %s\n\nqueued while the manager was stopped\n' $TOKEN |
		/usr/sbin/sendmail someone@example.org"
	st=$?
	queued=$(ct sh -c "ls /home/$USER_NAME/.local/share/outbox/msg | wc -l")
	# mailq: /usr/bin/outbox-sendmail hands over to /usr/libexec/outbox-sendmail-config.
	mq=$(ct runuser -u "$USER_NAME" -- mailq 2>&1)
	case $mq in
	*someone@example.org*) pass "mailq (as $USER_NAME) lists the message waiting for the manager" ;;
	*) show <<<"$mq"; fail "mailq (as $USER_NAME) does not list the queued message" ;;
	esac
	sleep 1
	if [ "$st" != 0 ] || [ "$queued" -lt 1 ] || has_mail "Subject: down $TOKEN"; then
		fail "user manager: sendmail without a manager exited $st, queue holds $queued, sent early: $(stored "Subject: down $TOKEN")"
	else
		ct systemctl start "user@$UID_.service"
		t0=$(now_us)
		# The user logs in: the login keyring is unlocked as PAM does it.
		as_user "$KEYRING_FUNCS"'IFS= read -r kpw; unlock "$kpw"' "$KEYRING_PASSWORD"$'\n' ||
			{ show <<<"$OUT"; fail "user manager: cannot unlock the keyring at login"; }
		if wait_for 60 has_mail "Subject: down $TOKEN"; then
			dt=$(secs $(($(now_us) - t0)))
			as_user 'systemctl --user show outbox.timer -p LastTriggerUSec --value'
			if [ -n "$OUT" ] && [ "$OUT" != n/a ]; then
				pass "user manager: mail queued while user@$UID_ was stopped went out $dt s after it started, by outbox.timer (triggered $OUT)"
			else
				fail "user manager: the mail went out $dt s after the start, but outbox.timer has not triggered"
			fi
		else
			as_user 'systemctl --user list-timers --no-pager; outbox status; journalctl --user -u outbox -n 10 --no-pager'
			show <<<"$OUT"
			fail "user manager: the mail queued while it was stopped was not delivered within 60 s of its start"
		fi
	fi
fi

# ---- a locked keyring holds the queue ----
stage "keyring locked, then unlocked"
# outboxd keeps its logged-in SMTP session for a few seconds after a run, and
# mail rung in then leaves over it without the keyring: it is stopped after
# locking, so that the doorbell starts an outboxd that has to ask the keyring.
as_user "$KEYRING_FUNCS"'
busctl --user call org.freedesktop.secrets /org/freedesktop/secrets org.freedesktop.Secret.Service Lock \
	ao 1 '"$LOGIN_COLLECTION"' >/dev/null
echo "locked=$(login_locked)"
systemctl --user stop outbox.service
printf "Subject: locked %s\n\nwhile the keyring is locked\n" '"$TOKEN"' | sendmail someone@example.org
echo "sendmail-status=$?"
for i in $(seq 50); do
	systemctl --user show outbox.service -p StatusText --value | grep -q "keyring" && break
	sleep 0.2
done
echo "status-text=$(systemctl --user show outbox.service -p StatusText --value)"
echo "main-pid=$(systemctl --user show outbox.service -p MainPID --value)"
outbox status
outbox queue --json
'
show <<<"$OUT"
held=0
if ! grep -q '^locked=true$' <<<"$OUT" || ! grep -q '^sendmail-status=0$' <<<"$OUT"; then
	fail "keyring: could not lock the keyring through D-Bus, or sendmail failed"
elif ! grep -q 'Keyring: *keyring locked' <<<"$OUT" || ! grep -q '^status-text=.*locked' <<<"$OUT"; then
	fail "keyring: outbox status or the service status does not say the keyring is locked"
elif grep -q '"status":"failed"' <<<"$OUT" || ! grep -q '"status":"queued"' <<<"$OUT" ||
	has_mail "Subject: locked $TOKEN"; then
	fail "keyring: the message is not simply waiting in the queue"
else
	pass "keyring locked: outbox status says \"keyring locked\", the message waits queued, nothing failed"
	held=1
fi
# The held outboxd asked the keyring through outbox-desktop, in its sandbox.
if [ "$held" = 1 ]; then
	main=$(sed -n 's/^main-pid=//p' <<<"$OUT")
	maps=$(ct cat "/proc/${main:-0}/maps" 2>/dev/null)
	if [ -z "$maps" ]; then
		fail "keyring: cannot read the memory map of the held outboxd (PID ${main:-?})"
	elif grep -qE 'lib(secret-1|gio-2\.0|gobject-2\.0)\.' <<<"$maps"; then
		fail "keyring: the held outboxd maps $(grep -oE 'lib(secret-1|gio-2\.0|gobject-2\.0)\.[^ ]*' <<<"$maps" | sort -u | tr '\n' ' ')"
	else
		pass "keyring locked: the held outboxd learnt it through outbox-desktop and maps neither libsecret nor GIO"
	fi
fi
# Unlocked in any case: other checks' mail waits for it too.
as_user "$KEYRING_FUNCS"'IFS= read -r kpw; unlock "$kpw"; echo "locked=$(login_locked)"' "$KEYRING_PASSWORD"$'\n'
t0=$(now_us)
if ! grep -q '^locked=false$' <<<"$OUT"; then
	show <<<"$OUT"
	fail "keyring: unlocking through the control socket failed"
elif [ "$held" = 1 ]; then
	if wait_for 45 has_mail "Subject: locked $TOKEN"; then
		pass "keyring unlocked: outboxd sent the held message $(secs $(($(now_us) - t0))) s later, by itself"
	else
		fail "keyring: the message was not sent within 45 s of unlocking"
	fi
fi

# ---- cron ----
stage "cron (user and root crontabs)"
cron_check() {	# cron_check WHO TEXT
	local n
	n=$(stored "$2" | head -n 1)
	if [ -z "$n" ]; then
		fail "cron ($1): no mail with \"$2\" reached the server"
		return
	fi
	if [ "$(mail_field "$n" rcpt_tos)" = "$ACCOUNT" ] && [ "$(mail_field "$n" mail_from)" = "$ACCOUNT" ] &&
		[ "$(mail_field "$n" To)" = "$ACCOUNT" ] && [[ $(mail_field "$n" From) == *"$ACCOUNT"* ]] &&
		[ "$(mail_field "$n" received)" = 0 ]; then
		pass "cron ($1): \"$(mail_field "$n" Subject)\" arrived to $ACCOUNT from $(mail_field "$n" From), no Received: header"
	else
		mail_show "$n" | show
		fail "cron ($1): the mail arrived with the wrong addresses or a Received: header"
	fi
}
# Last, because cron's mail rings the doorbell: under the checks above it
# would start outbox.service that they need to see start on its own. Cron
# runs the jobs at the next full minute.
if [ "$(ct readlink -f /usr/sbin/sendmail)" != /usr/bin/outbox-sendmail ]; then
	fail "cron: /usr/sbin/sendmail is not outbox"
fi
ct sh -c "echo '* * * * * echo rootcron-$TOKEN' | crontab -" || fail "cannot install root's crontab"
ct runuser -u "$USER_NAME" -- sh -c "echo '* * * * * echo usercron-$TOKEN' | crontab -" ||
	fail "cannot install the user's crontab"
t0=$(now_us)
cron_arrived() { has_mail "echo usercron-$TOKEN" && has_mail "echo rootcron-$TOKEN"; }
wait_for 80 cron_arrived
log "   (cron's mail came $(secs $(($(now_us) - t0))) s after the crontabs were installed)"
cron_check "$USER_NAME's crontab" "echo usercron-$TOKEN"
cron_check "root's crontab, deliver-to" "echo rootcron-$TOKEN"
ct crontab -r
ct crontab -u "$USER_NAME" -r

stage_end
[ "$FAILED" = 0 ]
