"""plan/llm.py: `squall llm`'s flags as typed -> the LlmSpec."""

from pathlib import Path

import pytest

from squall.plan.llm import LlmFlags, llm_spec
from squall.units import PlanError

CHAT = "http://127.0.0.1:1/v1/chat/completions"


def test_the_spec_from_the_flags() -> None:
    flags = LlmFlags(model="m", max_tokens=7, body_json='{"top_p": 0.5}', input_tokens="16", api_key=("k",))
    spec = llm_spec(CHAT, flags, seed=0)
    got = (spec.api, spec.model, spec.max_tokens, spec.body_json, spec.api_keys, len(spec.prompts))
    assert got == ("chat", "m", 7, (("top_p", 0.5),), ("k",), 1000)


def test_a_key_from_the_environment_leaves_an_authorization_header_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SQUALL_API_KEY", "env")
    spec = llm_spec(CHAT, LlmFlags(), seed=0, header=("Authorization: Bearer x",))
    assert spec.api_keys == ("env",)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (LlmFlags(prompts=Path("p.txt"), input_tokens="8"), "use either --prompts or --input-tokens"),
        (LlmFlags(text_path="a.b"), "--text-path is for --api sse"),
        (LlmFlags(body_json="{"), "--body-json is not JSON"),
        (LlmFlags(body_json="[1]"), "--body-json must be a JSON object"),
        (
            LlmFlags(api_key=("k",)),
            "--api-key/--api-key-file and -H 'Authorization: ...' both set the key; use one",
        ),
        (LlmFlags(max_tokens=5, output_tokens="9"), "--max-tokens and --output-tokens both set"),
    ],
)
def test_contradictions_are_refused(flags: LlmFlags, message: str) -> None:
    with pytest.raises(PlanError) as e:
        llm_spec(CHAT, flags, seed=0, header=("authorization: x",))
    assert str(e.value).startswith(message)
