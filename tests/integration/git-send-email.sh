#!/bin/bash
# SPDX-License-Identifier: MIT
# git send-email on a real repository with two patches: two queued
# messages, the envelope sender as given, and each patch's text byte-identical
# to what git format-patch wrote (only the header section is git's own).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 99
need git
[ -x "$(git --exec-path)/git-send-email" ] ||
	skip "git send-email is not installed (package git-email)"

export GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_DATE='2024-01-02T03:04:05Z' GIT_COMMITTER_DATE='2024-01-02T03:04:05Z'
repo=$T/repo
git init -q "$repo"
git -C "$repo" config user.name 'Ann Dev'
git -C "$repo" config user.email ann@example.org
printf 'first line\n' >"$repo/file"
git -C "$repo" add file
git -C "$repo" commit -qm 'initial'
# A lone "." in the commit message: only -i keeps what follows it.
printf 'first line\nsecond\n.\nFrom here on\n' >"$repo/file"
git -C "$repo" commit -qam 'add lines

The new lines include a lone dot, like the one below:
.
Only sendmail -i keeps the rest of this message.'
printf 'first line\nsecond\n.\nFrom here on\nGrüße, 8-bit\n' >"$repo/file"
git -C "$repo" commit -qam 'add an 8-bit line'
git -C "$repo" format-patch -q -2 -o "$T/patches"
grep -qx '\.' "$T"/patches/0001-*.patch || { fail "format-patch dropped the lone '.' line"; finish; }
set -- "$T"/patches/*.patch
[ $# -eq 2 ] || { fail "format-patch made $# patches"; finish; }

# patch_body FILE: what follows the header section of a patch or message.
patch_body() {
	sed '1,/^$/d' "$1"
}

# check_patches: msg/ holds the two patches, in order, with sender $1.
check_patches() {
	local sender=$1 ids i=0 id p subj
	ids=$(msg_ids)
	expect_count 2 || return
	for id in $ids; do
		i=$((i + 1))
		p=$(ls "$T"/patches/000"$i"-*.patch)
		expect_envelope_sane "$Q/msg/$id"
		expect_env "$Q/msg/$id" sender "$sender"
		expect_env "$Q/msg/$id" rcpt list@example.org reviewer@example.net
		body "$Q/msg/$id" >"$T/msg.$i"
		subj=$(grep -m1 '^Subject: ' "$p")
		grep -qxF "$subj" "$T/msg.$i" || fail "message $i lacks [$subj]"
		patch_body "$T/msg.$i" >"$T/msg.$i.body"
		patch_body "$p" >"$T/patch.$i.body"
		cmp -s "$T/msg.$i.body" "$T/patch.$i.body" ||
			fail "message $i: the patch text differs from format-patch's: $(cmp "$T/msg.$i.body" "$T/patch.$i.body" 2>&1)"
	done
}

check "git send-email --sendmail-cmd with --envelope-sender"
w=$(argv_logger gitsend)
rc=0
git -C "$repo" send-email --sendmail-cmd="$w" --envelope-sender=bounce@example.org \
	--to=list@example.org --cc=reviewer@example.net --confirm=never --suppress-cc=self \
	--no-validate --quiet "$@" >"$T/git.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "git send-email exited $rc: $(tail -c 300 "$T/git.out")"
expect_argv gitsend -f bounce@example.org -i list@example.org reviewer@example.net
check_patches bounce@example.org

check "git send-email --smtp-server=PATH (the older spelling)"
w=$(argv_logger gitsend2)
rc=0
git -C "$repo" send-email --smtp-server="$w" --from='Ann Dev <ann@example.org>' \
	--envelope-sender=auto --to=list@example.org --cc=reviewer@example.net \
	--confirm=never --suppress-cc=self --no-validate --quiet "$@" >"$T/git.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "git send-email exited $rc: $(tail -c 300 "$T/git.out")"
expect_argv gitsend2 -f ann@example.org -i list@example.org reviewer@example.net
check_patches ann@example.org

finish
