#!/bin/sh
# SPDX-License-Identifier: MIT
# The zsh completion: found by compinit through $fpath, and, where the
# zsh/zpty module is available, driven by TAB in an interactive zsh whose
# completion results are captured. Skipped (77) without zsh.
. "$(dirname "$0")/lib.sh" || exit 99

command -v zsh >/dev/null 2>&1 || skip "zsh is not installed"

check "compinit finds _outbox in \$fpath (temporary ZDOTDIR)"
export ZDOTDIR="$T/zdot"
mkdir -p "$ZDOTDIR"
out=$(zsh -f -c '
	fpath=("$1" $fpath)
	autoload -Uz compinit && compinit -u -d "$ZDOTDIR/.zcompdump" || exit 1
	whence -v _outbox
	print -r -- "outbox=$_comps[outbox]"
' zsh "$COMP" 2>&1)
printf '%s\n' "$out" | grep -q '^_outbox is an autoload shell function' ||
	fail "whence -v _outbox: $out"
printf '%s\n' "$out" | grep -qx 'outbox=_outbox' || fail "compdef for outbox: $out"
zsh -f -c 'autoload -Uz +X "$1"' zsh "$COMP/_outbox" ||
	fail "_outbox does not parse"

if ! zsh -f -c 'zmodload zsh/zpty' 2>/dev/null; then
	echo "(zsh/zpty is not available: completion not driven)"
	finish
fi

# An interactive zsh in a pseudo-terminal, configured only by $ZDOTDIR. Its
# TAB key completes, then writes every candidate offered and a marker line
# to $T/cands.
cat >"$ZDOTDIR/.zshenv" <<'EOF'
unsetopt global_rcs
EOF
cat >"$ZDOTDIR/.zshrc" <<EOF
PS1='> ' RPS1= LISTMAX=10000
fpath=("$COMP" \$fpath)
autoload -Uz compinit && compinit -u -d "\$ZDOTDIR/.zcompdump"
compadd() {
	# Queries (-O, -A, -D) return matches without offering them.
	if [[ \${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
		builtin compadd "\$@"
		return
	fi
	local -a __hits
	builtin compadd -A __hits "\$@"
	(( \$#__hits )) && print -rl -- \$__hits >>"$T/cands"
	builtin compadd "\$@"
}
_capture_complete() {
	zle complete-word
	print -r -- '--end--' >>"$T/cands"
}
zle -N _capture_complete
bindkey '^I' _capture_complete
EOF

cat >"$T/drive.zsh" <<'EOF'
# drive.zsh OUTFILE LINE...: types each LINE, then TAB, in the zsh under test;
# the candidates for each go to OUTFILE, separated by "--end--" lines.
zmodload zsh/zpty || exit 99
out=$1; shift
zpty z zsh -i || exit 99
drain() { local l; while zpty -rt z l 2>/dev/null; do :; done }
for line in "$@"; do
	: >"$T/cands"
	zpty -w -n z "$line"$'\t'
	for i in {1..100}; do
		drain
		grep -q -- '^--end--$' "$T/cands" 2>/dev/null && break
		sleep 0.1
	done
	grep -q -- '^--end--$' "$T/cands" || { print -r -- "TIMEOUT: $line" >>"$out"; }
	grep -v -- '^--end--$' "$T/cands" | sort -u >>"$out"
	print -r -- "== end of: $line" >>"$out"
	# Clear the line for the next one.
	zpty -w -n z $'\C-e\C-u'
	drain
done
zpty -d z
EOF

# candidates LINE: the candidates zsh offered for LINE.
candidates() {
	awk -v line="$1" '
		$0 == "== end of: " line { exit }
		start { print }
		$0 == "== begin: " line { start = 1 }
	' "$T/results"
}

: >"$T/results"
run() {
	for l in "$@"; do
		printf '== begin: %s\n' "$l" >>"$T/results"
		T="$T" zsh -f "$T/drive.zsh" "$T/results" "$l" </dev/null || fail "driving zsh failed"
	done
}
run "outbox " "outbox show " "outbox setup --tls " "outbox retry --a"

check "outbox <TAB>: the subcommands"
got=$(candidates "outbox ")
for w in setup login status queue show flush retry hold release delete help; do
	has_line "$got" "$w" || fail "no $w among: $(echo $got)"
done

check "outbox show <TAB>: the queued IDs"
got=$(candidates "outbox show ")
has_line "$got" "$ID1" && has_line "$got" "$ID2" || fail "IDs $ID1 $ID2 not among: $(echo $got)"

check "outbox setup --tls <TAB>"
got=$(candidates "outbox setup --tls ")
has_line "$got" implicit && has_line "$got" starttls || fail "got: $(echo $got)"

check "outbox retry --a<TAB>"
got=$(candidates "outbox retry --a")
has_line "$got" --all || fail "got: $(echo $got)"

grep -q '^TIMEOUT' "$T/results" && { check "zsh answered"; fail "$(grep '^TIMEOUT' "$T/results")"; }
finish
