"""`forgeyard cleanup`: runs the retention once and prints what it cleaned as JSON; the policy is runner.cleanup's."""

from __future__ import annotations

import json
from argparse import Namespace

from runner import exitcodes


def cleanup_command(args: Namespace) -> int:
    from runner import database
    from runner.cleanup import cleanup_expired

    database.connect()
    print(json.dumps(cleanup_expired()))
    return exitcodes.SUCCESS
