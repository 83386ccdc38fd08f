"""The README promises only what the hub has: a feature without its tab is called planned, never offered."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_YET = ("planned", "not built yet", "not yet")


def prose(text: str) -> list[str]:
    """The README's lines outside fenced code blocks."""
    return [line for i, line in enumerate(text.split("```")) if i % 2 == 0 for line in line.splitlines()]


def test_hair_try_on_is_planned_until_the_hair_tab_lands():
    tabs = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "tabs").glob("*.py"))
    if re.search(r"gr\.Tab\(\s*[\"']Hair", tabs):
        return  # the tab is there: the README may offer it
    lines = [line for line in prose((ROOT / "README.md").read_text(encoding="utf-8")) if "hair try-on" in line.lower()]
    offered = [line for line in lines if not any(word in line.lower() for word in NOT_YET)]
    assert not offered, offered
    intro = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert "Hair try-on is planned" in intro
