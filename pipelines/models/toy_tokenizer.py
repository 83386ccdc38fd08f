"""Generate the toy model's CLIP tokenizer: byte-level BPE whose merges make each world word one token.

A character-level tokenizer makes the tiny text encoder spend its capacity on spelling; whole-word tokens
let it learn the conditioning in a few thousand steps. Words outside the list still tokenize (byte by byte).
"""
from __future__ import annotations

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from pipelines import toy_world

EXTRA_WORDS = ("a", "on", "background", "sks", "pink", "photo", "of", "person", "style", "in", "and", "with")
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def world_words() -> list[str]:
    words = [*toy_world.COLORS, *toy_world.SHAPES, *toy_world.BACKGROUNDS, *EXTRA_WORDS]
    return list(dict.fromkeys(words))


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply merges by rank, the way the tokenizers library does."""
    while len(symbols) > 1:
        pairs = [(ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def build_vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Merges appended word by word: a later merge never changes an earlier word, which is already whole."""
    merges: list[tuple[str, str]] = []
    for word in words:
        symbols = _bpe(list(word[:-1]) + [word[-1] + "</w>"], {m: r for r, m in enumerate(merges)})
        while len(symbols) > 1:
            merges.append((symbols[0], symbols[1]))
            symbols = [symbols[0] + symbols[1]] + symbols[2:]
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    return vocab, merges


def build_tokenizer(model_max_length: int = 32, words: list[str] | None = None) -> CLIPTokenizer:
    """A CLIPTokenizer in which every word of ``words`` (default: the toy world's) is one token."""
    words = world_words() if words is None else words
    vocab, merges = build_vocab_and_merges(words)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges,
                              model_max_length=model_max_length)
    for word in words:
        pieces = tokenizer.tokenize(word)
        if pieces != [word + "</w>"]:
            raise RuntimeError(f"toy tokenizer splits {word!r} into {pieces}")
    return tokenizer
