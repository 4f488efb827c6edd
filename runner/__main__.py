"""`python -m runner` is the `forgeyard` command."""

import sys

from runner.cli import main

sys.exit(main())
