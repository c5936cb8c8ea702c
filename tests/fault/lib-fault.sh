# SPDX-License-Identifier: MIT
# Helpers for the fault-injection suite. Each test injects one kind of fault
# many times and ends with one line of figures:
#
#   FIGURES: cases=N messages=M delivered=D lost=0 duplicates=K (...)
#
# and fails unless nothing was lost and every duplicate is explained.
#
# Sourced first by every test script; it sources tests/integration/lib.sh
# and, with FAULT_DELIVERY=1 set before, lib-deliver.sh. Set before sourcing:
#   FAULT_NEED_NS=1          run in a private mount namespace (the script is
#                            run again under unshare; $IN_NS is 1 there)
#   FAULT_NEED_STDERR_LOG=1  outboxd's log lines must reach its stderr (where
#                            there is a journal, it is hidden in a namespace)
# Provides, besides what those two provide:
#   section NAME           names the checks that follow (the queue stays)
#   figures K=V... [-- NOTE]  prints the FIGURES line
#   build_shim NAME        compiles $T/NAME.c (written by the test) to $T/NAME.so
#   mark TEXT              appends "- TEXT" to the server log (ordering markers)
#   manifest SUBJ RCPT...  records a queued message, for tally
#   fault_msg SUBJ RCPT... queues a short message with that subject (manifest too)
#   tally                  per recipient: delivered, lost, duplicates, and why
#                          each duplicate happened (from the server log and
#                          outboxd's own log lines); sets TALLY_* variables
#   od_log_file            a new file for one outboxd run's log (in $ODLOGS)
#   wait_gone PID [SECS]   waits until PID has exited (a zombie counts)
#   ring                   rings outboxd's doorbell

JOURNAL_DIR=/run/systemd/journal
_fault_ns=${FAULT_NEED_NS:-0}
# outboxd writes its log lines to the journal when there is one; the tallies
# read them from its stderr, so the journal is hidden in a private namespace.
if [ "${FAULT_NEED_STDERR_LOG:-0}" = 1 ] && [ -w "$JOURNAL_DIR/socket" ]; then
	_fault_ns=1
fi
if [ "$_fault_ns" = 1 ] && [ "${IN_NS:-0}" != 1 ] && command -v unshare >/dev/null; then
	for _u in "unshare -m --propagation private" "unshare -rm --propagation private"; do
		# shellcheck disable=SC2086
		if $_u true 2>/dev/null; then
			export IN_NS=1
			exec $_u bash "$0" "$@"
		fi
	done
fi

FAULT_DIR=$(cd "${BASH_SOURCE%/*}" && pwd)
. "$FAULT_DIR/../integration/lib.sh" || exit 99
if [ "$_fault_ns" = 1 ]; then
	[ "${IN_NS:-0}" = 1 ] || skip "a private mount namespace (unshare -m) is not permitted here"
	if [ -w "$JOURNAL_DIR/socket" ] && [ "${FAULT_NEED_STDERR_LOG:-0}" = 1 ]; then
		mount -t tmpfs -o size=64k fault-nojournal "$JOURNAL_DIR" 2>/dev/null ||
			skip "outboxd logs to the journal here, and it cannot be hidden"
	fi
fi
if [ "${FAULT_DELIVERY:-0}" = 1 ]; then
	. "$FAULT_DIR/../integration/lib-deliver.sh" || exit 99
fi

# section NAME: like check, but the queue stays (the checks of a section look
# at what earlier sections left).
section() {
	_check=$1
	echo "--- $_check"
}

ODLOGS=$T/odlogs
mkdir -p "$ODLOGS"
# od_log_file: creates and prints the file for the next outboxd run's stderr
# (numbered; works from $(...) too).
od_log_file() {
	local n
	n=$(find "$ODLOGS" -name '*.log' | wc -l)
	n=$(printf '%s/%04d.log' "$ODLOGS" $((n + 1)))
	: >"$n"
	echo "$n"
}

# od_try: outboxd --once, killed after 60 s; its log in a new od_log_file
# ($log), its exit status in $od_rc.
od_try() {
	log=$(od_log_file)
	od_rc=0
	timeout 60 "$OD" --once >/dev/null 2>"$log" || od_rc=$?
}

# od_run [WHERE]: od_try, which must end cleanly: 0, or 75 with mail waiting.
od_run() {
	od_try
	[ "$od_rc" -eq 0 ] || [ "$od_rc" -eq 75 ] || fail "outboxd --once exited $od_rc${1:+ $1}: $(tail -n 3 "$log")"
}

