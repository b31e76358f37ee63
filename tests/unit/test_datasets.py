"""plan/datasets.py: ShareGPT, OpenAI-messages and prompt files as prompts; sampling; one-line errors."""

import contextlib
import json
from pathlib import Path

import pytest

from squall.engine.llm.tokens import make_counter
from squall.plan import datasets
from squall.plan.llm import LlmFlags, llm_spec
from squall.plan.prompts import prefixes
from squall.plan.specs import Prompt
from squall.units import PlanError

CHAT = "http://127.0.0.1:1/v1/chat/completions"
COUNT = make_counter()

SHAREGPT = [
    {
        "id": "a",
        "conversations": [
            {"from": "human", "value": "What is a load test?"},
            {"from": "gpt", "value": "A test that sends many requests at once to a server."},
            {"from": "human", "value": "And an open model?"},
            {"from": "gpt", "value": "Sends on a schedule."},
        ],
    },
    {
        "id": "b",
        "conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Hello there"}],
    },
    {"id": "empty", "conversations": []},
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def jsonl(records: list[object]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_sharegpt_as_a_json_list_and_as_jsonl_gives_the_same_prompts(tmp_path: Path) -> None:
    as_list = datasets.load(write(tmp_path, "d.json", json.dumps(SHAREGPT)))
    as_lines = datasets.load(write(tmp_path, "d.jsonl", jsonl(SHAREGPT)))
    answer1, answer2 = SHAREGPT[0]["conversations"][1]["value"], SHAREGPT[0]["conversations"][3]["value"]  # type: ignore[index]
    want = (
        Prompt(
            text="What is a load test?",
            max_tokens=COUNT(answer1),
            turns=(Prompt(text="And an open model?", max_tokens=COUNT(answer2)),),
        ),
        Prompt(text="Hi", max_tokens=COUNT("Hello there")),
    )
    assert as_list == as_lines == want  # (the record with no turn is left out)


def test_openai_messages_keep_the_system_message_and_the_records_max_tokens(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "a long answer that is not sent"},
            {"role": "user", "content": [{"type": "text", "text": "tw"}, {"type": "text", "text": "o"}]},
        ],
        "max_tokens": 7,
    }
    got = datasets.load(write(tmp_path, "o.jsonl", jsonl([record])))
    want = Prompt(
        messages=(("system", "Be brief."), ("user", "one")),
        max_tokens=7,
        turns=(Prompt("two", max_tokens=7),),
    )
    assert got == (want,)


def test_a_turn_with_no_answer_after_it_has_no_max_tokens(tmp_path: Path) -> None:
    record = {"messages": [{"role": "user", "content": "q"}]}
    assert datasets.load(write(tmp_path, "o.jsonl", jsonl([record]))) == (Prompt("q"),)


def test_leading_assistant_turns_are_left_out(tmp_path: Path) -> None:
    record = {"conversations": [{"from": "gpt", "value": "greeting"}, {"from": "human", "value": "q"}]}
    assert datasets.load(write(tmp_path, "s.jsonl", jsonl([record]))) == (Prompt("q"),)


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("d.json", json.dumps(SHAREGPT), "sharegpt"),
        ("d.jsonl", jsonl(SHAREGPT), "sharegpt"),
        ("d.data", jsonl([{"messages": [{"role": "user", "content": "x"}]}]), "openai"),
        ("d.jsonl", jsonl([{"prompt": "x"}]), "prompts"),
        (
            "d.txt",
            '{"conversations": []}\n',
            "prompts",
        ),  # (a .txt file is a prompt per line, whatever it holds)
        ("d.data", "just a prompt\n", "prompts"),
    ],
)
def test_the_format_is_told_by_content(tmp_path: Path, name: str, text: str, fmt: str) -> None:
    path = write(tmp_path, name, text)
    assert datasets.load(path) == datasets.load(path, fmt)
    others = [f for f in ("sharegpt", "openai", "prompts") if f != fmt]
    for other in others:  # (what another format makes of the file differs, or is refused)
        with contextlib.suppress(PlanError):
            assert datasets.load(path, other) != datasets.load(path)


def test_prompt_files_load_by_content_whatever_their_suffix(tmp_path: Path) -> None:
    got = datasets.load(write(tmp_path, "d.data", jsonl([{"prompt": "p", "max_tokens": 3}])))
    assert got == (Prompt("p", max_tokens=3),)
    assert datasets.load(write(tmp_path, "d.txt", "one\n\ntwo\n")) == (Prompt("one"), Prompt("two"))


