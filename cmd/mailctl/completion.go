package main

import (
	"context"
	"fmt"
	"strings"
)

func init() {
	register(&command{
		name:     "completion",
		synopsis: "print a shell completion script: bash, zsh or fish",
		run:      runCompletion,
	})
}

// The scripts complete command names from the list below and each
// command's options from `mailctl help COMMAND`, so that they never fall
// behind the flags a command really has.
const bashCompletion = `# bash completion for mailctl. Load it with:
#   source <(mailctl completion bash)
_mailctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmd="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -chdir) ((i++)) ;;
            -*) ;;
            *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "-chdir -no-color -version -help" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "%s" -- "$cur"))
        fi
        return
    fi
    if [[ $cmd == help ]]; then
        COMPREPLY=($(compgen -W "%s" -- "$cur"))
    elif [[ $cmd == completion ]]; then
        COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur"))
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(mailctl help "$cmd" 2>/dev/null | awk '$1 ~ /^-/ {print $1}')" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -F _mailctl mailctl
`

const zshCompletion = `#compdef mailctl
# zsh completion for mailctl. Load it with:
#   source <(mailctl completion zsh)
# or save it as _mailctl in a directory of $fpath.
_mailctl() {
    local -a cmds
    cmds=(%s)
    if (( CURRENT == 2 )); then
        _describe 'command' cmds
        return
    fi
    local cmd=${words[2]}
    case $cmd in
        help) _describe 'command' cmds ;;
        completion) compadd bash zsh fish ;;
        *)
            if [[ ${words[CURRENT]} == -* ]]; then
                compadd -- ${(f)"$(mailctl help $cmd 2>/dev/null | awk '$1 ~ /^-/ {print $1}')"}
            else
                _files
            fi
            ;;
    esac
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _mailctl "$@"
else
    compdef _mailctl mailctl
fi
`

const fishCompletion = `# fish completion for mailctl. Load it with:
#   mailctl completion fish | source
# or save it as ~/.config/fish/completions/mailctl.fish.
complete -c mailctl -f
%s
complete -c mailctl -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'
complete -c mailctl -n '__fish_seen_subcommand_from help' -a '%s'
complete -c mailctl -n 'not __fish_seen_subcommand_from help completion; and __fish_seen_subcommand_from %s' -a '(mailctl help (commandline -opc)[2] 2>/dev/null | string match -r "^  (-\S+)" | string match -r -- "^-\S+")'
`

func runCompletion(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "completion", "bash|zsh|fish")
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		return errorf(e, "completion needs one shell: bash, zsh or fish")
	}
	names := commandNames()
	switch sh := fs.Arg(0); sh {
	case "bash":
		fmt.Fprintf(e.Stdout, bashCompletion, strings.Join(names, " "), strings.Join(names, " "))
	case "zsh":
		var described []string
		for _, n := range names {
			syn := "show the options of a command"
			if c := commands[n]; c != nil {
				syn = c.synopsis
			}
			described = append(described, shellQuote(n+":"+syn))
		}
		fmt.Fprintf(e.Stdout, zshCompletion, strings.Join(described, " "))
	case "fish":
		var lines []string
		for _, n := range names {
			syn := "show the options of a command"
			if c := commands[n]; c != nil {
				syn = c.synopsis
			}
			lines = append(lines, fmt.Sprintf("complete -c mailctl -n __fish_use_subcommand -a %s -d %s", n, shellQuote(syn)))
		}
		fmt.Fprintf(e.Stdout, fishCompletion, strings.Join(lines, "\n"), strings.Join(names, " "), strings.Join(names, " "))
	default:
		return errorf(e, "completion: unknown shell %q; bash, zsh and fish are supported.%s", sh, didYouMean(sh, []string{"bash", "zsh", "fish"}))
	}
	return exitOK
}

// shellQuote quotes s for a POSIX shell (and fish) in single quotes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
