"""`forgeyard hook install|uninstall` and `forgeyard trigger push`: print what was done; a failure is a warning line.

Runs are queued in the database, or through the REST API when FORGEYARD_URL and FORGEYARD_TOKEN are set.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import exitcodes
from runner.cli import UsageError

if TYPE_CHECKING:
    from runner.pushes import Triggered

API_TIMEOUT_SECONDS = 10.0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would send the token to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def hook_command(args: Namespace) -> int:
    from runner import hooks

    action = hooks.install if args.hook_command == "install" else hooks.uninstall
    try:
        messages = action(args.repo_dir, local=args.local)
    except hooks.HookError as error:
        raise UsageError(str(error)) from None
    for message in messages:
        print(f"forgeyard: {message}")
    return exitcodes.SUCCESS


def trigger_command(args: Namespace) -> int:
    from runner import pushes

    if args.update and len(args.update) != 3:
        raise UsageError("trigger push takes OLD NEW REF, or lines of them on stdin")
    try:
        updates = pushes.parse_updates([" ".join(args.update)] if args.update else sys.stdin.read().splitlines())
    except ValueError as error:
        raise UsageError(f"trigger push: {error}") from None
    code = exitcodes.SUCCESS
    queue_run = None
    pusher = os.environ.get("REMOTE_USER") or os.environ.get("USER")
    for update in updates:
        try:
            for item in pushes.triggered(args.repo, update, _warn, pusher=pusher):
                queue_run = queue_run or _queue_function()
                print(f"forgeyard: queued run {queue_run(item)} ({Path(item.file).name}) for {update.ref}", flush=True)
        except Exception as error:  # the push stands whatever happened: say it in one line and go on
            _warn(f"no run queued for {update.ref}: {_one_line(error)}")
            code = exitcodes.FAILED
    return code


def _warn(text: str) -> None:
    print(f"forgeyard: warning: {text}", file=sys.stderr, flush=True)


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _queue_function() -> Callable[[Triggered], int]:
    """Queues a triggered pipeline and returns its run id: through the API if configured, else in the database."""
    url, token = os.environ.get("FORGEYARD_URL"), os.environ.get("FORGEYARD_TOKEN")
    if url:
        if not url.startswith(("http://", "https://")):
            raise ValueError("FORGEYARD_URL must be an http:// or https:// URL")
        if not token:
            raise ValueError("FORGEYARD_URL is set but FORGEYARD_TOKEN is not")
        return lambda item: _queue_through_api(url.rstrip("/") + "/api/pipelines", token, item)
    from runner import database, pushes

    database.connect()
    return lambda item: pushes.submit(item).id


def _queue_through_api(base: str, token: str, item: Triggered) -> int:
    # A raw spec needs an admin token: a pipeline's run: steps execute shell commands on the server.
    body = {"spec": item.spec.source, "inputs": {}, "trigger": "push",
            "event": {key: str(value) for key, value in item.event.items() if value is not None}}
    created = _post(f"{base}/runs", token, body)
    run_id = created["pipeline_run"]["id"]
    _post(f"{base}/runs/{run_id}/execute", token, {})
    return run_id


def _post(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with _opener.open(request, timeout=API_TIMEOUT_SECONDS) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        try:
            message = json.load(error).get("message") or error.reason
        except ValueError:
            message = error.reason
        raise RuntimeError(f"the API answered {error.code}: {message}") from None