def test_an_unknown_shape_asks_for_the_format(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as e:
        datasets.load(write(tmp_path, "d.jsonl", jsonl([{"text": "x"}])))
    assert "give --dataset-format sharegpt, openai or prompts" in str(e.value)


def test_sampling_is_reproducible_and_without_replacement(tmp_path: Path) -> None:
    records = [{"conversations": [{"from": "human", "value": f"q{i}"}]} for i in range(100)]
    path = write(tmp_path, "d.jsonl", jsonl(records))
    a = datasets.load(path, sample=30, seed=7)
    assert a == datasets.load(path, sample=30, seed=7)
    assert a != datasets.load(path, sample=30, seed=8)
    assert len(a) == len({p.text for p in a}) == 30
    more = datasets.load(path, sample=150, seed=7)  # more than there are: each once, then drawn again
    assert len(more) == 150 and {p.text for p in more[:100]} == {f"q{i}" for i in range(100)}


def test_sampling_prompt_files_too(tmp_path: Path) -> None:
    path = write(tmp_path, "d.txt", "".join(f"p{i}\n" for i in range(10)))
    got = datasets.load(path, "prompts", sample=3, seed=1)
    assert len({p.text for p in got}) == 3 and got == datasets.load(path, "prompts", sample=3, seed=1)


BAD_LINES = [
    ("not json", "--dataset {p}:2: not JSON"),
    ("[1, 2]", "--dataset {p}:2: expected an object with 'conversations'"),
    ('{"id": 1}', "--dataset {p}:2: conversations: missing or not a list"),
    ('{"conversations": [1]}', "--dataset {p}:2: conversations[0]: expected an object"),
    (
        '{"conversations": [{"from": "robot", "value": "x"}]}',
        "--dataset {p}:2: conversations[0].from: 'robot' is not",
    ),
    (
        '{"conversations": [{"from": "human"}]}',
        "--dataset {p}:2: conversations[0].value: missing or not a string",
    ),
    ('{"conversations": [], "max_tokens": 0}', "--dataset {p}:2: max_tokens: 0 is not a positive integer"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_malformed_sharegpt_line_names_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, "d.jsonl", jsonl(SHAREGPT[:1]) + line + "\n")
    with pytest.raises(PlanError) as e:
        datasets.load(path, "sharegpt")
    assert str(e.value).startswith(message.format(p=path)), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"messages": {}}, "messages: missing or not a list"),
        ({"messages": ["x"]}, "messages[0]: expected an object with 'role' and 'content'"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role: 'bot' is not a role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content: missing or not a string"),
        ({"messages": [{"role": "user", "content": [{"text": 1}]}]}, "messages[0].content: parts must be"),
        ({"messages": [], "max_tokens": "9"}, "max_tokens: '9' is not a positive integer"),
    ],
)
def test_a_malformed_openai_record_names_file_line_and_field(
    tmp_path: Path, record: object, message: str
) -> None:
    path = write(tmp_path, "o.jsonl", "\n" + jsonl([record]))  # (the record is on line 2)
    with pytest.raises(PlanError) as e:
        datasets.load(path, "openai")
    assert str(e.value).startswith(f"--dataset {path}:2: {message}"), str(e.value)


def test_a_malformed_record_of_a_json_list_names_its_index(tmp_path: Path) -> None:
    path = write(
        tmp_path, "d.json", json.dumps([*SHAREGPT, {"conversations": [{"from": "human", "value": 5}]}])
    )
    with pytest.raises(PlanError) as e:
        datasets.load(path)
    assert str(e.value).startswith(
        f"--dataset {path}: record 3: conversations[0].value: missing or not a string"
    )


@pytest.mark.parametrize(
    ("text", "kw", "message"),
    [
        ("", {}, "--dataset-format 'csv' is not one of auto, sharegpt, openai, prompts"),
        ("[", {"fmt": "sharegpt"}, "a JSON list that does not parse"),
        ("[]", {"fmt": "sharegpt"}, "holds no record with a user turn"),
        ('{"prompt": "x"}', {"sample": 0}, "--dataset-sample must be from 1"),
    ],
)
def test_bad_files_and_options(tmp_path: Path, text: str, kw: dict, message: str) -> None:
    kw = kw or {"fmt": "csv"}
    with pytest.raises(PlanError) as e:
        datasets.load(write(tmp_path, "d.jsonl", text), **kw)
    assert message in str(e.value)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as e:
        datasets.load(tmp_path / "nope.jsonl")
    assert str(e.value).startswith(f"--dataset {str(tmp_path / 'nope.jsonl')!r} cannot be read")


