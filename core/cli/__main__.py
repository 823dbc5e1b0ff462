"""`python -m visinstruct.core.cli`: the headless commands (the app opens from `visinstruct`)."""

import sys
from collections.abc import Callable

from visinstruct.core.errors import interruptible


def _commands() -> Callable[[], int]:
    from visinstruct.core.cli.main import main

    return main


sys.exit(interruptible(_commands, ends_process=True))
