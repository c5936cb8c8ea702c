# SPDX-License-Identifier: MIT
# bash completion for outbox-sendmail(8), also installed for sendmail and
# mailq when they are outbox's links.                      -*- shell-script -*-

_outbox_sendmail()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev= i

    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    COMPREPLY=()

    # Recipients start at the first word that is no option, or after "--".
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --) return 0 ;;
        -[frFBNRVhCL]) ((i++)) ;;
        -*) ;;
        *) return 0 ;;
        esac
    done

    case $prev in
    -B)
        COMPREPLY=($(compgen -W '7BIT 8BITMIME' -- "$cur"))
        return 0
        ;;
    -N)
        COMPREPLY=($(compgen -W 'never success failure delay
            success,failure success,failure,delay' -- "$cur"))
        return 0
        ;;
    -R)
        COMPREPLY=($(compgen -W 'full hdrs' -- "$cur"))
        return 0
        ;;
    -[frFVhCL])
        return 0
        ;;
    esac

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '-t -i -oi -f -r -F -bm -bs -bp -bi -q -v
            -B -N -R -V -h -oem -oep -oeq -oew -odb -odi -odq --' -- "$cur"))
    fi
    return 0
} &&
    complete -F _outbox_sendmail outbox-sendmail sendmail mailq

# ex: filetype=sh
