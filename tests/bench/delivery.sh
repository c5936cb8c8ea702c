#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Delivery benchmark: 200 queued 10 KB messages to the TLS test server
# (tests/server/smtpd.py: implicit TLS, AUTH PLAIN, PIPELINING, CHUNKING),
# over loopback and over a 20 ms round-trip link, for
#   outbox   outboxd --once on a pre-filled queue
#   postfix  a private Postfix instance relaying with smtp_tls_wrappermode
#            and SASL (its own parallel connections; as configured by
#            default, one TLS connection per message)
#   postfix-reuse  the same with smtp_tls_connection_reuse = yes (tlsproxy
#            keeps TLS connections in Postfix's connection cache)
#   msmtp    one msmtp run per message, as msmtpq sends its queue
# run alternately, BENCH_ROUNDS (default 3) rounds each; then one message
# from an idle system (sendmail to the server's acceptance; outboxd started
# by socket activation), BENCH_IDLE_ROUNDS (default 5) rounds each; then
# memory: processes left at rest and outboxd's peak PSS.
#
#   tests/bench/delivery.sh [BUILD_DIR]
#
# Needs root (network namespaces, TUN devices, Postfix). Also run by
# tests/bench/run.sh, which installs Postfix and msmtp first.
. "$(dirname "$(realpath "$0")")/lib.sh"
[ "$(id -u)" = 0 ] || { note "delivery.sh needs root (network namespaces, TUN, Postfix)"; exit 1; }
bench_init "${1:-}"
N=${BENCH_MESSAGES:-200}
ROUNDS=${BENCH_ROUNDS:-3}
IDLE_ROUNDS=${BENCH_IDLE_ROUNDS:-5}
DELAY_US=10000		# each way: a 20 ms round trip
results=${BENCH_RESULTS:-/dev/null}

make_message 10240 "$W/10k"
certs
srv_port
cat >"$XDG_CONFIG_HOME/outbox/config" <<EOF
[account]
address = $ACCOUNT
host = 127.0.0.1
port = $SRV_PORT
ca-file = $CERTS/ca.pem
password-command = echo $PW

[delivery]
timeout = 30s
idle-exit = 1s
EOF
: >"$W/msmtprc"
chmod 600 "$W/msmtprc"

clients=(outbox)
if have_postfix; then
	clients+=(postfix postfix-reuse)
	pf_setup
	pf_start
else
	echo "Postfix: not installed; its rows are left out (tests/bench/run.sh installs it)."
fi
if have_msmtp; then
	clients+=(msmtp)
else
	echo "msmtp: not installed; its rows are left out (tests/bench/run.sh installs it)."
fi

msmtp_cmd=(msmtp -C "$W/msmtprc" --host=127.0.0.1 --port="$SRV_PORT" --tls=on --tls-starttls=off
	--tls-trust-file="$CERTS/ca.pem" --auth=plain --user="$ACCOUNT" --passwordeval="echo $PW"
	--from="$ACCOUNT" -t)

# Processes of ours with this name (our environment tells them from other people's).
ours() {
	local p
	for p in $(pgrep -x "$1" || true); do
		tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "XDG_CONFIG_HOME=$XDG_CONFIG_HOME" && echo "$p"
	done
	return 0
}

fill_outbox() {
	local i
	rm -rf "$Q"
	for i in $(seq "$N"); do
		"$B/src/outbox-sendmail" -i "$RCPT" <"$W/10k"
	done
}

# Postfix: N messages queued and put on hold, then the hold on delivery
# (defer_transports) lifted; the run releases them and flushes the queue.
fill_postfix() {	# REUSE (yes|no)
	local i
	pf_conf smtp_tls_connection_reuse="$1"
	for i in $(seq "$N"); do
		/usr/sbin/sendmail -C "$PF" -f "$ACCOUNT" -i "$RCPT" <"$W/10k"
	done
	pf_settle 60 || { note "Postfix does not settle"; return 1; }
	[ "$(pf_count deferred)" -ge "$N" ] || { note "Postfix queued $(pf_count deferred) of $N"; return 1; }
	postsuper -c "$PF" -h ALL >/dev/null 2>&1
	pf_unset defer_transports
	pf_reload
}

unfill_postfix() {
	postsuper -c "$PF" -d ALL >/dev/null 2>&1 || true
	pf_conf defer_transports=smtp smtp_tls_connection_reuse=no
	pf_reload
}

