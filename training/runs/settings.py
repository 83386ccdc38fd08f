"""Settings dataclasses read from TOML defaults and ``--set key=value``: one typed conversion for every trainer."""
from __future__ import annotations

import difflib
import json
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")
KIND_NAMES = {int: "a whole number", float: "a number", str: "text", bool: "true or false",
              list[str]: "a comma-separated list or a JSON list of strings"}


def coerce(cls: type, key: str, raw: Any, error: type[Exception]) -> Any:
    """A TOML value or a ``--set`` string as the type of ``cls``'s field ``key``; ``error`` names the key."""
    types = get_type_hints(cls)
    if key not in types:
        close = difflib.get_close_matches(key, types, 3)
        hint = f"did you mean {' or '.join(close)}?" if close else f"see {cls.__module__.replace('.', '/')}.py."
        raise error(f"Unknown setting {key!r}; {hint}")
    kind = types[key]
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            value = str(raw).strip().lower()
            if value not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value in ("true", "1", "yes")
        if kind == list[str]:
            if isinstance(raw, str) and raw.strip().startswith("["):  # a JSON list keeps commas in items
                raw = json.loads(raw)
            if isinstance(raw, list):
                return [str(v) for v in raw]
            return [part.strip() for part in str(raw).split(",") if part.strip()]
        return kind(raw)
    except (TypeError, ValueError):
        raise error(f"Setting {key} must be {KIND_NAMES.get(kind, str(kind))}, not {raw!r}.") from None


PROFILE_TABLES = ("tiny", "full")  # a TOML file's [tiny] / [full] table applies in that profile only


def from_toml(cls: type[T], path: Path, overrides: dict[str, Any], error: type[Exception],
              profile: str = "full") -> T:
    """``cls`` with the TOML file's values over its defaults, then its table for ``profile``, then ``overrides``.

    Every value is type-checked; ``error`` names the first bad one.
    """
    with Path(path).open("rb") as f:
        table = tomllib.load(f)
    by_profile = {name: table.pop(name, {}) for name in PROFILE_TABLES}
    values = {k: coerce(cls, k, v, error) for k, v in {**table, **by_profile.get(profile, {})}.items()}
    values.update({k: coerce(cls, k, v, error) for k, v in overrides.items()})
    return cls(**values)


def to_dict(settings: Any) -> dict[str, Any]:
    """The settings as plain values, in field order (for config.toml and report.json)."""
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


INTERVALS = ("validation_steps", "checkpointing_steps", "sample_steps")


def scale_intervals(s: T) -> T:
    """``s`` (settings with ``max_steps`` and INTERVALS) with every interval that would not fire before the end cut
    to a quarter of the run (0 stays never).

    The seed's 500-step intervals would leave a 60-step run without a checkpoint, a sample or a validation.
    """
    quarter = max(1, s.max_steps // 4)
    return replace(s, **{key: quarter for key in INTERVALS if getattr(s, key) >= s.max_steps > quarter})
