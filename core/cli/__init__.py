"""The `visinstruct` commands: argument parsing (`main`), config, threshold and Ctrl-C for every
command and the app (`options`), Rich progress, status, deploy through the sagemaker SDK."""

from visinstruct.core.cli.main import COMMANDS, main

__all__ = ["main", "COMMANDS"]