# deliver CLIENT SRV_NS CLI_NS: one timed run of N messages; prints
# "done_ms exit_ms peak_pss_kb peak_uss_kb peak_anon_kb connections auths messages".
deliver() {
	local c=$1 sns=$2 cns=$3 line
	case $c in
	outbox) fill_outbox ;;
	postfix) fill_postfix no ;;
	postfix-reuse) fill_postfix yes ;;
	esac
	srv_start "$sns" "$W/srv"
	case $c in
	outbox)
		line=$(in_ns "$cns" "$BT" run -m -o "$W/outboxd.log" -l "$W/srv/log" -n "$N" -t 300 -- \
			"$B/src/outboxd" --once) ;;
	postfix*)
		line=$(in_ns "$cns" "$BT" run -l "$W/srv/log" -n "$N" -t 300 -- \
			sh -c "postsuper -c $PF -H ALL && postqueue -c $PF -f") ;;
	msmtp)
		line=$(in_ns "$cns" "$BT" run -o "$W/msmtp.log" -l "$W/srv/log" -n "$N" -t 300 -- \
			bash -c 'f=$1; shift; for i in $(seq '"$N"'); do "$@" <"$f" || exit 1; done' _ \
			"$W/10k" "${msmtp_cmd[@]}") ;;
	esac
	case $c in postfix*) sleep 0.5 ;; esac	# let cached connections say QUIT
	srv_stop
	case $c in postfix*) unfill_postfix ;; esac
	if [ "$(field status "$line")" != 0 ] || [ "$(stat_of "$W/srv" messages)" != "$N" ]; then
		note "$c: the run failed: $line; server: $(cat "$W/srv/stats.json" 2>/dev/null | tr -d '\n ')"
		note "$(tail -5 "$W/srv/err" 2>/dev/null)"
	fi
	echo "$(field done_ms "$line") $(field exit_ms "$line") $(field peak_pss_kb "$line")" \
		"$(field peak_uss_kb "$line") $(field peak_anon_kb "$line")" \
		"$(stat_of "$W/srv" connections) $(stat_of "$W/srv" auths) $(stat_of "$W/srv" messages)"
}

SA_PID=
sa_stop() {
	[ -n "$SA_PID" ] || return 0
	kill -TERM "$SA_PID" 2>/dev/null || true
	wait "$SA_PID" 2>/dev/null || true
	SA_PID=
}
at_exit 'sa_stop'

# idle_one CLIENT SRV_NS CLI_NS: one message from an idle system, sendmail
# (or msmtp) started to the server's acceptance; prints "done_ms connections auths".
idle_one() {
	local c=$1 sns=$2 cns=$3 line sock=$XDG_RUNTIME_DIR/outbox.sock i
	srv_start "$sns" "$W/srv"
	case $c in
	outbox)
		rm -rf "$Q" "$sock"
		local sa=(systemd-socket-activate -l "$sock" -E XDG_DATA_HOME -E XDG_CONFIG_HOME
			-E XDG_RUNTIME_DIR "$B/src/outboxd")
		[ -n "$cns" ] && sa=(ip netns exec "$cns" "${sa[@]}")
		"${sa[@]}" >>"$W/sa.log" 2>&1 &
		SA_PID=$!
		for i in $(seq 100); do [ -S "$sock" ] && break; sleep 0.02; done
		sleep 0.3
		line=$(in_ns "$cns" "$BT" run -i "$W/10k" -l "$W/srv/log" -n 1 -t 60 -- \
			"$B/src/outbox-sendmail" -i "$RCPT")
		# outboxd leaves once idle (idle-exit = 1s here; 30 s by default).
		for i in $(seq 100); do kill -0 "$SA_PID" 2>/dev/null || break; sleep 0.1; done
		sa_stop ;;
	postfix)
		pf_reload	# no smtp process, no cached connection: as after a quiet while
		line=$(in_ns "$cns" "$BT" run -i "$W/10k" -l "$W/srv/log" -n 1 -t 60 -- \
			/usr/sbin/sendmail -C "$PF" -f "$ACCOUNT" -i "$RCPT")
		sleep 0.3 ;;
	msmtp)
		line=$(in_ns "$cns" "$BT" run -i "$W/10k" -l "$W/srv/log" -n 1 -t 60 -- "${msmtp_cmd[@]}") ;;
	esac
	srv_stop
	[ "$(field status "$line")" = 0 ] && [ "$(stat_of "$W/srv" messages)" = 1 ] ||
		note "$c (one message): the run failed: $line"
	echo "$(field done_ms "$line") $(stat_of "$W/srv" connections) $(stat_of "$W/srv" auths)"
}

