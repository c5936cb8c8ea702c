# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Shared by the benchmark scripts (sourced). Everything lives in one
# temporary directory, $W, removed at exit together with whatever the
# scripts started: processes, the private Postfix instance, the network
# namespaces and the delay line.
#
#   bench_init BUILD_DIR        $W, $B (a copy of the built programs), helpers compiled, outbox's env
#   at_exit CMD                 run CMD at exit (last registered runs first)
#   make_message SIZE FILE      a message of SIZE bytes (From: the account)
#   have_postfix / have_msmtp   installed and usable (root)
#   pf_setup / pf_start [NS] / pf_stop / pf_conf K=V... / pf_reload / pf_settle
#   srv_start NS LOGDIR [ARGS]  the test server (NS "" for the root namespace)
#   srv_stop                    SIGTERM, waits for --stats
#   link_up DELAY_US / link_down   the two namespaces $NS_S, $NS_C and the delay line
#   in_ns NS CMD...             CMD in namespace NS ("" : here)
#   field KEY LINE              value of KEY=... in a benchtool line

set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "${BASH_SOURCE%/*}" && pwd)
SRC_DIR=$(cd "$BENCH_DIR/../.." && pwd)
SMTPD=$SRC_DIR/tests/server/smtpd.py
SPY=/usr/bin/python3
ACCOUNT=alice@gmail.com
PW=bench-Pw-3318
RCPT=someone@example.org

_exit_hooks=()
at_exit() { _exit_hooks=("$1" "${_exit_hooks[@]}"); }
_run_exit_hooks() {
	local h
	set +e
	for h in "${_exit_hooks[@]}"; do
		eval "$h" >/dev/null 2>&1
	done
}
trap _run_exit_hooks EXIT
trap 'exit 130' INT TERM HUP

note() { printf '%s\n' "$*" >&2; }

bench_init() {
	B=$(realpath "${1:-$SRC_DIR/build}")
	[ -x "$B/src/outbox-sendmail" ] && [ -x "$B/src/outboxd" ] || {
		note "no built outbox in $B (run: meson setup build && ninja -C build)"
		exit 1
	}
	W=$(mktemp -d "${TMPDIR:-/tmp}/outbox-bench.XXXXXX")
	# Postfix's unprivileged processes must reach the private instance's files.
	chmod 755 "$W"
	at_exit 'rm -rf "$W"'
	at_exit 'pf_stop'
	at_exit 'link_down'
	at_exit 'srv_stop'
	# A snapshot of the programs under test: a rebuild during the run changes nothing.
	mkdir -p "$W/outbox/src"
	cp -p "$B/src/outbox-sendmail" "$B/src/outboxd" "$W/outbox/src/"
	B=$W/outbox
	mkdir -p "$W/bin"
	cc -O2 -o "$W/bin/floor" "$BENCH_DIR/floor.c"
	cc -O2 -o "$W/bin/runbench" "$BENCH_DIR/runbench.c"
	cc -O2 -o "$W/bin/benchtool" "$BENCH_DIR/benchtool.c"
	cc -O2 -o "$W/bin/tundelay" "$BENCH_DIR/tundelay.c"
	BT=$W/bin/benchtool

	export HOME=$W/home XDG_DATA_HOME=$W/home/data XDG_CONFIG_HOME=$W/home/config XDG_RUNTIME_DIR=$W/home/run
	unset XDG_STATE_HOME XDG_CACHE_HOME MAILRC
	mkdir -p "$HOME" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME/outbox" "$XDG_RUNTIME_DIR"
	chmod 700 "$HOME" "$XDG_RUNTIME_DIR"
	Q=$XDG_DATA_HOME/outbox
	printf '[account]\naddress = %s\n' "$ACCOUNT" >"$XDG_CONFIG_HOME/outbox/config"
}

make_message() {	# SIZE FILE
	{
		printf 'From: %s\nTo: %s\nSubject: bench\nMessage-ID: <bench-%s@example.org>\n\n' \
			"$ACCOUNT" "$RCPT" "$1"
		head -c $(($1 * 3 / 4)) /dev/urandom | base64 -w 76
	} >"$2"
	truncate -s $(($1 - 1)) "$2"
	printf '\n' >>"$2"
}

field() {	# KEY LINE
	local kv
	for kv in $2; do
		[ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }
	done
	echo "?"
}

in_ns() {	# NS CMD...
	local ns=$1
	shift
	if [ -n "$ns" ]; then
		ip netns exec "$ns" "$@"
	else
		"$@"
	fi
}

# --- the test server -------------------------------------------------------

