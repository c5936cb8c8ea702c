#!/bin/sh
# SPDX-License-Identifier: MIT
# pf-settle.sh SPOOL: waits (at most 30 s) until the Postfix queue SPOOL has
# nothing on its way in (maildrop, incoming, active): the enqueue benchmark
# runs it, untimed, after every command so that Postfix's pickup and
# cleanup do not run while the next contender is timed.
spool=$1
i=0
while [ -n "$(find "$spool/maildrop" "$spool/incoming" "$spool/active" -type f -print -quit 2>/dev/null)" ]; do
	i=$((i + 1))
	[ "$i" -gt 1500 ] && { echo "pf-settle: Postfix's queue does not settle" >&2; exit 1; }
	sleep 0.02
done
exit 0