label() {
	case $1 in
	outbox) echo "outbox (outboxd --once)" ;;
	postfix) echo "Postfix relay" ;;
	postfix-reuse) echo "Postfix, TLS conn. reuse" ;;
	msmtp) echo "msmtp, one run per msg" ;;
	esac
}

# bench_link NAME SRV_NS CLI_NS RTT_MS
bench_link() {
	local link=$1 sns=$2 cns=$3 rtt=$4 r c out
	local -A tdone texit pss uss anon conns auths msgs idle iconns iauths
	echo "== delivery of $N x 10 KB, $link, $ROUNDS rounds each, alternating"
	for r in $(seq "$ROUNDS"); do
		for c in "${clients[@]}"; do
			out=$(deliver "$c" "$sns" "$cns")
			set -- $out
			tdone[$c]+="$1 " texit[$c]+="$2 " pss[$c]+="$3 " uss[$c]+="$4 " anon[$c]+="$5 "
			conns[$c]=$6 auths[$c]=$7 msgs[$c]=$8
		done
	done
	local pmed=
	if [ -n "${tdone[postfix]:-}" ]; then
		set -- $(stats ${tdone[postfix]})
		pmed=$2
	fi
	printf '%-26s %8s %8s %8s %9s %6s %6s %5s %9s\n' client "min s" "median" "max s" \
		"RT/msg" conns AUTHs msgs "/ postfix"
	for c in "${clients[@]}"; do
		set -- $(stats ${tdone[$c]})
		local rt=- rt4=- ratio=-
		[ -n "$rtt" ] && rt=$(awk -v t="$2" -v r="$rtt" -v n="$N" 'BEGIN { printf "%.2f", t / r / n }')
		[ -n "$rtt" ] && rt4=$(awk -v t="$2" -v r="$rtt" -v n="$N" 'BEGIN { printf "%.4f", t / r / n }')
		[ -n "$pmed" ] && ratio=$(awk -v a="$2" -v b="$pmed" 'BEGIN { printf "%.2f", a / b }')
		printf '%-26s %8.3f %8.3f %8.3f %9s %6s %6s %5s %9s\n' "$(label "$c")" \
			"$(awk -v v="$1" 'BEGIN { print v / 1000 }')" "$(awk -v v="$2" 'BEGIN { print v / 1000 }')" \
			"$(awk -v v="$3" 'BEGIN { print v / 1000 }')" "$rt" "${conns[$c]}" "${auths[$c]}" \
			"${msgs[$c]}" "$ratio"
		{
			echo "delivery.$link.$c.median_ms=$2"
			echo "delivery.$link.$c.rt_per_msg=$rt4"
			echo "delivery.$link.$c.connections=${conns[$c]}"
			echo "delivery.$link.$c.auths=${auths[$c]}"
		} >>"$results"
	done
	set -- $(stats ${texit[outbox]})
	echo "(time: from the start to the server's acceptance of the ${N}th message; outboxd itself exited"
	echo " after $(awk -v v="$2" 'BEGIN { printf "%.3f", v / 1000 }') s, median, having said QUIT;" \
		"conns/AUTHs/msgs: the server's --stats of the last round)"
	set -- $(stats ${pss[outbox]})
	echo "delivery.$link.outbox.peak_pss_kb=$3" >>"$results"
	PEAK_200[$link]="$3 $(stats ${uss[outbox]} | cut -d' ' -f3) $(stats ${anon[outbox]} | cut -d' ' -f3)"
	echo

	echo "== one message from an idle system, $link, $IDLE_ROUNDS rounds each, alternating"
	[ -n "$PF" ] && pf_unset defer_transports
	for r in $(seq "$IDLE_ROUNDS"); do
		for c in "${idle_clients[@]}"; do
			out=$(idle_one "$c" "$sns" "$cns")
			set -- $out
			idle[$c]+="$1 " iconns[$c]=$2 iauths[$c]=$3
		done
	done
	if [ -n "$PF" ]; then
		pf_conf defer_transports=smtp
		pf_reload
	fi
	pmed=
	if [ -n "${idle[postfix]:-}" ]; then
		set -- $(stats ${idle[postfix]})
		pmed=$2
	fi
	printf '%-26s %8s %8s %8s %9s %6s %6s %9s\n' client "min ms" "median" "max ms" "RTs" conns AUTHs "/ postfix"
	for c in "${idle_clients[@]}"; do
		set -- $(stats ${idle[$c]})
		local rt=- ratio=-
		[ -n "$rtt" ] && rt=$(awk -v t="$2" -v r="$rtt" 'BEGIN { printf "%.1f", t / r }')
		[ -n "$pmed" ] && ratio=$(awk -v a="$2" -v b="$pmed" 'BEGIN { printf "%.2f", a / b }')
		printf '%-26s %8.1f %8.1f %8.1f %9s %6s %6s %9s\n' "$(label "$c" | sed 's/outboxd --once/socket-activated/; s/, one run per msg//')" \
			"$1" "$2" "$3" "$rt" "${iconns[$c]}" "${iauths[$c]}" "$ratio"
		echo "idle.$link.$c.median_ms=$2" >>"$results"
	done
	echo "(time: from starting sendmail, or msmtp, to the server's acceptance; Postfix reloaded before"
	echo " each round so that no smtp process or cached connection is left from the round before)"
	echo
}

