"""Secrets kept out of what squall prints and writes: judged by a value's name and by its look.

Only what is shown or stored is redacted; the traffic itself carries the real values. Every secret becomes
`MARK`, the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MARK = "***"

# A name is secret when its last word (split at punctuation and camelCase) is one of these or ends in one:
# api_key, X-Goog-Api-Key, PRIVATE-TOKEN, accessToken, client_secret, Set-Cookie, PHPSESSID, sig; or when it
# ends in "session id" (X-Session-Id). Plurals stay ordinary (max_tokens, api_keys are counts, not keys), and
# so do names where such a word only qualifies the last (session_count, auth_mode, token_discrepancy).
_SECRET_WORD = re.compile(
    r"(?:(?:api|access|secret|private|client|auth|subscription|master|app|license|signing|encryption)?key"
    r"|.*(?:token|secret|passw(?:or)?d|cookie|sessid|sessionid|signature|credentials?)"
    r"|auth|authori[sz]ation|authentication|sig|session|pwd|passphrase|jwt|bearer)"
)
_WORDS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

# Values that look like keys wherever they stand (the scheme before a bearer token is kept).
_LOOKS = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"(?:sk|rk|pk)-[A-Za-z0-9_-]{8,}"  # OpenAI, Anthropic (sk-ant-...), and the like
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}"  # Stripe
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key ids
    r"|AIza[A-Za-z0-9_-]{30,}"  # Google API keys
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{16,}"
    r"|xox[abposr]-[A-Za-z0-9-]{8,}|hf_[A-Za-z0-9]{20,}"
    r"|eyJ[A-Za-z0-9_-]{6,}\.eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"  # JWT
    r")(?![A-Za-z0-9_-])"
)
_SCHEME = re.compile(r"(?i)\b(bearer|basic|digest)(\s+)((?-i:[A-Za-z0-9._~+/=-]{6,}))(?![A-Za-z0-9._~+/=-])")
# NAME=value, NAME: value, "NAME": "value" (JSON), with an optional auth scheme before the value; a cookie's
# value runs to the end of the line or quote.
_NAME_SEP = re.compile(r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z][A-Za-z0-9_.-]*)(?P<sep>[\"']?\s*[:=]\s*[\"']?)")
_VALUE = re.compile(
    r"(?P<scheme>(?i:bearer|basic|token|digest)\s+)?(?P<val>\{\{[^{}]*\}\}|[^\s\"'&,;)}\]<>]+)"
)
_COOKIE = re.compile(r"[^\n\"']+")
_PLACEHOLDER = re.compile(r"\*+|\.{2,}|…|<[^<>]*>|\{\{[^{}]*\}\}")  # '-H "Authorization: ..."' is advice
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+")
# 'NAME: value' / 'NAME; value' / 'NAME=value' / 'NAME value' quoted whole (a header in an error message).
_QUOTED = re.compile(
    r"(?P<q>['\"])(?P<name>[A-Za-z][A-Za-z0-9_.-]*+)(?P<sep>\s*+[:;=]\s*+|\s++)(?P<val>[^'\"]*+)(?P=q)"
)
_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)([^/?#@\s'\"]+)@")
_HEADER_SEP = re.compile(r"\s*[:;=]\s*|\s+")


def is_secret_name(name: str) -> bool:
    """True when a header, field or parameter name suggests a key, token, secret, password, signature,
    session or cookie."""
    words = [w.lower() for w in _WORDS.split(name) if w]
    if not words:
        return False
    return _SECRET_WORD.fullmatch(words[-1]) is not None or words[-2:] in (["session", "id"], ["sess", "id"])


_PROSE = re.compile(r"[a-z]{1,12}")
_PROSE_GOES_ON = re.compile(r"\s+[a-z]")


def _prose(name: re.Match[str], value: re.Match[str]) -> bool:
    """Whether 'NAME: word ...' is a sentence about NAME ('token: must be a string'), not NAME's value."""
    return (
        ":" in name["sep"]
        and value["scheme"] is None
        and _PROSE.fullmatch(value["val"]) is not None
        and _PROSE_GOES_ON.match(value.string, value.end()) is not None
    )


def _pairs(text: str) -> str:
    """Each NAME=value or NAME: value whose name is secret, with the value replaced (a name that is not secret
    leaves its value to be scanned for pairs of its own)."""
    out: list[str] = []
    pos = 0
    while (m := _NAME_SEP.search(text, pos)) is not None:
        if not is_secret_name(m["name"]):
            out.append(text[pos : m.end()])
            pos = m.end()
            continue
        cookie = m["name"].lower().endswith("cookie")
        v = (_COOKIE if cookie else _VALUE).match(text, m.end())
        out.append(text[pos : m.end()])
        pos = m.end()
        if (
            v is not None
            and not _PLACEHOLDER.fullmatch(v["val"] if not cookie else v[0])
            and (cookie or not _prose(m, v))
        ):
            out.append(f"{'' if cookie else v['scheme'] or ''}{MARK}")
            pos = v.end()
    out.append(text[pos:])
    return "".join(out)


def _quoted(m: re.Match[str]) -> str:
    if not is_secret_name(m["name"]) or not m["val"] or _PLACEHOLDER.fullmatch(m["val"].strip()):
        return m[0]
    return f"{m['q']}{m['name']}{m['sep']}{MARK}{m['q']}"


def redact_text(text: str) -> str:
    """Any text (an error message, a warning, a command line) with every secret it shows replaced."""
    if len(text) < 4:
        return text
    text = _URL.sub(lambda m: _url(m[0]), text)
    text = _QUOTED.sub(_quoted, text)
    text = _pairs(text)
    text = _SCHEME.sub(lambda m: f"{m[1]}{m[2]}{MARK}" if _coded(m[3]) else m[0], text)
    return _LOOKS.sub(MARK, text)