def test_the_spec_takes_the_dataset(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", json.dumps(SHAREGPT))
    spec = llm_spec(CHAT, LlmFlags(dataset=path, dataset_sample=1, output_tokens="5"), seed=3)
    assert len(spec.prompts) == 1 and spec.prompts[0].max_tokens is not None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (LlmFlags(dataset=Path("d"), prompts=Path("p")), "use either --prompts or --dataset, not both"),
        (LlmFlags(dataset=Path("d"), input_tokens="8"), "use either --input-tokens or --dataset, not both"),
        (LlmFlags(dataset_format="openai"), "--dataset-format is for --dataset FILE"),
        (LlmFlags(dataset_sample=3), "--dataset-sample is for --dataset FILE"),
        (LlmFlags(prefixes=3), "--prefixes K needs --prefix-tokens N"),
        (LlmFlags(prefix_tokens=0), "--prefix-tokens must be from 1"),
        (LlmFlags(prefix_tokens=1, prefixes=75), "--prefixes must be from 1 to 74 for 1 token(s)"),
        (LlmFlags(prefix_tokens=8, prefixes=0), "--prefixes must be from 1"),
    ],
)
def test_dataset_and_prefix_flags_that_clash_are_refused(flags: LlmFlags, message: str) -> None:
    with pytest.raises(PlanError) as e:
        llm_spec(CHAT, flags, seed=0)
    assert str(e.value).startswith(message), str(e.value)


def test_prefixes_are_distinct_from_the_first_word_and_n_tokens_long() -> None:
    texts = prefixes(40, 74, seed=1)
    assert len({t.split()[0] for t in texts}) == 74
    assert {COUNT(t) for t in texts} == {len(t.split()) for t in texts} == {40}
    many = prefixes(3, 500, seed=1)
    assert len({tuple(t.split()[:2]) for t in many}) == 500
    assert prefixes(40, 74, seed=1) == texts != prefixes(40, 74, seed=2)


def test_the_spec_holds_k_prefixes_one_by_default() -> None:
    assert len(llm_spec(CHAT, LlmFlags(prefix_tokens=16), seed=0).prefixes) == 1
    spec = llm_spec(CHAT, LlmFlags(prefix_tokens=16, prefixes=4), seed=0)
    assert len(set(spec.prefixes)) == 4 and all(COUNT(p) == 16 for p in spec.prefixes)


def test_output_tokens_fill_in_the_turns_that_have_no_length(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "x y"},
            {"role": "user", "content": "b"},
        ]
    }
    path = write(tmp_path, "o.jsonl", jsonl([record]))
    (p,) = llm_spec(CHAT, LlmFlags(dataset=path, output_tokens="50"), seed=0).prompts
    assert (p.max_tokens, p.turns[0].max_tokens) == (COUNT("x y"), 50)


def test_content_parts_are_sent_as_their_text_in_every_format(tmp_path: Path) -> None:
    from squall.plan.prompts import load as load_prompts

    record = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Sum"}, {"text": "marise"}]}]
    }
    path = write(tmp_path, "parts.jsonl", jsonl([record]))
    want = (("user", "Summarise"),)
    assert load_prompts(path)[0].messages == want  # (--prompts: once sent as the parts' Python text)
    for fmt in ("auto", "openai", "prompts"):
        got = datasets.load(path, fmt, None, 0)[0]
        assert (got.messages or (("user", got.text),)) == want, fmt
    bad = write(tmp_path, "bad.jsonl", jsonl([{"messages": [{"role": "user", "content": 7}]}]))
    with pytest.raises(PlanError, match=r"bad.jsonl:1: messages\[0\].content: missing or not a string"):
        load_prompts(bad)


def test_a_json_error_names_its_column_without_a_colon_after_key(tmp_path: Path) -> None:
    from squall.redact import redact_text

    path = write(tmp_path, "broken.jsonl", '{"messages": []}\n{bad\n')
    with pytest.raises(PlanError) as e:
        datasets.load(path, "openai", None, 0)
    assert str(e.value).startswith(f"--dataset {path}:2: not JSON (")
    assert redact_text(str(e.value)) == str(e.value)  # (no "key: line 1" for the redaction to hide)


def test_a_json_list_is_not_a_prompts_file(tmp_path: Path) -> None:
    path = write(tmp_path, "sg.json", json.dumps([{"conversations": [{"from": "human", "value": "hi"}]}]))
    with pytest.raises(PlanError, match="is a JSON list; a prompts file is text"):
        datasets.load(path, "prompts", None, 0)