declare -A PEAK_200
idle_clients=()
for c in "${clients[@]}"; do
	[ "$c" = postfix-reuse ] || idle_clients+=("$c")
done

# --- loopback ---------------------------------------------------------------------
bench_link loopback "" "" ""

# --- memory -----------------------------------------------------------------------
echo "== memory"
# At rest: after the last one-message round outboxd has left (idle-exit).
sleep 1.5
n_ob=$(ours outboxd | wc -l)
n_sm=$(ours outbox-sendmail | wc -l)
echo "outbox processes at rest after delivery (pgrep, ours): outboxd $n_ob, outbox-sendmail $n_sm"
echo "memory.rest.outbox.processes=$((n_ob + n_sm))" >>"$results"
if [ -n "$PF" ]; then
	pids=$(pf_pids | tr '\n' ' ')
	names=$(for p in $pids; do cat "/proc/$p/comm"; done | sort | uniq -c | awk '{printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1}')
	echo "Postfix processes at rest (after the one-message rounds): $(echo $pids | wc -w) ($names), PSS $("$BT" pss $pids) KB"
	echo "  (an smtp process that delivered stays up to max_idle = 100 s longer)"
	echo "memory.rest.postfix.processes=$(echo $pids | wc -w)" >>"$results"
fi
echo "msmtp processes at rest (pgrep, ours): $(ours msmtp | wc -l)"

