"""Command-line plumbing shared by app.py and the ``python -m training.*`` commands."""
from __future__ import annotations

import argparse
from pathlib import Path


class UsageError(ValueError):
    """A bad command line; printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line for the caller to print) instead of printing usage."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags every trainer shares: where the run folder goes, the profile, resume and overrides."""
    p.add_argument("--output", required=True, type=Path, help="the run folder to write")
    p.add_argument("--profile", default="auto", help="auto, tiny or full")
    p.add_argument("--resume", default=None, help="'latest' or a checkpoints/step-N folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")


def split_sets(items: list[str], error: type[Exception]) -> list[tuple[str, str]]:
    """``--set key=value`` strings as (key, raw value) pairs; ``error`` names an item without ``=``."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise error(f"--set {item!r} is not key=value.")
        pairs.append((key.strip(), value))
    return pairs
