# SPDX-License-Identifier: MIT
# fish completion for outbox(1)

# The queue IDs with their status, from "outbox queue --json" (no jq needed:
# IDs are [0-9A-Z]{16}, and a quote inside a JSON string is always escaped).
function __outbox_queue_ids
    set -l cmd (commandline -opc)[1]
    test -n "$cmd"; or set cmd outbox
    command $cmd queue --json 2>/dev/null | awk '{
        s = $0
        while (match(s, /"id":"[0-9A-Z]+","status":"[a-z]+"/)) {
            n = split(substr(s, RSTART, RLENGTH), f, "\"")
            print f[4] "\t" f[8]
            s = substr(s, RSTART + RLENGTH)
        }
    }'
end

# True when the command line has a subcommand in $argv and no ID after it yet.
function __outbox_wants_id
    set -l words (commandline -opc)
    set -l seen 0
    for w in $words[2..-1]
        if test $seen -eq 0
            if contains -- $w $argv
                set seen 1
            end
        else if not string match -q -- '-*' $w
            return 1
        end
    end
    test $seen -eq 1
end

set -l __outbox_commands setup login status queue show flush retry hold release delete help

complete -c outbox -f
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -s h -l help -d 'Show the usage'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -l version -d 'Show the version'

complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a setup -d 'Set up the account and send a test message'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a login -d 'Store or replace the app password'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a status -d 'Show service, account, keyring and queue'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a queue -d 'List the queue'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a show -d 'Show one message'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a flush -d 'Try every deferred message now'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a retry -d 'Send a failed or deferred message again'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a hold -d 'Keep a message from being sent'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a release -d 'Let a held message go'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a delete -d 'Remove a message for good'
complete -c outbox -n "not __fish_seen_subcommand_from $__outbox_commands" -a help -d 'Show the usage'

complete -c outbox -n "__fish_seen_subcommand_from $__outbox_commands" -s h -l help -d 'Show help for the command'

complete -c outbox -n '__fish_seen_subcommand_from setup' -l address -x -d 'The Gmail address'
complete -c outbox -n '__fish_seen_subcommand_from setup' -l host -x -a smtp.gmail.com -d 'The SMTP server'
complete -c outbox -n '__fish_seen_subcommand_from setup' -l port -x -a '465 587' -d 'The server port'
complete -c outbox -n '__fish_seen_subcommand_from setup' -l tls -x -a 'implicit starttls' -d 'How TLS starts'
complete -c outbox -n '__fish_seen_subcommand_from setup' -l ca-file -r -F -d 'Extra trusted CA certificates'
complete -c outbox -n '__fish_seen_subcommand_from setup' -l no-test -d 'Send no test message'
complete -c outbox -n '__fish_seen_subcommand_from setup login' -l no-verify -d 'Store the password without checking it'
complete -c outbox -n '__fish_seen_subcommand_from queue' -l json -d 'Print the queue as JSON'
complete -c outbox -n '__fish_seen_subcommand_from retry' -l all -d 'Retry every message'
complete -c outbox -n '__fish_seen_subcommand_from delete' -s y -l yes -d 'Do not ask'

complete -c outbox -n '__outbox_wants_id show hold release retry delete' -a '(__outbox_queue_ids)'
