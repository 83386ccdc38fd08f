"""Clean machine captions for style training: no proper names, no captioner artefacts, one style suffix.

Seed 003: captions must not name characters or films, or the LoRA learns the names instead of the style.
Names are caught two ways: a deny list (case-insensitive words or phrases) and any capitalised word that does
not start a sentence (BLIP writes lowercase, so a capital inside a caption is almost always a name).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

DEFAULT_STYLE_SUFFIX = "in Ghibli style"  # seed 003's captions end with it

# BLIP-large's well-known filler words (from web alt texts), never meaningful in a caption.
BLIP_ARTEFACTS = ("arafed", "araffe", "arafe", "arafly", "araffed", "arrafed")
# Words a caption must not end on once a name after them was removed ("a girl from Totoro" -> "a girl").
DANGLING = {"a", "an", "and", "as", "at", "by", "called", "featuring", "for", "from", "in", "named", "of", "on",
            "the", "to", "with", "'s"}
_WORD = re.compile(r"[^\W\d_][\w'’-]*|\d+|[^\w\s]", re.UNICODE)
_SENTENCE_END = {".", "!", "?"}


def load_deny_words(path: str | Path | None) -> list[str]:
    """Words or phrases, one per line; blank lines and ``#`` comments ignored."""
    if not path:
        return []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def remove_denied(text: str, deny: Iterable[str]) -> str:
    """Drop each deny-listed word or phrase (whole words, any case), longest first so phrases win."""
    for phrase in sorted({*deny, *BLIP_ARTEFACTS}, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(phrase)}(?:['’]s)?(?!\w)", " ", text, flags=re.IGNORECASE)
    return text


def remove_names(text: str) -> str:
    """Drop capitalised words that do not start a sentence (and their possessive 's)."""
    kept: list[str] = []
    sentence_start = True
    for token in _WORD.findall(text):
        is_word = token[0].isalpha()
        if is_word and token[0].isupper() and not sentence_start and token != "I":
            continue
        kept.append(token)
        sentence_start = token in _SENTENCE_END or (sentence_start and not is_word)
    return _join(kept)


def _join(tokens: list[str]) -> str:
    """Tokens back into text: no space before punctuation, none doubled."""
    text = ""
    for token in tokens:
        text += token if (token[0] in ",.;:!?)" or not text) else f" {token}"
    return re.sub(r"([,;:])\s*(?=[,.;:!?]|$)", "", text).strip()


def tidy(text: str) -> str:
    """Collapse spaces and strip leftovers at the ends: punctuation, articles and prepositions."""
    dangling = "|".join(re.escape(w) for w in sorted(DANGLING, key=len, reverse=True))
    text = re.sub(rf"\s+(?:{dangling})(?=\s*[,.;:!?])", "", text.replace(" ,", ","), flags=re.IGNORECASE)
    words = text.split()
    while words and (words[-1].lower().strip(",;:") in DANGLING or not any(c.isalnum() for c in words[-1])):
        words.pop()
    while words and not any(c.isalnum() for c in words[0]):
        words.pop(0)
    return " ".join(words).rstrip(",;:.!?")


def clean_caption(text: str, deny: Iterable[str] = (), style_suffix: str = "") -> str:
    """Names and artefacts removed, then ``style_suffix`` appended once (e.g. "in Ghibli style")."""
    suffix = style_suffix.strip()
    body = text.strip().rstrip(".")
    if suffix and body.lower().endswith(suffix.lower()):
        body = body[: -len(suffix)]  # already styled: strip it first, or cleaning would eat its capitals
    body = tidy(remove_names(remove_denied(body, deny)))
    return f"{body} {suffix}".strip() if suffix else body


def add_suffix(text: str, style_suffix: str) -> str:
    """A caption the user wrote, kept as written, with ``style_suffix`` appended unless it already ends with it."""
    suffix, body = style_suffix.strip(), text.strip()
    if not suffix or body.lower().rstrip(".").endswith(suffix.lower()):
        return body
    return f"{body.rstrip('.')} {suffix}".strip()