pss_run() {	# SIZE: one message of SIZE bytes, outboxd --once over loopback; prints "pss uss anon rss done_ms"
	local line
	rm -rf "$Q"
	make_message "$1" "$W/big"
	"$B/src/outbox-sendmail" -i "$RCPT" <"$W/big"
	rm -f "$W/big"
	srv_start "" "$W/srv" --size 0
	line=$("$BT" run -m -o "$W/outboxd.log" -l "$W/srv/log" -n 1 -t 300 -- "$B/src/outboxd" --once)
	srv_stop
	[ "$(stat_of "$W/srv" messages)" = 1 ] || note "the $1-byte message was not delivered: $line"
	rm -rf "$W/srv"
	echo "$(field peak_pss_kb "$line") $(field peak_uss_kb "$line") $(field peak_anon_kb "$line")" \
		"$(field peak_rss_kb "$line") $(field done_ms "$line")"
}
memrow() {	# LABEL PSS USS ANON RSS SECONDS ("-": not measured)
	local label=$1 v out=
	shift
	for v in "$1" "$2" "$3" "$4"; do
		if [ "$v" = - ]; then out+=$(printf ' %11s' -); else out+=$(printf ' %8s KB' "$v"); fi
	done
	printf '%-34s%s %8s\n' "$label" "$out" "$5"
}
# outboxd with nothing to send: its libraries and configuration, the floor
# under every peak below. Socket-activated and woken by a bare connection to
# its socket, it finds the queue empty and leaves after idle-exit (1 s).
start_run() {	# prints "pss uss anon rss"
	local line sock=$XDG_RUNTIME_DIR/outbox.sock i
	# A queue that exists and is empty (without one outboxd leaves at once).
	rm -rf "$Q" "$sock"
	"$B/src/outbox-sendmail" -i "$RCPT" <"$W/10k"
	srv_start "" "$W/srv"
	"$B/src/outboxd" --once 2>/dev/null || note "start_run: the queue did not empty"
	srv_stop
	"$BT" run -m -o "$W/outboxd-idle.log" -t 30 -- systemd-socket-activate -l "$sock" -E XDG_DATA_HOME \
		-E XDG_CONFIG_HOME -E XDG_RUNTIME_DIR "$B/src/outboxd" >"$W/start.line" &
	for i in $(seq 100); do [ -S "$sock" ] && break; sleep 0.02; done
	"$SPY" -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.close()' "$sock"
	wait $!
	line=$(cat "$W/start.line")
	echo "$(field peak_pss_kb "$line") $(field peak_uss_kb "$line") $(field peak_anon_kb "$line")" \
		"$(field peak_rss_kb "$line")"
}
echo
printf '%-34s %11s %11s %11s %11s %8s\n' "outboxd, peak" "PSS" "USS" "anon PSS" "RSS" "time s"
set -- $(start_run)
START_PSS=$1 START_ANON=$3
memrow "started, nothing to send" "$1" "$2" "$3" "$4" -
echo "memory.pss.start_kb=$1" >>"$results"
echo "memory.anon.start_kb=$3" >>"$results"
set -- $(pss_run 10240)
PEAK_1=("$@")
memrow "1 x 10 KB, loopback" "$1" "$2" "$3" "$4" "$(awk -v v="$5" 'BEGIN { printf "%.3f", v / 1000 }')"
echo "memory.pss.1x10k_kb=$1" >>"$results"
echo "memory.anon.1x10k_kb=$3" >>"$results"
set -- ${PEAK_200[loopback]}
memrow "$N x 10 KB, loopback" "$1" "$2" "$3" - -
set -- $(pss_run $((50 * 1024 * 1024)))
PEAK_50M=("$@")
memrow "1 x 50 MB, loopback" "$1" "$2" "$3" "$4" "$(awk -v v="$5" 'BEGIN { printf "%.3f", v / 1000 }')"
echo "memory.pss.1x50m_kb=$1" >>"$results"
echo "memory.anon.1x50m_kb=$3" >>"$results"
echo "(sampled every 2 ms from /proc/PID/smaps_rollup: PSS counts shared library pages divided by the"
echo " processes mapping them, USS only the process's private pages; RSS: the kernel's peak, from wait4;"
echo " \"started\": outboxd socket-activated, woken with an empty queue, for idle-exit = 1s. The"
echo " password command runs as a child before the session, not counted here)"
echo "delivering adds to the started outboxd: PSS +$(( ${PEAK_1[0]} - START_PSS )) KB (1 x 10 KB)," \
	"+$(( ${PEAK_50M[0]} - START_PSS )) KB (1 x 50 MB); anon +$(( ${PEAK_1[2]} - START_ANON )) KB, +$(( ${PEAK_50M[2]} - START_ANON )) KB"
echo "memory.pss.delivery_adds_kb=$(( ${PEAK_1[0]} - START_PSS ))" >>"$results"
echo

# --- the 20 ms link ---------------------------------------------------------------
link_up "$DELAY_US"
rtt_line=$(link_rtt)
RTT=$(field median_ms "$rtt_line")
echo "== the link: namespaces $NS_S (server) and $NS_C (clients), TUN devices and a delay line of ${DELAY_US} us each way"
echo "round trip (TCP connect, 11 samples): $rtt_line"
echo "link.rtt_ms=$RTT" >>"$results"
echo
if [ -n "$PF" ]; then
	pf_stop
	pf_start "$NS_C"
fi
bench_link 20ms "$NS_S" "$NS_C" "$RTT"
set -- ${PEAK_200[20ms]}
echo "outboxd's peak delivering $N x 10 KB over the link: PSS $1 KB, USS $2 KB, anon PSS $3 KB"
echo
pf_stop
link_down
echo "the delay line: $(cat "$W/tundelay.err")"
