#!/bin/sh
# SPDX-License-Identifier: MIT
# The fish completion: autoloaded from $fish_complete_path by the command's
# name and asked with "complete -C". Skipped (77) without fish.
. "$(dirname "$0")/lib.sh" || exit 99

command -v fish >/dev/null 2>&1 || skip "fish is not installed"

# fishc LINE: the candidates fish offers for LINE (candidate TAB description).
fishc() {
	fish --no-config -c 'set -p fish_complete_path $argv[1]; complete -C $argv[2]' "$COMP" "$1" 2>"$T/fish.err"
	if [ -s "$T/fish.err" ]; then
		fail "fish said: $(cat "$T/fish.err")"
	fi
}

check "outbox <TAB>: the subcommands, described"
got=$(fishc "outbox ")
for w in setup login status queue show flush retry hold release delete help; do
	has_line "$got" "$w" || fail "no $w among: $(echo $got)"
done
printf '%s\n' "$got" | grep -q "^setup	." || fail "setup has no description: $got"
has_line "$got" "$ID1" && fail "a queue ID offered as a command: $got"

check "outbox show <TAB>: the queued IDs with their status"
got=$(fishc "outbox show ")
printf '%s\n' "$got" | grep -qx "$ID1	queued" || fail "no \"$ID1<TAB>queued\" among: $got"
has_line "$got" "$ID2" || fail "no $ID2 among: $got"

check "outbox delete ID <TAB>: nothing more"
got=$(fishc "outbox delete $ID1 ")
has_line "$got" "$ID2" && fail "a second ID offered: $got"

check "outbox setup --tls <TAB>"
got=$(fishc "outbox setup --tls ")
has_line "$got" implicit && has_line "$got" starttls || fail "got: $got"

check "outbox queue --<TAB>"
got=$(fishc "outbox queue --")
has_line "$got" --json || fail "got: $got"
has_line "$got" --all && fail "retry's --all offered for queue: $got"

finish
