"""Token counting: tiktoken's cl100k when installed, else a close estimate of how BPE tokenizers count."""

from __future__ import annotations

import re
from collections.abc import Callable

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_PIECES = re.compile(r"[A-Za-z]+|\d{1,3}|[^\sA-Za-z\d]")
_LONG = re.compile(r"[A-Za-z]{9,}")


def estimate_tokens(text: str) -> int:
    """Tokens in `text` as BPE tokenizers count them, roughly: a CJK character or a piece of punctuation is
    one token, an ASCII word one token per five or six letters (at least one), digits in groups of three."""
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    if cjk:
        text = _CJK.sub(" ", text)
    # Every piece is one token, but a word of 9 letters or more (round(len / 5.5) > 1): counted in two
    # C-level passes, since this runs once per answer.
    n = cjk + len(_PIECES.findall(text))
    for word in _LONG.findall(text):
        n += round(len(word) / 5.5) - 1
    return n


def make_counter() -> Callable[[str], int]:
    """tiktoken's cl100k counter when tiktoken and its data are installed, else `estimate_tokens`."""
    try:
        import tiktoken  # type: ignore[import-not-found]

        enc = tiktoken.get_encoding("cl100k_base")
        return lambda text: len(enc.encode(text, disallowed_special=()))
    except Exception:
        return estimate_tokens