# drain_queue MAX: outboxd --once, every message due, until the queue is
# empty or MAX runs were made; the runs in $DRAIN_RUNS.
drain_queue() {
	local try
	DRAIN_RUNS=0
	for ((try = 1; try <= $1; try++)); do
		[ "$(msg_count)" -eq 0 ] && break
		force_due
		od_run
		DRAIN_RUNS=$((DRAIN_RUNS + 1))
	done
}

# figures KEY=VALUE... [-- NOTE]: the one line a reader looks for.
figures() {
	local line="FIGURES:" note=
	while [ $# -gt 0 ]; do
		if [ "$1" = -- ]; then
			shift
			note=" ($*)"
			break
		fi
		line="$line $1"
		shift
	done
	echo "$line$note"
}

# build_shim NAME: $T/NAME.c -> $T/NAME.so (an LD_PRELOAD library).
build_shim() {
	local c=${CC:-cc}
	command -v "$c" >/dev/null 2>&1 || skip "no C compiler ($c) to build the $1 shim"
	"$c" -shared -fPIC -O1 -o "$T/$1.so" "$T/$1.c" -ldl 2>"$T/$1.cc.err" ||
		{ echo "cannot build the $1 shim: $(cat "$T/$1.cc.err")" >&2; exit 99; }
}

# mark TEXT: a line in the server's log, in order with the server's own lines
# (the server appends and flushes each line; so does this).
mark() {
	printf -- '- %s\n' "$*" >>"$SDIR/log"
}

MANIFEST=$T/manifest
: >"$MANIFEST"
# manifest SUBJECT RCPT...: a message that was queued (sendmail exited 0).
manifest() {
	local s=$1
	shift
	printf '%s\t%s\n' "$s" "$*" >>"$MANIFEST"
}

# fault_msg SUBJECT RCPT...: queues a short message; recorded in the manifest.
fault_msg() {
	local s=$1
	shift
	if printf 'Subject: %s\nTo: %s\n\nbody of %s\n' "$s" "$1" "$s" | "$SM" -i "$@"; then
		manifest "$s" "$@"
	else
		fail "sendmail failed queueing \"$s\""
	fi
}

# ring: rings outboxd's doorbell, as sendmail does after queueing.
ring() {
	"$PY" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError:
    pass' "$XDG_RUNTIME_DIR/outbox.sock"
}

# wait_gone PID [SECS]: 0 once PID has exited (or is a zombie), 1 on timeout.
wait_gone() {
	local end=$((SECONDS + ${2:-10}))
	while kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; do
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.05
	done
	return 0
}

# tally: compares what the server stored ($SDIR/mail) with the manifest.
# For every recipient of every queued message: how many copies arrived. A
# copy beyond the first is explained when outboxd never took in the reply to
# an earlier copy, i.e. the earlier copy fell into the window between the
# end of data and the reply:
#   window      outboxd's log has no acceptance of that copy, and the
#               connection did not end with the client's QUIT;
#   killed      outboxd logged the acceptance but was killed before it could
#               remove the message (its run's log file has a .killed
#               sibling and no "<id>: removed" line after the acceptance).
# Anything else (an acceptance outboxd had logged in a run that was not
# killed, or that it had acted on; two copies on one connection; a copy of
# something never queued) is unexplained. Prints the details; sets
# TALLY_MESSAGES TALLY_RCPTS TALLY_DELIVERED TALLY_LOST TALLY_DUPS
# TALLY_WINDOW TALLY_KILLED TALLY_UNEXPLAINED, and TALLY_REPLY_AFTER_KILL:
# of the window duplicates, those whose earlier copy's reply the server
# wrote only after the next "- KILL" marker that follows its storing.
tally() {
	local out
	out=$("${SPY:-$PY}" - "$SDIR/mail" "$SDIR/log" "$MANIFEST" "$ODLOGS" <<'PY'
import glob, json, os, re, sys
maildir, logpath, manifest, odlogs = sys.argv[1:5]

want = {}                       # subject -> [rcpt]
for line in open(manifest, encoding="utf-8"):
    subj, rcpts = line.rstrip("\n").split("\t")
    want[subj] = rcpts.split()

# server log: where each stored message's reply went, how connections ended
# and where the test's "- KILL" markers fell among them
stored_at, reply_at, quit_conns, kills = {}, {}, set(), []
for i, line in enumerate(open(logpath, encoding="utf-8", errors="replace")):
    conn, _, text = line.rstrip("\n").partition(" ")
    if text.startswith("STORED "):
        stored_at[text[7:]] = i
    elif text.startswith("S 250 2.0.0 OK "):
        reply_at[text.split()[4]] = i
    elif text == "C QUIT":
        quit_conns.add(conn)
    elif conn == "-" and text.startswith("KILL"):
        kills.append(i)

# outboxd's logs: which acceptances it took in, and whether it acted on them
accepted = {}                   # (number, rcpt) -> (logfile, message id)
acted = set()                   # (logfile, message id) it removed
ACC = re.compile(r"^\S+: ([0-9A-Z]{16}): to=<([^>]*)>, .*status=sent \(250 2\.0\.0 OK (\d{6}) ")
REM = re.compile(r"^\S+: ([0-9A-Z]{16}): removed$")
for path in sorted(glob.glob(os.path.join(odlogs, "*.log"))):
    for line in open(path, encoding="utf-8", errors="replace"):
        m = ACC.match(line)
        if m:
            accepted[(m.group(3), m.group(2))] = (path, m.group(1))
            continue
        m = REM.match(line)
        if m:
            acted.add((path, m.group(1)))

copies = {}                     # (subject, rcpt) -> [number]
unexplained, phantoms = [], []
for js in sorted(glob.glob(os.path.join(maildir, "*.json"))):
    num = os.path.basename(js)[:6]
    meta = json.load(open(js))
    head = open(js[:-5] + ".eml", "rb").read().split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    m = re.search(r"^Subject: (.*?)\r?$", head, re.M)
    subj = m.group(1) if m else None
    if subj not in want:
        phantoms.append(f"{num}: subject {subj!r} was never queued")
        continue
    for r in meta["rcpt_tos"]:
        if r not in want[subj]:
            phantoms.append(f"{num}: {subj!r} went to {r}, not a recipient")
            continue
        copies.setdefault((subj, r), []).append((num, meta["connection"]))

rcpts = sum(len(v) for v in want.values())
delivered = lost = dups = window = killed = reply_after_kill = 0
for subj, rs in want.items():
    for r in rs:
        c = sorted(copies.get((subj, r), []))
        if not c:
            lost += 1
            print(f"LOST: {subj!r} to {r}", file=sys.stderr)
            continue
        delivered += 1
        conns = [conn for _, conn in c]
        if len(set(conns)) != len(conns):
            unexplained.append(f"{subj!r} to {r}: two copies on one connection: {c}")
        for num, conn in c[:-1]:
            dups += 1
            acc = accepted.get((num, r))
            if acc is None:
                if str(conn) in quit_conns:
                    unexplained.append(f"{subj!r} to {r}: copy {num} was never taken in, yet the "
                                       f"client ended connection {conn} with QUIT")
                else:
                    window += 1
                    # the first kill after the copy was stored: was the reply written after it?
                    k = next((k for k in kills if k > stored_at.get(num, -1)), None)
                    if k is not None and reply_at.get(num, 1 << 60) > k:
                        reply_after_kill += 1
            elif os.path.exists(acc[0][:-4] + ".killed") and acc not in acted:
                killed += 1
            else:
                unexplained.append(f"{subj!r} to {r}: copy {num} was accepted and outboxd "
                                   f"logged it ({os.path.basename(acc[0])}), yet it was sent again")
for p in phantoms:
    print("PHANTOM:", p, file=sys.stderr)
for u in unexplained:
    print("UNEXPLAINED:", u, file=sys.stderr)
print(f"TALLY_MESSAGES={len(want)} TALLY_RCPTS={rcpts} TALLY_DELIVERED={delivered} "
      f"TALLY_LOST={lost} TALLY_DUPS={dups} TALLY_WINDOW={window} TALLY_KILLED={killed} "
      f"TALLY_REPLY_AFTER_KILL={reply_after_kill} "
      f"TALLY_UNEXPLAINED={len(unexplained) + len(phantoms)}")
PY
	) || { fail "the tally failed"; return 1; }
	eval "$out"
	[ "$TALLY_LOST" -eq 0 ] || fail "$TALLY_LOST recipient(s) never got their message"
	[ "$TALLY_UNEXPLAINED" -eq 0 ] || fail "$TALLY_UNEXPLAINED duplicate(s) or stray copies outside the window"
	return 0
}
