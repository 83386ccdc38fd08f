"""Command-line plumbing shared by app.py and the ``python -m training.*`` commands."""
from __future__ import annotations

import argparse


class UsageError(ValueError):
    """A bad command line; printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line for the caller to print) instead of printing usage."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")
