"""Prompts for LLM runs: from a file (.txt, .jsonl) or synthetic, of a given size, seeded so runs repeat."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from squall.plan.specs import Prompt
from squall.units import PlanError

MAX_SYNTHETIC_TOKENS = 1_000_000  # --input-tokens/--output-tokens: beyond any model's context window
SYNTHETIC_WORDS = 4_000_000  # all synthetic prompts together: a few tens of MB, made in about a second

# Common English words that are one token each in the usual BPE vocabularies.
_WORDS = (
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "time",
    "about",
    "up",
    "out",
    "into",
    "than",
    "them",
    "some",
    "could",
    "only",
    "other",
    "new",
    "also",
    "then",
    "these",
    "two",
    "may",
    "first",
    "any",
    "like",
    "now",
    "my",
    "such",
    "over",
    "even",
    "most",
)


def parse_size(text: str, what: str) -> tuple[int, float]:
    """Parse `N` or `N:stddev` (a token count and its standard deviation)."""
    mean, _, sd = text.partition(":")
    try:
        n, s = int(mean), float(sd) if sd else 0.0
    except ValueError:
        raise PlanError(f"{what} {text!r} is not N or N:stddev, e.g. 512 or 512:64") from None
    if not 1 <= n <= MAX_SYNTHETIC_TOKENS or not 0 <= s <= MAX_SYNTHETIC_TOKENS:  # (nan fails too)
        raise PlanError(
            f"{what} {text!r}: N must be from 1 to {MAX_SYNTHETIC_TOKENS:,} and stddev from 0 to "
            f"{MAX_SYNTHETIC_TOKENS:,}"
        )
    return n, s


def _draw(rng: random.Random, mean: int, sd: float) -> int:
    return max(1, min(MAX_SYNTHETIC_TOKENS, round(rng.gauss(mean, sd)))) if sd else mean


def synthetic(
    count: int, input_tokens: tuple[int, float], output_tokens: tuple[int, float] | None, seed: int
) -> tuple[Prompt, ...]:
    """`count` prompts of about input_tokens tokens each (one common word per token), seeded.

    Long prompts come in fewer variants (at most SYNTHETIC_WORDS words in all), so a 100k-token prompt
    does not cost a thousand copies of itself."""
    rng = random.Random(seed)
    count = max(1, min(count, SYNTHETIC_WORDS // max(1, input_tokens[0])))
    out = []
    for i in range(count):
        n = _draw(rng, *input_tokens)
        words = [f"#{i}", *rng.choices(_WORDS, k=n - 1)]
        max_tokens = _draw(rng, *output_tokens) if output_tokens else None
        out.append(Prompt(text=" ".join(words), max_tokens=max_tokens))
    return tuple(out)


def message_text(content: object, where: str) -> str:
    """A message's content as text: a string, or content parts (`[{type: text, text}, ...]`) whose text is
    joined; PlanError naming `where` for anything else."""
    if isinstance(content, list):  # content parts: their text, joined (an image part has none)
        if not all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
            raise PlanError(f"{where}: parts must be objects with a 'text' string")
        content = "".join(p.get("text", "") for p in content)
    if not isinstance(content, str):
        raise PlanError(f"{where}: missing or not a string; give the message's text")
    return content


def load(path: Path, flag: str = "--prompts", jsonl: bool | None = None) -> tuple[Prompt, ...]:
    """Prompts from a .txt file (one per line) or .jsonl (`prompt` or `messages`, optional `max_tokens`);
    `jsonl` None: by the file's suffix; errors name `flag`."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PlanError(f"{flag} {str(path)!r} cannot be read: {e.strerror or e}") from None
    if jsonl is None and path.suffix.lower() in (".json", ".csv", ".yaml", ".yml"):
        raise PlanError(f"{flag} {str(path)!r}: use a .txt file (one prompt per line) or .jsonl")
    try:
        lines = raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise PlanError(f"{flag} {str(path)!r} is not UTF-8 text") from None
    if not (path.suffix == ".jsonl" if jsonl is None else jsonl):
        found = tuple(Prompt(text=line) for line in lines if line.strip())
        if not found:
            raise PlanError(f"{flag} {str(path)!r} holds no prompt (one per line)")
        return found
    prompts = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise PlanError(f"{flag} {path}:{no}: not JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise PlanError(f"{flag} {path}:{no}: expected an object with 'prompt' or 'messages'")
        max_tokens = obj.get("max_tokens")
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise PlanError(f"{flag} {path}:{no}: max_tokens must be a positive integer")
        if isinstance(obj.get("messages"), list):
            messages = []
            for i, m in enumerate(obj["messages"]):
                if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                    raise PlanError(
                        f"{flag} {path}:{no}: messages[{i}]: each message needs 'role' and 'content'"
                    )
                messages.append(
                    (m["role"], message_text(m.get("content"), f"{flag} {path}:{no}: messages[{i}].content"))
                )
            prompts.append(Prompt(messages=tuple(messages), max_tokens=max_tokens))
        elif isinstance(obj.get("prompt"), str):
            prompts.append(Prompt(text=obj["prompt"], max_tokens=max_tokens))
        else:
            raise PlanError(f"{flag} {path}:{no}: expected 'prompt' (a string) or 'messages' (a list)")
    if not prompts:
        raise PlanError(f"{flag} {str(path)!r} holds no prompt (one JSON object per line)")
    return tuple(prompts)


def shuffled(prompts: tuple[Prompt, ...], seed: int) -> tuple[Prompt, ...]:
    """The prompts in a seeded random order."""
    out = list(prompts)
    random.Random(seed).shuffle(out)
    return tuple(out)


def words(n: int, rng: random.Random) -> list[str]:
    """`n` common words drawn by `rng`: n tokens by squall's counter and the usual BPE vocabularies."""
    return rng.choices(_WORDS, k=n)


MAX_PREFIXES = len(_WORDS) ** 2  # distinct in their first two words


def prefixes(tokens: int, count: int, seed: int) -> tuple[str, ...]:
    """`count` distinct texts of `tokens` tokens (one common word each), seeded: they differ from the first
    word on (from the second for more than one a word), so no two share a prefix a cache could reuse."""
    if not 1 <= tokens <= MAX_SYNTHETIC_TOKENS:
        raise PlanError(f"--prefix-tokens must be from 1 to {MAX_SYNTHETIC_TOKENS:,} (got {tokens})")
    most = len(_WORDS) if tokens == 1 else MAX_PREFIXES
    if not 1 <= count <= most:
        raise PlanError(f"--prefixes must be from 1 to {most:,} for {tokens} token(s) (got {count})")
    if tokens * count > SYNTHETIC_WORDS:
        raise PlanError(
            f"--prefix-tokens {tokens} x --prefixes {count} is over {SYNTHETIC_WORDS:,} tokens in all; "
            "give fewer or shorter prefixes"
        )
    rng = random.Random(f"{seed}:prefixes")
    lead = list(_WORDS)
    rng.shuffle(lead)
    w = len(lead)
    out = []
    for i in range(count):
        head = [lead[i % w]] if count <= w else [lead[i % w], lead[i // w]]
        out.append(" ".join([*head, *words(tokens - len(head), rng)][:tokens]))
    return tuple(out)
