"""The `visinstruct` commands: argument parsing (`main`), config, threshold and Ctrl-C for every
command and the app (`options`), Rich progress, status, deploy through the sagemaker SDK."""

import sys

if sys.argv[:1] == ["-m"]:
    # `python -m visinstruct.core.cli` imports this package (and so the commands, a second)
    # before its __main__ runs; sys.argv[0] is "-m" only meanwhile. A SIGTERM in that second
    # is noted, and __main__ stops with "interrupted" (exit 3) as everywhere else.
    from visinstruct.core.errors import note_sigterm

    note_sigterm()

from visinstruct.core.cli.main import COMMANDS, main  # noqa: E402

__all__ = ["main", "COMMANDS"]
