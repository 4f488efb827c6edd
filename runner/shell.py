"""How a `run:` step becomes a process: the shell's argument list and the script with expressions moved into env.

Expression values never become script text: each `${{ … }}` is replaced by a reference to an environment
variable holding its value, so an input such as `$(touch pwned)` reaches the command as those literal characters.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from runner import expressions

SHELLS = {
    "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
    "sh": ["sh", "-e", "{0}"],
    "python": ["python3", "{0}"],
}
_SH_FAMILY = {"bash", "sh", "dash", "zsh", "ksh", "ash", "busybox"}
EXPRESSION_VARIABLE = "FORGEYARD_EXPR_{}"


class ShellError(ValueError):
    """The step's shell cannot take what the step asks of it."""


def shell_argv(shell: str, script: Path) -> list[str]:
    template = SHELLS.get(shell) or shlex.split(shell)
    if "{0}" not in template:
        raise ShellError(f"custom shell {shell!r} must contain {{0}} where the script path goes")
    return [str(script) if part == "{0}" else part for part in template]


def is_sh_family(shell: str) -> bool:
    program = (SHELLS.get(shell) or shlex.split(shell) or [""])[0]
    return Path(program).name in _SH_FAMILY


def script_suffix(shell: str) -> str:
    return ".py" if shell == "python" else ".sh"


def bind_expressions(script: str, shell: str, context: expressions.Context) -> tuple[str, dict[str, str]]:
    """The script with each `${{ expr }}` replaced by `${FORGEYARD_EXPR_n}`, and those variables' values."""
    templates = expressions.find_templates(script)
    if not templates:
        return script, {}
    if not is_sh_family(shell):
        raise ShellError("expressions in run: need shell bash or sh; pass the value through env: instead")
    parts, env, cursor = [], {}, 0
    for n, template in enumerate(templates):
        name = EXPRESSION_VARIABLE.format(n)
        env[name] = expressions.to_string(expressions.evaluate_text(template.expression, context))
        parts += [script[cursor:template.start], "${", name, "}"]
        cursor = template.end
    parts.append(script[cursor:])
    return "".join(parts), env
