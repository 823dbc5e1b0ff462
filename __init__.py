"""visinstruct: visual instruction data made with open models."""

# The one version string: pyproject.toml reads it, `visinstruct --version` prints it.
__version__ = "0.3.0"
