"""visinstruct: visual instruction data made with open models."""

__version__ = "0.1.0"