CERTS=
certs() {
	[ -n "$CERTS" ] && return
	CERTS=$W/certs
	"$SPY" "$SMTPD" gen-certs "$CERTS" >/dev/null
}

SRV_PORT=
SRV_PID=
srv_port() {
	[ -n "$SRV_PORT" ] && return
	SRV_PORT=$("$SPY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
}

# srv_start NS DIR [serve options]: a fresh server (log DIR/log, stats DIR/stats.json) on 127.0.0.1:$SRV_PORT in NS.
srv_start() {
	local ns=$1 dir=$2 i
	shift 2
	certs
	srv_port
	rm -rf "$dir"
	mkdir -p "$dir"
	: >"$dir/log"
	local cmd=("$SPY" "$SMTPD" serve --cert-dir "$CERTS" --maildir "$dir/mail" --log "$dir/log"
		--stats "$dir/stats.json" --port "$SRV_PORT" --user "$ACCOUNT" --password "$PW" --timeout 60 "$@")
	[ -n "$ns" ] && cmd=(ip netns exec "$ns" "${cmd[@]}")
	# A simple command in the background: $! is the server itself (ip netns exec execs it).
	"${cmd[@]}" >"$dir/out" 2>"$dir/err" &
	SRV_PID=$!
	for i in $(seq 100); do
		grep -q READY "$dir/out" 2>/dev/null && return 0
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	note "the test server did not start: $(cat "$dir/err")"
	exit 1
}

srv_stop() {
	[ -n "$SRV_PID" ] || return 0
	kill -TERM "$SRV_PID" 2>/dev/null || true
	wait "$SRV_PID" 2>/dev/null || true
	SRV_PID=
}

# stat_of DIR KEY: a number from the server's --stats.
stat_of() {
	"$SPY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1/stats.json" "$2" 2>/dev/null || echo "?"
}

# --- a private Postfix instance -------------------------------------------

have_postfix() {
	[ "$(id -u)" = 0 ] && [ -x /usr/sbin/postfix ] && [ -x /usr/lib/postfix/sbin/master ] &&
		dpkg -S /usr/sbin/sendmail 2>/dev/null | grep -q '^postfix:'
}
have_msmtp() { command -v msmtp >/dev/null; }

PF=
PF_NS=
pf_setup() {
	PF=$W/postfix
	mkdir -p "$PF/spool" "$PF/data"
	chown postfix "$PF/data"
	certs
	srv_port
	printf '[127.0.0.1]:%s %s:%s\n' "$SRV_PORT" "$ACCOUNT" "$PW" >"$PF/sasl_passwd"
	chmod 600 "$PF/sasl_passwd"
	cat >"$PF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.example.org
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
alias_maps =
alias_database =
maillog_file_prefixes = $PF
maillog_file = $PF/maillog
relayhost = [127.0.0.1]:$SRV_PORT
smtp_tls_wrappermode = yes
smtp_tls_security_level = encrypt
smtp_tls_CAfile = $CERTS/ca.pem
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = texthash:$PF/sasl_passwd
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
smtp_dns_support_level = disabled
smtp_host_lookup = native
defer_transports = smtp
EOF
	# Debian's services without the SMTP server and without chroot (the
	# private queue has no copies of /etc files).
	cat >"$PF/master.cf" <<'EOF'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsproxy  unix  -       -       n       -       0       tlsproxy
EOF
	postfix -c "$PF" check >/dev/null 2>&1 || true
}

pf_start() {	# [NS]
	PF_NS=${1:-}
	in_ns "$PF_NS" postfix -c "$PF" start >/dev/null 2>&1 || {
		note "postfix did not start: $(tail -3 "$PF/maillog")"
		return 1
	}
	sleep 0.5
}

pf_stop() {
	[ -n "$PF" ] && [ -f "$PF/spool/pid/master.pid" ] || return 0
	local i p procs=()
	for p in $(pf_pids); do
		procs+=("$p:$(cat "/proc/$p/comm" 2>/dev/null)")
	done
	in_ns "$PF_NS" postfix -c "$PF" stop >/dev/null 2>&1 || true
	for i in $(seq 50); do
		[ -n "$(pf_pids)" ] || break
		sleep 0.1
	done
	# A child of the master still there (same process id, same name) is ours.
	for p in "${procs[@]}"; do
		[ "$(cat "/proc/${p%%:*}/comm" 2>/dev/null)" = "${p#*:}" ] && kill -TERM "${p%%:*}" 2>/dev/null
	done
	rm -f "$PF/spool/pid/master.pid"
}

pf_conf() { postconf -c "$PF" -e "$@"; }
pf_unset() { postconf -c "$PF" -X "$@"; }
pf_reload() {
	in_ns "$PF_NS" postfix -c "$PF" reload >/dev/null 2>&1
	sleep 1
}

# The processes of the instance: the master and its children.
pf_pids() {
	local m
	m=$(tr -d ' ' <"$PF/spool/pid/master.pid" 2>/dev/null) || return 0
	[ -n "$m" ] && kill -0 "$m" 2>/dev/null || return 0
	echo "$m"
	pgrep -P "$m" || true
}

# Messages in the private queue, by queue directory.
pf_count() {	# DIR...
	local n=0 d
	for d; do
		n=$((n + $(find "$PF/spool/$d" -type f 2>/dev/null | wc -l)))
	done
	echo "$n"
}

# pf_settle [SECS]: waits until nothing is on its way into the queue (maildrop, incoming, active).
pf_settle() {
	local end=$((SECONDS + ${1:-30}))
	while [ "$(pf_count maildrop incoming active)" -gt 0 ]; do
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.02
	done
}

# --- the 20 ms link -----------------------------------------------------------

NS_S=
NS_C=
TD_PID=
# link_up DELAY_US: namespaces $NS_S (server side) and $NS_C (clients) joined by
# two TUN devices and the delay line. Each side sees the other as a loopback
# address (the test server only listens on loopback): in $NS_C, 127.0.0.1 is
# the server across the link and the clients' address is 127.0.0.2.
link_up() {
	local d=$1 tag=$$
	NS_S=obench-s-$tag
	NS_C=obench-c-$tag
	ip netns add "$NS_S"
	ip netns add "$NS_C"
	# BENCH_TRACE=FILE: the delay line writes every TCP segment there (see tundelay.c).
	"$W/bin/tundelay" obs$tag obc$tag "$d" ${BENCH_TRACE:+"$BENCH_TRACE"} >"$W/tundelay.out" 2>"$W/tundelay.err" &
	TD_PID=$!
	local i
	for i in $(seq 50); do
		grep -q READY "$W/tundelay.out" && break
		sleep 0.05
	done
	grep -q READY "$W/tundelay.out" || { note "tundelay: $(cat "$W/tundelay.err")"; return 1; }
	ip link set obs$tag netns "$NS_S"
	ip link set obc$tag netns "$NS_C"
	ip netns exec "$NS_S" sh -e -c "
		sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.all.rp_filter=0
		sysctl -qw net.ipv6.conf.all.disable_ipv6=1
		ip link set lo up
		ip addr del 127.0.0.1/8 dev lo
		ip addr add 127.0.0.1/32 dev lo
		ip link set obs$tag up
		sysctl -qw net.ipv4.conf.obs$tag.route_localnet=1
		ip route add 127.0.0.2/32 dev obs$tag"
	ip netns exec "$NS_C" sh -e -c "
		sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.all.rp_filter=0
		sysctl -qw net.ipv6.conf.all.disable_ipv6=1
		ip link set lo up
		ip addr del 127.0.0.1/8 dev lo
		ip link set obc$tag up
		sysctl -qw net.ipv4.conf.obc$tag.route_localnet=1
		ip addr add 127.0.0.2/32 dev obc$tag
		ip route add 127.0.0.1/32 dev obc$tag src 127.0.0.2"
}

link_down() {
	[ -n "$TD_PID" ] && { kill "$TD_PID" 2>/dev/null; wait "$TD_PID" 2>/dev/null || true; }
	TD_PID=
	[ -n "$NS_S" ] && ip netns del "$NS_S" 2>/dev/null
	[ -n "$NS_C" ] && ip netns del "$NS_C" 2>/dev/null
	NS_S='' NS_C=''
}

# link_rtt: TCP connect time across the link (one round trip), as benchtool prints it.
link_rtt() {
	local port=$((SRV_PORT + 1)) out
	ip netns exec "$NS_S" "$BT" listen 127.0.0.1 "$port" 11 >"$W/listen.out" 2>&1 &
	local lp=$!
	for _ in $(seq 50); do grep -q READY "$W/listen.out" && break; sleep 0.02; done
	out=$(ip netns exec "$NS_C" "$BT" connect 127.0.0.1 "$port" 11)
	wait "$lp" 2>/dev/null || true
	echo "$out"
}

# --- small statistics ----------------------------------------------------------

# stats V...: "min median max" (median of an even count: the upper middle).
stats() {
	printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%s %s %s\n", v[1], v[int(NR/2)+1], v[NR]}'
}
