"""K-Hairstyle's Korean attribute values in English, and the hair prompt built from them (seed 000).

The words live in ``assets/hair/vocabulary.json`` (the seed's ``mapping_dict.json``). A Korean word never reaches
a prompt: a value the vocabulary does not know is left out and returned as untranslated, so the caller can
report it and the vocabulary can grow.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from pipelines.models.registry import ASSETS

VOCABULARY = ASSETS / "hair" / "vocabulary.json"
# The prompt's order in seed 000: length, volume, colour, curl, "<basestyle> hairstyle", ", with <bang> bangs".
PROMPT_ORDER = ("length", "hair-width", "color", "curl")


@dataclass(frozen=True)
class Vocabulary:
    """Per attribute, Korean value → English; ``none`` holds the words that mean "none" (기타, 없음, 해당없음)."""
    words: dict[str, dict[str, str]]
    none: frozenset[str]

    def english(self, attribute: str, value: str) -> str | None:
        """The English of ``value`` ("" for a none word, the value itself when already English); None if unknown."""
        value = str(value).strip()
        known = self.words.get(attribute, {})
        if not value or value in self.none:
            return ""
        if value in known:
            return known[value]
        return value if value in known.values() else None

    def values(self, attribute: str) -> list[str]:
        """The English values of an attribute, for menus."""
        return list(dict.fromkeys(self.words.get(attribute, {}).values()))

    def plain_words(self) -> list[str]:
        """Every plain word a prompt can hold (the English values' and the prompt's own), for a toy tokenizer."""
        import re

        values = " ".join(v for attribute in sorted(self.words) for v in self.words[attribute].values())
        return list(dict.fromkeys(re.findall(r"[a-z]+", f"{values} hairstyle with bangs".lower())))

    def prompt(self, attributes: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
        """The English hair prompt and the (attribute, value) pairs left out as untranslated."""
        untranslated: list[tuple[str, str]] = []

        def word(attribute: str) -> str:
            value = attributes.get(attribute)
            if value is None:
                return ""
            english = self.english(attribute, value)
            if english is None:
                untranslated.append((attribute, str(value)))
            return english or ""

        parts = [w for w in (word(a) for a in PROMPT_ORDER) if w]
        style = word("basestyle")
        parts.append(f"{style} hairstyle" if style else "hairstyle")
        bang = word("bang")
        return " ".join(parts) + (f", with {bang} bangs" if bang else ""), untranslated


@functools.cache
def load(path: Path = VOCABULARY) -> Vocabulary:
    """The shipped vocabulary (read once)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    none = frozenset(data.pop("_none", []))
    words = {k: v for k, v in data.items() if not k.startswith("_")}
    return Vocabulary(words=words, none=none)
