"""The `visinstruct` commands: argument parsing, Rich progress, status, deploy."""

from visinstruct.core.cli.main import COMMANDS, main

__all__ = ["main", "COMMANDS"]
