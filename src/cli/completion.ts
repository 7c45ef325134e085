// circuit completion bash|zsh: a shell completion script, written from the command tree itself so
// that it never lists a command or option the CLI does not have. Words starting with "/" complete
// to anchor paths by asking the daemon (`circuit ls PARENT`, with the -d/--key the line already has).

import type { Command, Option } from "commander";
import { UsageError } from "./common.js";

/** Global options that take a value: the word after them is not a command. */
const VALUED = ["-d", "--dial", "--discover", "--key"];

function flags(options: readonly Option[]): string[] {
  return options.flatMap((o) => [o.short, o.long].filter((f): f is string => typeof f === "string"));
}

function tree(program: Command): { globals: string[]; commands: Map<string, string[]> } {
  const commands = new Map<string, string[]>();
  for (const c of program.commands) {
    if (c.name() === "help") continue;
    commands.set(c.name(), [...new Set([...flags(c.options), "--help"])]);
    for (const sub of c.commands) commands.set(`${c.name()} ${sub.name()}`, [...flags(sub.options), "--help"]);
  }
  return { globals: [...new Set([...flags(program.options), "--help"])], commands };
}

/** Single-quoted for a shell. */
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function bash(program: Command): string {
  const { globals, commands } = tree(program);
  const top = [...commands.keys()].filter((k) => !k.includes(" "));
  const cases = [...commands]
    .filter(([k]) => !k.includes(" "))
    .map(([k, opts]) => {
      const subs = program.commands.find((c) => c.name() === k)?.commands.map((c) => c.name()) ?? [];
      return `    ${q(k)}) opts=${q(opts.join(" "))}; subs=${q(subs.join(" "))} ;;`;
    })
    .join("\n");
  return `# bash completion for circuit; load with: source <(circuit completion bash)
_circuit() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" i w opts="" subs="" conn=()
  for (( i = 1; i < COMP_CWORD; i++ )); do
    w="\${COMP_WORDS[i]}"
    case "$w" in
      ${VALUED.join("|")}) conn+=("$w" "\${COMP_WORDS[i+1]}"); (( i++ )) ;;
      -*) ;;
      *) [[ -z "$cmd" ]] && cmd="$w" ;;
    esac
  done
  if [[ -z "$cmd" ]]; then
    if [[ "$cur" == -* ]]; then COMPREPLY=( $(compgen -W ${q(globals.join(" "))} -- "$cur") )
    else COMPREPLY=( $(compgen -W ${q(top.join(" "))} -- "$cur") ); fi
    return 0
  fi
  case "$cmd" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$opts ${globals.filter((g) => g !== "--help").join(" ")}" -- "$cur") )
  elif [[ -n "$subs" && "\${COMP_WORDS[COMP_CWORD-1]}" == "$cmd" ]]; then
    COMPREPLY=( $(compgen -W "$subs" -- "$cur") )
  elif [[ "$cur" == /* ]]; then
    local parent="\${cur%/*}"
    COMPREPLY=( $(compgen -W "$(circuit "\${conn[@]}" ls "\${parent:-/}" 2>/dev/null)" -- "$cur") )
    compopt -o nospace 2>/dev/null
  else
    COMPREPLY=( $(compgen -f -- "$cur") )
  fi
  return 0
}
complete -F _circuit circuit
`;
}

function zsh(program: Command): string {
  const { globals, commands } = tree(program);
  const top = [...commands.keys()].filter((k) => !k.includes(" "));
  const cases = [...commands]
    .filter(([k]) => !k.includes(" "))
    .map(([k, opts]) => {
      const subs = program.commands.find((c) => c.name() === k)?.commands.map((c) => c.name()) ?? [];
      return `    ${q(k)}) opts=(${opts.map(q).join(" ")}); subs=(${subs.map(q).join(" ")}) ;;`;
    })
    .join("\n");
  return `#compdef circuit
# zsh completion for circuit; load with: source <(circuit completion zsh)  (after compinit), or save
# it as _circuit in a directory of $fpath.
_circuit() {
  local cur="\${words[CURRENT]}" cmd="" w i
  local -a opts subs conn
  local -a globals=(${globals.map(q).join(" ")})
  for (( i = 2; i < CURRENT; i++ )); do
    w="\${words[i]}"
    case "$w" in
      ${VALUED.join("|")}) conn+=("$w" "\${words[i+1]}"); (( i++ )) ;;
      -*) ;;
      *) [[ -z "$cmd" ]] && cmd="$w" ;;
    esac
  done
  if [[ -z "$cmd" ]]; then
    if [[ "$cur" == -* ]]; then compadd -- $globals; else compadd -- ${top.map(q).join(" ")}; fi
    return
  fi
  case "$cmd" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then
    compadd -- $opts \${globals:#--help}
  elif (( \${#subs} )) && [[ "\${words[CURRENT-1]}" == "$cmd" ]]; then
    compadd -- $subs
  elif [[ "$cur" == /* ]]; then
    local parent="\${cur%/*}"
    compadd -S '' -- \${(f)"$(circuit $conn ls "\${parent:-/}" 2>/dev/null)"}
  else
    _files
  fi
}
if [[ "\${funcstack[1]}" == "_circuit" ]]; then _circuit "$@"; else compdef _circuit circuit; fi
`;
}

export function register(program: Command): void {
  program
    .command("completion")
    .description("print a shell completion script: source <(circuit completion bash)")
    .argument("<shell>", "bash or zsh")
    .action((shell: string) => {
      if (shell === "bash") process.stdout.write(bash(program));
      else if (shell === "zsh") process.stdout.write(zsh(program));
      else throw new UsageError(`completion: no script for ${JSON.stringify(shell)}: bash or zsh`);
    });
}
