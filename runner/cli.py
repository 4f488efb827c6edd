"""The `forgeyard` command: parses arguments and hands each command to the engine; it prints, it does not decide.

Heavy modules are imported inside the commands, so `forgeyard --help` and `validate` start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from runner import exitcodes

EXAMPLES = {
    "run": "example:\n  forgeyard run pipelines/hello.yml --input who=world --secret TOKEN=s3cr3t-value",
    "validate": "example:\n  forgeyard validate pipelines/*.yml",
    "serve": "example:\n  forgeyard serve --host 127.0.0.1 --port 8080 --workers 2",
    "worker": "example:\n  FORGEYARD_DATABASE_URL=postgresql://forgeyard@db/forgeyard forgeyard worker --concurrency 4",
    "token": "example:\n  forgeyard token create --name ci --role operator",
    "cleanup": "example:\n  forgeyard cleanup",
    "hook": "examples:\n  forgeyard hook install /srv/git/acme.git\n  forgeyard hook install --local .",
    "trigger": "example (what the installed hook runs):\n  echo \"$OLD $NEW refs/heads/main\" | forgeyard trigger push "
               "--repo /srv/git/acme.git",
    "scheduler": "example:\n  forgeyard scheduler",
    "workers": "example:\n  forgeyard workers --json",
    "runs": "examples:\n  forgeyard runs list --status failed --limit 10\n  forgeyard runs show 42\n"
            "  forgeyard runs logs 42",
}


class UsageError(Exception):
    """A mistake on the command line; printed and answered with exit code 2."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command`, only that command's arguments (each parser costs a few ms of
    gettext look-ups, which every start-up would pay for twenty of them)."""
    parser = argparse.ArgumentParser(
        prog="forgeyard", description="Build customized Open WebUI packages from YAML pipelines.",
        epilog="example:\n  forgeyard run pipelines/hello.yml --input who=world",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments) in _COMMANDS.items():
        if command in (None, name):
            add_arguments(commands.add_parser(
                name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                epilog=EXAMPLES.get(name), formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def _run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("file", metavar="FILE", help="the pipeline YAML file")
    run.add_argument("--input", action="append", default=[], metavar="K=V", help="an input value (repeatable)")
    run.add_argument("--secret", action="append", default=[], metavar="K=V",
                     help="a secret (repeatable); prefer --secrets-file or FORGEYARD_SECRET_<NAME> in the "
                          "environment, which stay out of shell history")
    run.add_argument("--secrets-file", metavar="F", help="KEY=VALUE lines (KEY<<EOF … EOF for multi-line)")
    run.add_argument("--job", metavar="ID", help="run only this job and the jobs it needs")
    run.add_argument("--workdir", metavar="DIR", help="make the run's workspace here (kept afterwards)")
    run.add_argument("--keep-workspace", action="store_true", help="keep the workspace after the run")
    run.add_argument("--json", action="store_true", help="print the result as JSON (the live log goes to stderr)")


def _validate_arguments(validate: argparse.ArgumentParser) -> None:
    validate.add_argument("files", nargs="+", metavar="FILE")


def _runs_arguments(runs: argparse.ArgumentParser) -> None:
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    runs_list = runs_commands.add_parser("list", help="newest runs first")
    runs_list.add_argument("--status", choices=["pending", "running", "completed", "failed", "cancelled"])
    runs_list.add_argument("--limit", type=int, default=20)
    runs_list.add_argument("--offset", type=int, default=0)
    runs_list.add_argument("--json", action="store_true")
    runs_show = runs_commands.add_parser("show", help="a run with its jobs and steps")
    runs_show.add_argument("run_id", type=int, metavar="ID")
    runs_show.add_argument("--json", action="store_true")
    runs_logs = runs_commands.add_parser("logs", help="a run's log, one [timestamp] line each")
    runs_logs.add_argument("run_id", type=int, metavar="ID")
    runs_logs.add_argument("--since", type=int, default=0, metavar="SEQ", help="only lines after this number")
    runs_cancel = runs_commands.add_parser("cancel", help="cancel a pending or running run")
    runs_cancel.add_argument("run_id", type=int, metavar="ID")


def _serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=2, metavar="N", help="runs executed at once (0: API only)")


def _worker_arguments(worker: argparse.ArgumentParser) -> None:
    worker.add_argument("--concurrency", type=int, default=2, metavar="N")


def _token_arguments(token: argparse.ArgumentParser) -> None:
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    token_create = token_commands.add_parser("create", help="a new token for a role")
    token_create.add_argument("--name", required=True)
    token_create.add_argument("--role", required=True, choices=["admin", "operator", "viewer"])


def _hook_arguments(hook: argparse.ArgumentParser) -> None:
    hook_commands = hook.add_subparsers(dest="hook_command", metavar="ACTION", required=True)
    for action in ("install", "uninstall"):
        hook_action = hook_commands.add_parser(action, help=f"{action} the hook (bare repository: post-receive)")
        hook_action.add_argument("repo_dir", metavar="REPO_DIR")
        hook_action.add_argument("--local", action="store_true", help="a work tree: post-commit and post-merge")


def _trigger_arguments(trigger: argparse.ArgumentParser) -> None:
    trigger_commands = trigger.add_subparsers(dest="trigger_command", metavar="EVENT", required=True)
    push = trigger_commands.add_parser("push", help="OLD NEW REF as arguments, or lines of them on stdin")
    push.add_argument("--repo", default=".", metavar="DIR", help="the repository pushed to (default: here)")
    push.add_argument("update", nargs="*", metavar="OLD NEW REF")


def _workers_arguments(workers: argparse.ArgumentParser) -> None:
    workers.add_argument("--json", action="store_true")


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    pass


_COMMANDS = {
    "run": ("run a pipeline file and stream its log", _run_arguments),
    "validate": ("check pipeline files; errors as FILE:LINE:COL: message", _validate_arguments),
    "runs": ("list recorded runs, show one, or print its log", _runs_arguments),
    "serve": ("serve the REST API with embedded workers and the cleanup timer", _serve_arguments),
    "worker": ("claim queued runs from the shared database and execute them", _worker_arguments),
    "token": ("create an API token (printed once; only its hash is stored)", _token_arguments),
    "cleanup": ("remove expired ZIP files and local images, and mark their records", _no_arguments),
    "hook": ("install or remove the git hook that runs .forgeyard/*.yml pipelines on push", _hook_arguments),
    "trigger": ("queue the pipelines a git event matches", _trigger_arguments),
    "scheduler": ("run the cron scheduler alone (forgeyard serve runs it too)", _no_arguments),
    "workers": ("list workers with their last heartbeat and current runs", _workers_arguments),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in _COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exitcodes.INVALID if exit_.code not in (0, None) else exitcodes.SUCCESS
    if not args.command:
        parser.print_help()
        return exitcodes.INVALID
    try:
        if args.command == "validate":
            return _validate(args.files)
        if args.command == "run":
            from runner.cli_run import run_command
            return run_command(args)
        if args.command in ("serve", "worker", "token"):
            from runner import cli_server
            return getattr(cli_server, f"{args.command}_command")(args)
        if args.command == "cleanup":
            from runner.cli_cleanup import cleanup_command
            return cleanup_command(args)
        if args.command in ("hook", "trigger"):
            from runner import cli_hooks
            return getattr(cli_hooks, f"{args.command}_command")(args)
        if args.command == "scheduler":
            from runner.cli_scheduler import scheduler_command
            return scheduler_command(args)
        if args.command == "workers":
            from runner.cli_workers import workers_command
            return workers_command(args)
        from runner.cli_runs import runs_command
        return runs_command(args)
    except UsageError as error:
        print(f"forgeyard: {error}", file=sys.stderr)
        return exitcodes.INVALID
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED


def _validate(files: list[str]) -> int:
    from runner.diagnostics import DiagnosticError
    from runner.spec import load_spec_file

    code = exitcodes.SUCCESS
    for file in files:
        try:
            spec = load_spec_file(file)
        except DiagnosticError as error:
            for diagnostic in error.diagnostics:
                print(diagnostic.format(), file=sys.stderr)
            code = exitcodes.INVALID
            continue
        except OSError as error:
            print(f"{file}:0:0: cannot read: {error.strerror}", file=sys.stderr)
            code = exitcodes.INVALID
            continue
        for warning in spec.warnings:
            print(warning.format(), file=sys.stderr)
        print(f"{file}: ok")
    return code


def split_assignment(text: str, option: str, *, secret: bool = False) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        # A malformed --secret may be the bare secret itself: never echo it.
        raise UsageError(f"{option} takes NAME=VALUE" + ("" if secret else f", got {text!r}"))
    return name.strip(), value
