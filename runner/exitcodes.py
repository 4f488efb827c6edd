"""The exit-code contract of the `forgeyard` command, in one place (see DESIGN.md)."""

SUCCESS = 0  # the run completed, or the files are valid
FAILED = 1  # the pipeline ran and failed
INVALID = 2  # invalid spec or usage: nothing ran
INTERRUPTED = 130  # interrupted (Ctrl-C): the run is recorded as cancelled and its processes are gone

_BY_STATUS = {"completed": SUCCESS, "failed": FAILED, "cancelled": INTERRUPTED}


def for_run_status(status: str) -> int:
    return _BY_STATUS.get(status, FAILED)
