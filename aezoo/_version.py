"""The version of aezoo (setup.cfg reads it from here)."""

__version__ = "0.6.5"
