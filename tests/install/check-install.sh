#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the build into a temporary DESTDIR (never into the system) and
# checks the tree: programs and their links, the user units, the man pages,
# the completions, nothing setuid or setgid, nothing outside the prefix.
#
# Usage: check-install.sh BUILDDIR
# The expected directories come from meson in the environment:
#   MESON, OUTBOX_PREFIX, OUTBOX_BINDIR, OUTBOX_SBINDIR, OUTBOX_LIBEXECDIR,
#   OUTBOX_MANDIR, OUTBOX_UNITDIR, OUTBOX_BASH_COMPLETIONS_DIR,
#   OUTBOX_ZSH_COMPLETIONS_DIR, OUTBOX_FISH_COMPLETIONS_DIR (absolute paths)
#   OUTBOX_MAN, OUTBOX_COMPLETIONS, OUTBOX_SBIN_LINKS ("true" or "false")
set -u
LC_ALL=C
export LC_ALL

build=${1:-}
[ -n "$build" ] && [ -f "$build/meson-private/install.dat" ] || {
	echo "usage: $0 BUILDDIR (a configured meson build directory)" >&2
	exit 99
}
for v in OUTBOX_PREFIX OUTBOX_BINDIR OUTBOX_SBINDIR OUTBOX_LIBEXECDIR OUTBOX_MANDIR OUTBOX_UNITDIR \
	OUTBOX_BASH_COMPLETIONS_DIR OUTBOX_ZSH_COMPLETIONS_DIR OUTBOX_FISH_COMPLETIONS_DIR; do
	eval "p=\${$v:-}"
	case $p in
	/*) ;;
	*) echo "$v must be an absolute path (got \"$p\")" >&2; exit 99 ;;
	esac
done
meson=${MESON:-meson}

T=$(mktemp -d "${TMPDIR:-/tmp}/outbox-install.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
D=$T/root
case $D in
/tmp/* | /var/tmp/* | "${TMPDIR:-/tmp}"/*) ;;
*) echo "refusing DESTDIR $D" >&2; exit 99 ;;
esac

# --destdir keeps everything under $D; meson only asks for privileges when
# there is no DESTDIR. --no-rebuild: meson test has built everything already.
if ! "$meson" install -C "$build" --destdir "$D" --no-rebuild --quiet >"$T/install.log" 2>&1; then
	echo "FAIL: meson install --destdir failed:" >&2
	cat "$T/install.log" >&2
	exit 1
fi

failed=0
fail() {
	echo "FAIL: $*" >&2
	failed=$((failed + 1))
}

# file PATH: a regular file, not empty.
file() {
	[ -f "$D$1" ] && [ ! -L "$D$1" ] && [ -s "$D$1" ] || fail "$1: missing or not a regular file"
}
# program PATH: a regular executable file.
program() {
	file "$1"
	[ -x "$D$1" ] || fail "$1: not executable"
}
# link PATH TARGET: a symbolic link with exactly this target.
link() {
	if [ ! -L "$D$1" ]; then
		fail "$1: missing or not a symbolic link"
	elif [ "$(readlink "$D$1")" != "$2" ]; then
		fail "$1: points to $(readlink "$D$1"), not $2"
	fi
}
absent() {
	[ ! -e "$D$1" ] && [ ! -L "$D$1" ] || fail "$1: installed although it should not be"
}

echo "--- programs"
program "$OUTBOX_BINDIR/outbox"
program "$OUTBOX_BINDIR/outbox-sendmail"
for n in sendmail mailq newaliases; do
	link "$OUTBOX_BINDIR/$n" outbox-sendmail
	[ -x "$D$OUTBOX_BINDIR/$n" ] || fail "$OUTBOX_BINDIR/$n does not lead to a program"
	if [ "${OUTBOX_SBIN_LINKS:-false}" = true ]; then
		link "$OUTBOX_SBINDIR/$n" "$OUTBOX_BINDIR/outbox-sendmail"
	elif [ "$OUTBOX_SBINDIR" != "$OUTBOX_BINDIR" ]; then
		absent "$OUTBOX_SBINDIR/$n"
	fi
done
program "$OUTBOX_LIBEXECDIR/outboxd"
program "$OUTBOX_LIBEXECDIR/outbox-desktop"
program "$OUTBOX_LIBEXECDIR/outbox-sendmail-config"

echo "--- the installed programs run"
h=$T/home
mkdir -p "$h" "$T/run"
chmod 700 "$T/run"
# mailq hands over to outbox-sendmail-config in LIBEXECDIR, which a DESTDIR
# does not have: the twin is run directly (the system test runs the link).
run_user() {
	HOME=$h XDG_DATA_HOME=$h/data XDG_CONFIG_HOME=$h/config XDG_RUNTIME_DIR=$T/run "$@"
}
out=$(run_user "$D$OUTBOX_LIBEXECDIR/outbox-sendmail-config" -bp 2>&1)
[ "$out" = "Mail queue is empty" ] || fail "outbox-sendmail-config -bp said: $out"
mkdir -p "$h/config/outbox"
printf '[account]\naddress = me@example.org\n' >"$h/config/outbox/config"
out=$(printf 'Subject: installed\n\nhello\n' | run_user "$D$OUTBOX_BINDIR/sendmail" -i someone@example.org 2>&1) ||
	fail "sendmail (the installed link) failed: $out"
out=$(run_user "$D$OUTBOX_LIBEXECDIR/outbox-sendmail-config" -bp 2>&1)
case $out in *someone@example.org*) ;; *) fail "outbox-sendmail-config -bp does not list the message sendmail queued: $out" ;; esac
out=$(run_user "$D$OUTBOX_BINDIR/newaliases" 2>&1) || fail "newaliases (the installed link) failed: $out"
out=$("$D$OUTBOX_BINDIR/outbox" --version 2>&1) || fail "outbox --version failed: $out"
case $out in "outbox "[0-9]*) ;; *) fail "outbox --version said: $out" ;; esac
out=$("$D$OUTBOX_LIBEXECDIR/outboxd" --version 2>&1) || fail "outboxd --version failed: $out"
out=$("$D$OUTBOX_LIBEXECDIR/outbox-desktop" --version 2>&1) || fail "outbox-desktop --version failed: $out"
"$D$OUTBOX_LIBEXECDIR/outbox-desktop" >/dev/null 2>&1
rc=$?
[ "$rc" -eq 64 ] || fail "outbox-desktop without arguments exited $rc, not 64"
out=$(DBUS_SESSION_BUS_ADDRESS=unix:path=$T/no-bus "$D$OUTBOX_LIBEXECDIR/outbox-desktop" notify test test 2>&1) ||
	fail "outbox-desktop notify without a session bus failed: $out"
# outboxd leaves the keyring and notifications to outbox-desktop; sendmail
# loads libc alone and leaves reading configuration files to its twin.
if command -v ldd >/dev/null; then
	out=$(ldd "$D$OUTBOX_LIBEXECDIR/outboxd" 2>&1 | grep -E 'lib(secret-1|gio-2\.0|gobject-2\.0)\.')
	[ -z "$out" ] || fail "outboxd loads libsecret or GIO: $out"
	# (A sanitized build also loads the sanitizers' runtimes and theirs.)
	out=$(ldd "$D$OUTBOX_BINDIR/outbox-sendmail" 2>&1 |
		grep -vE '^[[:space:]]*(linux-vdso|/lib.*/ld-linux|lib(c|asan|ubsan|m|gcc_s|stdc\+\+)\.so)')
	[ -z "$out" ] || fail "outbox-sendmail loads more than libc: $out"
