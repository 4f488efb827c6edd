"""`forgeyard serve`, `forgeyard worker` and `forgeyard token create`: the long-running parts and their keys."""

from __future__ import annotations

import os
import signal
import sys
import threading
from argparse import Namespace
from collections.abc import Callable

from runner import exitcodes, settings
from runner.cli import UsageError

CLEANUP_INTERVAL_SECONDS = 3600


def _require_safe_git() -> None:
    """Refuse to start (UsageError: exit 2) without a git that has the security fixes every clone relies on."""
    from runner import git

    problem = git.check_git_version(git.git_version())
    if problem:
        raise UsageError(f"refusing to start: {problem}")


def serve_command(args: Namespace) -> int:
    _require_safe_git()
    import uvicorn

    from api.app import create_app
    from api.auth import hide_query_tokens_in_logs
    from runner import database, queue
    from runner.cli_scheduler import start_scheduler_thread
    from runner.worker import Worker, configured_heartbeat_seconds, new_worker_id

    settings.ensure_dir(settings.home())
    database.connect()
    token = _first_admin_token()
    queue.take_back_lost_runs()
    worker = Worker(args.workers, new_worker_id("serve")) if args.workers > 0 else None
    if worker:
        worker.start()
    from runner.cleanup import cleanup_expired

    stop_cleanup = _every(CLEANUP_INTERVAL_SECONDS, "cleanup", cleanup_expired)
    stop_scheduler = start_scheduler_thread() if worker else None  # --workers 0 serves the API only
    # Workers take back each other's lost runs; with none embedded, the API does it, so a run whose only worker
    # died is never left 'running' while no other worker is up.
    stop_reaper = None if worker else _every(configured_heartbeat_seconds(), "taking back lost runs",
                                            lambda: queue.take_back_lost_runs(settings.lease_seconds()))
    print(f"Forgeyard API on http://{args.host}:{args.port}/api/pipelines "
          f"({args.workers} embedded worker(s), database {_safe_url(settings.database_url())})", flush=True)
    print(f"Dashboard on http://{args.host}:{args.port}/ui/ (sign in with an API token)", flush=True)
    if token:
        print(f"Admin token (kept in {settings.home() / 'admin-token'}): {token}", flush=True)
    hide_query_tokens_in_logs()
    try:
        uvicorn.run(create_app(worker=worker), host=args.host, port=args.port, log_level="info" if settings.debug()
                    else "warning", ws_max_size=1 << 20)
    finally:
        for stop in (stop_cleanup, stop_scheduler, stop_reaper):
            if stop:
                stop.set()
        if worker:
            worker.stop()
    return exitcodes.SUCCESS


def _first_admin_token() -> str | None:
    """The admin token kept in FORGEYARD_HOME/admin-token (0600), made on an empty installation.

    None when admins exist but that file was removed or its token revoked: tokens are stored only hashed.
    """
    from runner.tokens import ApiToken, create_token, verify_token

    path = settings.home() / "admin-token"
    if path.exists():
        kept = path.read_text().strip()
        if verify_token(kept):
            return kept
    if ApiToken.select().where(ApiToken.role == "admin", ApiToken.revoked_at.is_null()).exists():
        return None
    token, _ = create_token("first admin", "admin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return token


def _every(seconds: float, what: str, action: Callable[[], object]) -> threading.Event:
    """Run `action` every `seconds` in a daemon thread until the returned event is set; a failure is reported."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                action()
            except Exception as error:  # housekeeping must never take the server down
                print(f"forgeyard: {what} failed: {type(error).__name__}", file=sys.stderr)

    threading.Thread(target=loop, name=what, daemon=True).start()
    return stop


def _safe_url(url: str) -> str:
    """The database URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        rest = f"{credentials.split(':')[0]}:***@{host}"
    return f"{scheme}{sep}{rest}"


def worker_command(args: Namespace) -> int:
    from runner import database
    from runner.worker import Worker

    _require_safe_git()
    database.connect()
    worker = Worker(args.concurrency)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    print(f"forgeyard worker {worker.worker_id}: {args.concurrency} slot(s)", flush=True)
    while not stop.wait(1.0):
        pass
    worker.stop()
    return exitcodes.SUCCESS


def token_command(args: Namespace) -> int:
    from runner import database
    from runner.tokens import create_token

    database.connect()
    try:
        token, record = create_token(args.name, args.role)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(token)
    print(f"token {record.id} ({args.role}) created; it is shown only this once", file=sys.stderr)
    return exitcodes.SUCCESS