def _coded(word: str) -> bool:
    """A credential, not a word ("Basic Information"): a digit or symbol, or mixed case past the first."""
    rest = word[1:]
    return (
        any(c.isdigit() or c in "._~+/=-" for c in word)
        or (rest.lower() != rest and rest.upper() != rest)
        or (word[0].islower() and rest.lower() != rest)
    )


def _userinfo(m: re.Match[str]) -> str:
    user, sep, _ = m[2].partition(":")
    return f"{m[1]}{user}:{MARK}@" if sep else f"{m[1]}{MARK}@"


def redact_url(url: str) -> str:
    """The URL with its password (or a lone user, often a token) and its secret query parameters replaced."""
    return redact_text(url)


def _url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(_userinfo, url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name, sep, _ = user.partition(":")
        netloc = f"{name}:{MARK}@{host}" if sep else f"{MARK}@{host}"
    query = "&".join(_param(p) for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _param(p: str) -> str:
    name, sep, _ = p.partition("=")
    return f"{name}={MARK}" if sep and is_secret_name(name) else p


def redact_header(text: str) -> str:
    """`Name: value` (or a malformed `Name; value`, `Name=value`) with the value replaced when the name is
    secret, else with what looks like a key in the value replaced."""
    m = re.match(r"\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+", text)
    if m is not None and is_secret_name(m[0]):
        sep = _HEADER_SEP.match(text, m.end())
        if sep is not None and text[sep.end() :]:
            return f"{text[: sep.end()]}{MARK}"
    return redact_text(text)


def redact_json(value: Any, secret: bool = False) -> Any:
    """A JSON value with the strings under secret names (at any depth) replaced; numbers and booleans stay."""
    if isinstance(value, dict):
        return {k: redact_json(v, secret or is_secret_name(str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, secret) for v in value]
    if isinstance(value, str):
        return MARK if secret and value else redact_text(value)
    return value


def redact_body(text: str) -> str:
    """A request body as typed (-b, --body-json): JSON redacted by field names, anything else as text."""
    import json

    try:
        value = json.loads(text)
        if not isinstance(value, dict | list):
            return redact_text(text)
        redacted = redact_json(value)
        return text if redacted == value else json.dumps(redacted, ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to walk: judged as text
        return redact_text(text)


_SHORT_H = re.compile(r"(-[a-z]*H)(.*)", re.DOTALL)


def redact_argv(argv: list[str]) -> list[str]:
    """The arguments as typed, with every secret replaced: --api-key values (and those of any --secret-name
    option, in a --target-cmd too), secret headers, secret JSON or form fields of a body, URL passwords and
    query keys, and whatever looks like a key."""
    out: list[str] = []
    expect: Callable[[str], str] | None = None
    for a in argv:
        if expect is not None:
            out.append(expect(a))
            expect = None
            continue
        name, eq, value = a.partition("=")
        if a.startswith("--") and (shown := _option_value(name)) is not None:
            if eq:
                out.append(f"{name}={shown(value)}")
            else:
                expect = shown
                out.append(a)
        elif (short := _SHORT_H.fullmatch(a)) is not None:  # -H VALUE, -kH VALUE, -HVALUE, -kHVALUE
            if short[2]:
                out.append(short[1] + redact_header(short[2]))
            else:
                expect = redact_header
                out.append(a)
        elif a == "-b":
            expect = redact_body
            out.append(a)
        elif a.startswith("-b") and not a.startswith("--"):  # -bVALUE
            out.append("-b" + redact_body(a[2:]))
        else:
            out.append(redact_text(a))
    return out


def _option_value(option: str) -> Callable[[str], str] | None:
    """How a long option's value is shown, or None for an option whose value is ordinary text."""
    if option == "--header":
        return redact_header
    if option in ("--body", "--body-json"):
        return redact_body
    if option == "--target-cmd":
        return _command
    # --api-key, --token, --password: hidden (the name of a file, --api-key-file, shows)
    if not option.endswith("-file") and is_secret_name(option[2:]):
        return _hidden
    return None


def _hidden(_: str) -> str:
    return MARK


def _command(text: str) -> str:
    """A command line given as one argument (--target-cmd), redacted as argv."""
    import shlex

    try:
        return shlex.join(redact_argv(shlex.split(text)))
    except ValueError:
        return redact_text(text)


_ENCODED = "HISTF"  # an encoded HdrHistogram (base64): never text, and its "=" padding is no pair
# Numbers and encoded histograms only (a long soak's series is large): not walked.
_NUMBERS = frozenset(("histograms", "timeseries"))


def redact_doc(doc: Any) -> Any:
    """A result document (or a hunt's, a matrix's) with every secret in its text replaced, and --param values
    under secret names; the histograms and the per-second series (numbers) are left alone. In place."""
    if isinstance(doc, str):
        return _shown(doc)
    stack = [doc] if isinstance(doc, dict | list) else []
    while stack:  # not recursive: a hostile file may nest a thousand deep
        node = stack.pop()
        for k, v in list(node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(v, str):
                node[k] = _shown(v)
            elif k == "params" and isinstance(v, dict):  # --param name=value: judged by the name too
                try:
                    node[k] = redact_json(v)
                except RecursionError:
                    node[k] = MARK
            elif isinstance(v, dict | list) and k not in _NUMBERS:
                stack.append(v)
    return doc


def _shown(text: str) -> str:
    return text if text.startswith(_ENCODED) else redact_text(text)
