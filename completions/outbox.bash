# SPDX-License-Identifier: MIT
# bash completion for outbox(1)                            -*- shell-script -*-

# The queue IDs, from "outbox queue --json" (no jq needed: IDs are
# [0-9A-Z]{16}, and a quote inside a JSON string is always escaped).
_outbox_queue_ids()
{
    "$1" queue --json 2>/dev/null | awk '{
        s = $0
        while (match(s, /"id":"[0-9A-Z]+"/)) {
            print substr(s, RSTART + 6, RLENGTH - 7)
            s = substr(s, RSTART + RLENGTH)
        }
    }'
}

_outbox()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=
    local cmd=${COMP_WORDS[0]} sub= subi=0 i nargs=0
    local commands='setup login status queue show flush retry hold release delete help'

    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    COMPREPLY=()

    # Run the outbox being completed when it was given as a path.
    if [[ $cmd != */* || ! -x $cmd ]]; then
        cmd=outbox
    fi

    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        -*) ;;
        *)
            sub=${COMP_WORDS[i]}
            subi=$i
            break
            ;;
        esac
    done

    if [[ -z $sub ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W '--help --version' -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return 0
    fi

    # Words after the subcommand that are not options: the ID, once given.
    for ((i = subi + 1; i < COMP_CWORD; i++)); do
        [[ ${COMP_WORDS[i]} == -* ]] || ((nargs++))
    done

    case $sub in
    setup)
        case $prev in
        --address)
            return 0
            ;;
        --host)
            COMPREPLY=($(compgen -W 'smtp.gmail.com' -- "$cur"))
            return 0
            ;;
        --port)
            COMPREPLY=($(compgen -W '465 587' -- "$cur"))
            return 0
            ;;
        --tls)
            COMPREPLY=($(compgen -W 'implicit starttls' -- "$cur"))
            return 0
            ;;
        --ca-file)
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
            return 0
            ;;
        esac
        COMPREPLY=($(compgen -W '--address --host --port --tls --ca-file
            --no-verify --no-test --help' -- "$cur"))
        ;;
    login)
        COMPREPLY=($(compgen -W '--no-verify --help' -- "$cur"))
        ;;
    queue)
        COMPREPLY=($(compgen -W '--json --help' -- "$cur"))
        ;;
    status | flush | help)
        [[ $cur == -* ]] && COMPREPLY=($(compgen -W '--help' -- "$cur"))
        ;;
    show | hold | release | retry | delete)
        local opts='--help'
        [[ $sub == retry ]] && opts+=' --all'
        [[ $sub == delete ]] && opts+=' --yes -y'
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        elif ((nargs == 0)); then
            # IDs are capitals and digits: a prefix typed in lower case matches too.
            COMPREPLY=($(compgen -W "$(_outbox_queue_ids "$cmd")" -- "${cur^^}"))
        fi
        ;;
    esac
    return 0
} &&
    complete -F _outbox outbox

# ex: filetype=sh