fi

echo "--- user units"
for u in outbox.socket outbox.service outbox.timer; do
	file "$OUTBOX_UNITDIR/$u"
done
if [ -f "$D$OUTBOX_UNITDIR/outbox.service" ]; then
	grep -qx "ExecStart=$OUTBOX_LIBEXECDIR/outboxd" "$D$OUTBOX_UNITDIR/outbox.service" ||
		fail "outbox.service does not start $OUTBOX_LIBEXECDIR/outboxd: $(grep ExecStart "$D$OUTBOX_UNITDIR/outbox.service")"
	grep -Eq '@[A-Za-z_]+@' "$D$OUTBOX_UNITDIR/outbox.service" &&
		fail "outbox.service has an unsubstituted @variable@"
fi

echo "--- man pages"
for p in man1/outbox.1 man8/outbox-sendmail.8 man8/outboxd.8 man5/outbox.conf.5 man5/outbox-queue.5; do
	if [ "${OUTBOX_MAN:-false}" = true ]; then
		file "$OUTBOX_MANDIR/$p"
		grep -q '^\.TH ' "$D$OUTBOX_MANDIR/$p" 2>/dev/null || fail "$OUTBOX_MANDIR/$p is no man page"
	else
		absent "$OUTBOX_MANDIR/$p"
	fi
done

echo "--- completions"
if [ "${OUTBOX_COMPLETIONS:-false}" = true ]; then
	file "$OUTBOX_BASH_COMPLETIONS_DIR/outbox"
	file "$OUTBOX_BASH_COMPLETIONS_DIR/outbox-sendmail"
	link "$OUTBOX_BASH_COMPLETIONS_DIR/sendmail" outbox-sendmail
	link "$OUTBOX_BASH_COMPLETIONS_DIR/mailq" outbox-sendmail
	file "$OUTBOX_ZSH_COMPLETIONS_DIR/_outbox"
	file "$OUTBOX_FISH_COMPLETIONS_DIR/outbox.fish"
	head -n 1 "$D$OUTBOX_ZSH_COMPLETIONS_DIR/_outbox" 2>/dev/null | grep -qx '#compdef outbox' ||
		fail "_outbox does not start with #compdef outbox"
else
	for f in "$OUTBOX_BASH_COMPLETIONS_DIR/outbox" "$OUTBOX_ZSH_COMPLETIONS_DIR/_outbox" \
		"$OUTBOX_FISH_COMPLETIONS_DIR/outbox.fish"; do
		absent "$f"
	done
fi

echo "--- permissions"
bad=$(find "$D" -perm /6000 -print)
[ -z "$bad" ] || fail "setuid or setgid files: $bad"
bad=$(find "$D" ! -type l -perm -0002 -print)
[ -z "$bad" ] || fail "world-writable files: $bad"

echo "--- nothing outside the prefix and the unit directory"
find "$D" ! -type d -print | sed "s|^$D||" | sort >"$T/installed"
while IFS= read -r f; do
	case $f in
	"$OUTBOX_PREFIX"/* | "$OUTBOX_UNITDIR"/*) ;;
	*) fail "installed outside $OUTBOX_PREFIX: $f" ;;
	esac
done <"$T/installed"
echo "$(wc -l <"$T/installed") files and links installed"

if [ "$failed" -ne 0 ]; then
	echo "installed tree:" >&2
	sed 's/^/  /' "$T/installed" >&2
	echo "$failed check(s) failed" >&2
	exit 1
fi
exit 0
