"""`squall llm`'s flags as typed -> the LlmSpec: prompts, extra body, keys, goodput."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from squall.units import PlanError, parse_duration

if TYPE_CHECKING:
    from squall.plan.specs import LlmSpec, Prompt

DEFAULT_TEXT_PATH = "choices.0.delta.content"


@dataclass(frozen=True, slots=True)
class LlmFlags:
    """`squall llm`'s own options as typed (api None: guessed from the URL's path)."""

    api: str | None = None
    no_stream: bool = False
    model: str = "default"
    max_tokens: int | None = None
    temperature: float | None = None
    body_json: str | None = None
    prompts: Path | None = None
    input_tokens: str | None = None
    output_tokens: str | None = None
    shuffle: bool = False
    api_key: tuple[str, ...] = ()
    api_key_file: Path | None = None
    key_per: str = "request"
    text_path: str = DEFAULT_TEXT_PATH
    done_marker: str = "[DONE]"
    goodput: tuple[str, ...] = ()
    turns: int | None = None
    max_inflight: int | None = None
    dataset: Path | None = None
    dataset_format: str = "auto"
    dataset_sample: int | None = None
    exact_output: bool = False
    trace: Path | None = None
    trace_speed: float = 1.0
    block_tokens: int = 512
    prefix_tokens: int | None = None
    prefixes: int | None = None
    cancel_after: str | None = None
    cancel_rate: float = 0.0


def llm_spec(
    url: str, flags: LlmFlags, seed: int, header: tuple[str, ...] = (), notes: list[str] | None = None
) -> LlmSpec:
    """The LlmSpec for `url` (`header`: the -H values); PlanError when options contradict each other.
    What the user should know of the inputs (a trace sorted) is added to `notes` for the CLI to say."""
    import orjson

    from squall.plan import prompts as prompt_source
    from squall.plan.build import api_keys
    from squall.plan.specs import LlmSpec, api_from_path, parse_goodput

    api = flags.api or api_from_path(url)
    _check_sources(flags)
    if flags.text_path != DEFAULT_TEXT_PATH:
        _check_text_path(api)
    out_spec = (
        prompt_source.parse_size(flags.output_tokens, "--output-tokens")
        if flags.output_tokens is not None
        else None
    )
    if flags.temperature is not None and not 0 <= flags.temperature <= 100:  # (nan fails too)
        raise PlanError(f"--temperature must be a finite number of 0 or more (got {flags.temperature})")
    offsets: tuple[float, ...] = ()
    if flags.trace is not None:
        from squall.plan import trace

        replay = trace.load(flags.trace, flags.trace_speed, flags.block_tokens, seed)
        if replay.reordered and notes is not None:
            notes.append(
                f"--trace {flags.trace}: the timestamps are out of order; replaying the lines sorted by time"
            )
        chosen, offsets = replay.prompts, replay.offsets
    elif flags.prompts is not None or flags.dataset is not None:
        if flags.dataset is not None:
            from squall.plan import datasets

            chosen = datasets.load(flags.dataset, flags.dataset_format, flags.dataset_sample, seed)
        else:
            chosen = prompt_source.load(flags.prompts)  # type: ignore[arg-type]
        if out_spec is not None:
            drawn = prompt_source.synthetic(len(chosen), (1, 0), out_spec, seed)
            chosen = tuple(_fill(p, m.max_tokens) for p, m in zip(chosen, drawn, strict=True))
    else:
        given = flags.input_tokens if flags.input_tokens is not None else "32"
        size = prompt_source.parse_size(given, "--input-tokens")
        chosen = prompt_source.synthetic(1000, size, out_spec, seed)
    prefixes: tuple[str, ...] = ()
    if flags.prefix_tokens is not None:
        prefixes = prompt_source.prefixes(
            flags.prefix_tokens, 1 if flags.prefixes is None else flags.prefixes, seed
        )
    if flags.shuffle:
        chosen = prompt_source.shuffled(chosen, seed)
    extra: dict[str, object] = {}
    if flags.body_json is not None:
        try:
            extra = orjson.loads(flags.body_json)
        except orjson.JSONDecodeError as e:
            raise PlanError(f"--body-json is not JSON: {e}") from None
        if not isinstance(extra, dict):
            raise PlanError("--body-json must be a JSON object")
    keys_given = bool(flags.api_key or flags.api_key_file)  # not only from the environment
    if keys_given and any(h.partition(":")[0].strip().lower() == "authorization" for h in header):
        raise PlanError("--api-key/--api-key-file and -H 'Authorization: ...' both set the key; use one")
    if flags.max_tokens is not None and flags.output_tokens is not None:
        raise PlanError("--max-tokens and --output-tokens both set the answer's length; use one")
    return LlmSpec(
        api=api,
        stream=not flags.no_stream,
        model=flags.model,
        max_tokens=flags.max_tokens,
        temperature=flags.temperature,
        body_json=tuple(extra.items()),
        prompts=chosen,
        api_keys=api_keys(list(flags.api_key), flags.api_key_file),
        key_per=flags.key_per,
        text_path=flags.text_path,
        done_marker=flags.done_marker,
        goodput=tuple(parse_goodput(g) for g in flags.goodput),
        turns=flags.turns if flags.turns is not None else 1,
        max_inflight=flags.max_inflight,
        exact_output=flags.exact_output,
        cancel_after=parse_duration(flags.cancel_after, "--cancel-after") if flags.cancel_after else None,
        cancel_rate=flags.cancel_rate,
        prefixes=prefixes,
        trace_offsets=offsets,
    )


def _fill(p: Prompt, max_tokens: int | None) -> Prompt:
    """The prompt with `max_tokens` (--output-tokens) where it, or one of its later turns, has none."""
    turns = tuple(replace(t, max_tokens=t.max_tokens or max_tokens) for t in p.turns)
    return replace(p, max_tokens=p.max_tokens or max_tokens, turns=turns)


def _check_sources(flags: LlmFlags) -> None:
    """PlanError for prompt sources given together, or a source's options without it."""
    given = [
        name
        for name, value in (
            ("--prompts", flags.prompts),
            ("--input-tokens", flags.input_tokens),
            ("--dataset", flags.dataset),
            ("--trace", flags.trace),
        )
        if value is not None
    ]
    if len(given) == 2:
        raise PlanError(f"use either {given[0]} or {given[1]}, not both: each gives the prompts")
    if len(given) > 2:
        raise PlanError(f"use one of {', '.join(given)}: each gives the prompts")
    if flags.dataset is None and (flags.dataset_format != "auto" or flags.dataset_sample is not None):
        used = "--dataset-format" if flags.dataset_format != "auto" else "--dataset-sample"
        raise PlanError(f"{used} is for --dataset FILE: add --dataset or drop it")
    if flags.trace is None and (flags.trace_speed != 1.0 or flags.block_tokens != 512):
        used = "--trace-speed" if flags.trace_speed != 1.0 else "--block-tokens"
        raise PlanError(f"{used} is for --trace FILE: add --trace or drop it")
    if flags.prefixes is not None and flags.prefix_tokens is None:
        raise PlanError("--prefixes K needs --prefix-tokens N (the length of each shared prefix)")
    if flags.trace is not None and flags.max_inflight is not None:
        raise PlanError("--max-inflight is not for --trace: -c sets the connections the trace is sent over")
    if flags.trace is not None:
        clash = [
            name
            for name, value in (
                ("--output-tokens", flags.output_tokens is not None),
                ("--max-tokens", flags.max_tokens is not None),
                ("--shuffle", flags.shuffle),
                ("--turns", (flags.turns or 1) > 1),
                ("--prefix-tokens", flags.prefix_tokens is not None),
            )
            if value
        ]
        if clash:
            raise PlanError(
                f"--trace sets each request's prompt, length and order; drop {' and '.join(clash)}"
            )


def _check_text_path(api: str) -> None:
    """--text-path is given: PlanError unless `api`'s shape reads its text where the path points."""
    from squall.engine.llm.apis import APIS

    shape = APIS.get(api)
    if shape is None or shape.text_path:
        return  # (an unknown --api is refused with the list of names when the spec is checked)
    takes = [name for name, s in APIS.items() if s.text_path]
    own = [name for name, s in APIS.items() if not s.text_path]
    listed = f"{', '.join(own[:-1])} and {own[-1]}" if len(own) > 1 else own[0]
    raise PlanError(f"--text-path is for --api {' or '.join(takes)}; {listed} read their own fields")
