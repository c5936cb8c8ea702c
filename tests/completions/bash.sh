#!/bin/bash
# SPDX-License-Identifier: MIT
# The bash completions: loaded on their own and through bash-completion's
# loader, and driven through COMP_WORDS as bash drives them.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99

# comp FUNCTION WORD...: runs the completion function for the command line
# WORD... (the last word is the one being completed); the result is in
# $reply, one candidate per line.
comp() {
	local fn=$1
	shift
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	"$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
	reply=$(printf '%s\n' "${COMPREPLY[@]}")
}

# expect WORD...: each WORD is a candidate.
expect() {
	local w
	for w in "$@"; do
		has_line "$reply" "$w" || fail "no \"$w\" among: $(echo $reply)"
	done
}

# only WORD...: exactly these candidates.
only() {
	local want
	want=$(printf '%s\n' "$@" | sort)
	[ "$(printf '%s\n' "$reply" | sed '/^$/d' | sort)" = "$want" ] ||
		fail "wanted only \"$*\", got: $(echo $reply)"
}

check "outbox.bash defines the completion"
. "$COMP/outbox.bash" || fail "sourcing outbox.bash failed"
spec=$(complete -p outbox 2>&1)
[ "$spec" = "complete -F _outbox outbox" ] || fail "complete -p outbox: $spec"

check "outbox <TAB>: the subcommands"
comp _outbox outbox ''
only setup login status queue show flush retry hold release delete help

check "outbox s<TAB>"
comp _outbox outbox s
only setup status show

check "outbox --<TAB>"
comp _outbox outbox --
only --help --version

check "outbox show <TAB>: the queued IDs"
comp _outbox outbox show ''
only "$ID1" "$ID2"

check "outbox delete <lower-case ID><TAB>: the ID, in capitals"
comp _outbox outbox delete "$(printf '%s' "$ID2" | tr 'A-Z' 'a-z')"
only "$ID2"

check "outbox retry --<TAB> offers --all; after an ID, nothing more"
comp _outbox outbox retry --
expect --all --help
comp _outbox outbox hold "$ID1" ''
only

check "the command being completed is the one run for IDs"
PATH=/usr/bin:/bin comp _outbox "$T/bin/outbox" release ''
only "$ID1" "$ID2"

check "outbox setup --tls <TAB>"
comp _outbox outbox setup --address a@b.example --tls ''
only implicit starttls
comp _outbox outbox setup --
expect --address --host --port --tls --ca-file --no-verify --no-test

check "outbox queue --<TAB>"
comp _outbox outbox queue --
only --json --help

check "outbox show <TAB> with an empty queue"
rm -rf "$XDG_DATA_HOME/outbox"
comp _outbox outbox show ''
only

check "outbox-sendmail.bash: options and option values"
. "$COMP/outbox-sendmail.bash" || fail "sourcing outbox-sendmail.bash failed"
for c in outbox-sendmail sendmail mailq; do
	spec=$(complete -p "$c" 2>&1)
	[ "$spec" = "complete -F _outbox_sendmail $c" ] || fail "complete -p $c: $spec"
done
comp _outbox_sendmail outbox-sendmail -b
only -bm -bs -bp -bi
comp _outbox_sendmail sendmail -B ''
only 7BIT 8BITMIME
comp _outbox_sendmail sendmail -f alice@example.org -oi -
expect -- -t -i
comp _outbox_sendmail sendmail -oi bob@example.org -
only

check "bash-completion loads the files by the command's name"
bc=
for f in "$(pkg-config --variable=datadir bash-completion 2>/dev/null)/bash-completion/bash_completion" \
	/usr/share/bash-completion/bash_completion; do
	[ -r "$f" ] && { bc=$f; break; }
done
if [ -z "$bc" ]; then
	echo "(bash-completion is not installed: loader not checked)"
else
	mkdir -p "$T/bc/completions"
	cp "$COMP/outbox.bash" "$T/bc/completions/outbox"
	cp "$COMP/outbox-sendmail.bash" "$T/bc/completions/outbox-sendmail"
	out=$(BASH_COMPLETION_USER_DIR="$T/bc" bash --norc --noprofile -c '
		. "$1" || exit 1
		# The loader bash-completion runs when a command is first completed.
		if declare -F __load_completion >/dev/null; then
			__load_completion outbox
			__load_completion outbox-sendmail
		else
			_completion_loader outbox
			_completion_loader outbox-sendmail
		fi
		complete -p outbox outbox-sendmail
	' bash "$bc" 2>&1)
	printf '%s\n' "$out" | grep -qx 'complete -F _outbox outbox' ||
		fail "bash-completion did not load completions/outbox: $out"
	printf '%s\n' "$out" | grep -qx 'complete -F _outbox_sendmail outbox-sendmail' ||
		fail "bash-completion did not load completions/outbox-sendmail: $out"
fi

finish
