"""`forgeyard run`: a pipeline file run here and now, logged live, recorded like any other run."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner import exitcodes
from runner.cli import UsageError, split_assignment

SECRET_ENV_PREFIX = "FORGEYARD_SECRET_"


def run_command(args: Namespace) -> int:
    with _start_up():
        from runner import database
        from runner.console import ConsoleObserver
        from runner.diagnostics import DiagnosticError
        from runner.plan import InputError
        from runner.runs import RunOptions, create_run, execute_run
        from runner.spec import load_spec_file

        try:
            spec = load_spec_file(args.file)
        except DiagnosticError as error:
            for diagnostic in error.diagnostics:
                print(diagnostic.format(), file=sys.stderr)
            return exitcodes.INVALID
        except OSError as error:
            raise UsageError(f"cannot read {args.file}: {error.strerror}") from None
        for warning in spec.warnings:
            print(warning.format(), file=sys.stderr)
        if args.job and args.job not in spec.data["jobs"]:
            raise UsageError(f"no job {args.job!r} in {args.file} (jobs: {', '.join(spec.data['jobs'])})")
        inputs = dict(split_assignment(item, "--input") for item in args.input)
        secrets = _secrets(args)

        database.connect()
        try:
            run = create_run(spec, inputs, trigger="cli", pipeline_file=str(Path(args.file).resolve()))
        except InputError as error:
            raise UsageError(str(error)) from None

    stream = sys.stderr if args.json else sys.stdout
    console = ConsoleObserver(stream, multi_job=len(spec.data["jobs"]) > 1 or _has_matrix(spec.data))
    options = RunOptions(secrets=secrets, observers=[console], keep_workspace=args.keep_workspace,
                         workspace_root=Path(args.workdir).resolve() if args.workdir else None,
                         only_job=args.job)
    print(f"Run {run.id}: {spec.name}", file=stream)
    started = time.monotonic()
    outcome = _execute_interruptibly(lambda: execute_run(run, options, spec), options, stream)
    seconds = time.monotonic() - started
    if args.json:
        print(json.dumps(_result_json(run.id, outcome, seconds), indent=2))
    else:
        console.summary(run.id, outcome.status, seconds)
    return exitcodes.for_run_status(outcome.status)


@contextmanager
def _start_up() -> Iterator[None]:
    """Imports, the Spec and the database connection make objects that live until exit: scanning them for cycles
    again and again costs a short run 10-20 ms. The collector waits meanwhile, then they are frozen out of its way."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def _execute_interruptibly(execute, options, stream):
    """Run in a thread so Ctrl-C (or SIGTERM) only asks for cancellation; a second one stops cleanup steps too."""
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(outcome=execute()), name="run")
    interrupts = 0

    def on_signal(_signum, _frame):
        nonlocal interrupts
        interrupts += 1
        token = options.cancel if interrupts == 1 else options.force
        print("\nCancelling the run…" if interrupts == 1 else "\nStopping cleanup steps…", file=stream)
        # Killing process groups may wait for a grace period: never do it inside the signal handler.
        threading.Thread(target=token.cancel, args=("interrupted",), daemon=True).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return result["outcome"]


def _secrets(args: Namespace) -> dict[str, str]:
    from runner.envfiles import EnvFileError, parse_env_file
    from runner.masking import unmaskable_reason

    secrets = {key[len(SECRET_ENV_PREFIX):]: value for key, value in os.environ.items()
               if key.startswith(SECRET_ENV_PREFIX) and len(key) > len(SECRET_ENV_PREFIX)}
    if args.secrets_file:
        try:
            secrets.update(parse_env_file(Path(args.secrets_file)))
        except (OSError, EnvFileError) as error:
            raise UsageError(f"--secrets-file {args.secrets_file}: {error}") from None
    secrets.update(split_assignment(item, "--secret", secret=True) for item in args.secret)
    for name, value in secrets.items():  # a blank secret hides nothing; a short one would hide ordinary words
        reason = unmaskable_reason(value, multiline=True) if value.strip() else None
        if reason:
            raise UsageError(f"secret {name} could not be masked in logs reliably: {reason}")
    return secrets


def _has_matrix(data: dict) -> bool:
    return any("matrix" in (job.get("strategy") or {}) for job in data["jobs"].values())


def _result_json(run_id: int, outcome, seconds: float) -> dict:
    return {
        "run_id": run_id, "status": outcome.status, "error": outcome.error, "seconds": round(seconds, 3),
        "jobs": [{"id": job.job_id, "status": job.status, "outputs": job.outputs,
                  "steps": [{"index": s.index, "id": s.step_id, "name": s.name, "status": s.status,
                             "outcome": s.outcome, "exit_code": s.exit_code, "attempts": s.attempts,
                             "outputs": s.outputs} for s in job.steps]}
                 for job in outcome.jobs],
    }
