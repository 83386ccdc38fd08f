"""Command-line plumbing shared by app.py and the ``python -m training.*`` commands."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.models.registry import PROFILES
from pipelines.models.runtime import check_writable


class UsageError(ValueError):
    """A bad command line; printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line for the caller to print) instead of printing usage."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags every trainer shares: where the run folder goes, the profile, resume and overrides."""
    p.add_argument("--output", required=True, type=Path, help="the run folder to write")
    add_profile_argument(p)
    p.add_argument("--resume", default=None, help="'latest' or a checkpoints/step-N folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")


def add_profile_argument(p: argparse.ArgumentParser) -> None:
    """``--profile``, refused at parse time when it names no profile."""
    p.add_argument("--profile", default="auto", choices=PROFILES, help="auto, tiny or full (default auto)")


def check_output(path: Path, flag: str = "--output") -> Path:
    """Create the folder ``path`` and prove it is writable, or raise UsageError naming it and the flag."""
    return check_writable(path, "output folder", f"choose another {flag}.", UsageError)


def refuse(prog: str, err: Exception) -> int:
    """Print a refused command line as one line on stderr; returns exit code 2."""
    print(f"{prog}: {err}", file=sys.stderr)
    return 2


def split_sets(items: list[str], error: type[Exception]) -> list[tuple[str, str]]:
    """``--set key=value`` strings as (key, raw value) pairs; ``error`` names an item without ``=``."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise error(f"--set {item!r} is not key=value.")
        pairs.append((key.strip(), value))
    return pairs
