"""plan/trace.py and the trace's schedule: lines, prompts of the asked lengths with shared blocks, offsets
split over workers, and the load a trace makes."""

import json
from pathlib import Path

import pytest

from squall.engine.llm.tokens import make_counter
from squall.engine.pacer import NEVER, NS, TracePacer
from squall.engine.schedule import make_schedule, trace_schedule
from squall.plan import trace
from squall.plan.build import LoadFlags, TargetFlags, build, study_plan
from squall.plan.llm import LlmFlags, llm_spec
from squall.plan.load import trace_rate
from squall.plan.specs import RequestSpec
from squall.units import PlanError

CHAT = "http://127.0.0.1:1/v1/chat/completions"
COUNT = make_counter()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def mooncake(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


ROWS = [
    {"timestamp": 1000, "input_length": 1100, "output_length": 20, "hash_ids": [7, 8, 9]},
    {"timestamp": 1500, "input_length": 700, "output_length": 5, "hash_ids": [7, 3]},
    {"timestamp": 4000, "input_length": 1300, "output_length": 1},
]


def test_mooncake_lines_become_prompts_of_their_lengths_and_offsets(tmp_path: Path) -> None:
    t = trace.load(write(tmp_path, "t.jsonl", mooncake(ROWS)))
    assert t.offsets == (0.0, 0.5, 3.0)
    assert [COUNT(p.text) for p in t.prompts] == [1100, 700, 1300]
    assert [p.max_tokens for p in t.prompts] == [20, 5, 1]
    assert not t.reordered


def test_equal_hash_ids_give_equal_blocks_and_the_rest_is_the_lines_own(tmp_path: Path) -> None:
    t = trace.load(write(tmp_path, "t.jsonl", mooncake(ROWS)), block_tokens=512)
    a, b, c = (p.text.split() for p in t.prompts)
    assert a[:512] == b[:512]  # hash id 7 at block 0 of both
    assert a[512:1024] != b[512:700]  # 8 and 3 differ
    assert a[1024:] != c[1024:1100]  # hash 9's first 76 tokens vs line 3's own
    assert b[512:700] != a[512:700]
    assert a[:512] != c[:512]  # line 3 has no hash ids: all its own


def test_a_block_in_a_later_place_is_the_same_text(tmp_path: Path) -> None:
    rows = [
        {"timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": [1, 2]},
        {"timestamp": 1, "input_length": 8, "output_length": 1, "hash_ids": [2, 1]},
    ]
    a, b = (
        p.text.split() for p in trace.load(write(tmp_path, "t.jsonl", mooncake(rows)), block_tokens=4).prompts
    )
    assert (a[:4], a[4:]) == (b[4:], b[:4])


def test_the_block_size_and_the_seed_decide_the_text(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", mooncake(ROWS))
    base = trace.load(path).prompts
    assert trace.load(path).prompts == base
    assert trace.load(path, seed=1).prompts != base
    small = trace.load(path, block_tokens=16).prompts
    assert [COUNT(p.text) for p in small] == [1100, 700, 1300]
    a, b, _ = (p.text.split() for p in small)
    assert a[:16] == b[:16] and a[16:32] != b[16:32]


def test_speed_divides_the_offsets(tmp_path: Path) -> None:
    t = trace.load(write(tmp_path, "t.jsonl", mooncake(ROWS)), speed=2)
    assert t.offsets == (0.0, 0.25, 1.5)


def test_unsorted_lines_are_sorted_stably_and_said_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [
        {"timestamp": 30, "input_length": 3, "output_length": 1},
        {"timestamp": 10, "input_length": 1, "output_length": 1},
        {"timestamp": 30, "input_length": 4, "output_length": 1},
        {"timestamp": 20, "input_length": 2, "output_length": 1},
    ]
    t = trace.load(write(tmp_path, "t.jsonl", mooncake(rows)))
    assert t.reordered
    notes: list[str] = []
    llm_spec(CHAT, LlmFlags(trace=tmp_path / "t.jsonl"), seed=0, notes=notes)
    assert notes == [
        f"--trace {tmp_path}/t.jsonl: the timestamps are out of order; replaying the lines sorted by time"
    ]
    llm_spec(CHAT, LlmFlags(trace=write(tmp_path, "s.jsonl", mooncake(ROWS))), seed=0, notes=notes)
    assert len(notes) == 1  # (a sorted trace: nothing to say)
    assert [COUNT(p.text) for p in t.prompts] == [1, 2, 3, 4]
    assert t.offsets == (0.0, 0.01, 0.02, 0.02)
    assert capsys.readouterr() == ("", "")  # (the plan layer prints nothing: the CLI says the notes)


@pytest.mark.parametrize(
    ("text", "offsets", "lengths"),
    [
        ("timestamp,input_tokens,output_tokens\n100,5,6\n350,7,8\n", (0.0, 0.25), [(5, 6), (7, 8)]),
        ("Timestamp,input_length,output_length\n100.5,5,6\n", (0.0,), [(5, 6)]),
        (  # BurstGPT: seconds from the trace's start
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
            "5,ChatGPT,472,18,490,Conversation log\n45,GPT-4,1087,0,1087,Conversation log\n",
            (0.0, 40.0),
            [(472, 18), (1087, 1)],  # (0 answer tokens, a failed request: asked for 1)
        ),
        (  # Azure LLM inference traces: a date and time, 7 decimals
            "TIMESTAMP,ContextTokens,GeneratedTokens\n"
            "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n",
            (0.0, 4.314579),
            [(374, 44), (396, 109)],
        ),
    ],
)
def test_csv_traces(tmp_path: Path, text: str, offsets: tuple, lengths: list) -> None:
    t = trace.load(write(tmp_path, "t.csv", text))
    assert t.offsets == pytest.approx(offsets, abs=1e-6)
    assert [(COUNT(p.text), p.max_tokens) for p in t.prompts] == lengths


BAD = [
    ("t.jsonl", '{"timestamp": 1, "input_length": 2, "output_length": 3}\nnope\n', "t.jsonl:2: not JSON"),
    (
        "t.jsonl",
        '{"timestamp": 1, "input_length": 2, "output_length": 3}\n[1]\n',
        "t.jsonl:2: expected an object",
    ),
    ("t.jsonl", '{"input_length": 2, "output_length": 3}\n', "t.jsonl:1: timestamp: missing"),
    (
        "t.jsonl",
        '{"timestamp": -1, "input_length": 2, "output_length": 3}\n',
        "t.jsonl:1: timestamp: -1 is not a time",
    ),
    (
        "t.jsonl",
        '{"timestamp": "x", "input_length": 2, "output_length": 3}\n',
        "t.jsonl:1: timestamp: 'x' is not",
    ),
    ("t.jsonl", '{"timestamp": 1, "output_length": 3}\n', "t.jsonl:1: input_length: missing"),
    (
        "t.jsonl",
        '{"timestamp": 1, "input_length": 2.5, "output_length": 3}\n',
        "t.jsonl:1: input_length: 2.5 is not",
    ),
    (
        "t.jsonl",
        '{"timestamp": 1, "input_length": 2, "output_length": true}\n',
        "t.jsonl:1: output_length: True is",
    ),
    (
        "t.jsonl",
        '{"timestamp": 1, "input_length": 2, "output_length": 3, "hash_ids": ["a"]}\n',
        "t.jsonl:1: hash_ids: expected a list of integers",
    ),
    ("t.csv", "when,in,out\n1,2,3\n", "t.csv:1: expected a JSONL trace or a CSV header"),
    ("t.csv", "timestamp,input_tokens,output_tokens\n1,2,3\n\n5,x,3\n", "t.csv:4: input_tokens: 'x' is not"),
    ("t.csv", "timestamp,input_tokens,output_tokens\n1,2\n", "t.csv:2: 2 columns where the header has 3"),
    (
        "t.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n",
        "t.csv:2: TIMESTAMP: 'yesterday' is not a date",
    ),
    ("t.csv", "timestamp,input_tokens,output_tokens\n", "holds no line to replay"),
    (  # a cell over the csv module's field limit (131,072 characters)
        "t.csv",
        "timestamp,input_tokens,output_tokens\n1,2,3\n" + "1," + "9" * 131_073 + ",3\n",
        "t.csv:3: not a CSV line (field larger than field limit (131072))",
    ),
    ("t.csv", "", "t.csv:1: expected a JSONL trace or a CSV header"),
    (
        "t.jsonl",
        '{"timestamp": 0, "input_length": 2, "output_length": 3}\n{"timestamp": 1e20, "input_length": 2, '
        '"output_length": 3}\n',
        "t.jsonl:2: timestamp: 1e+20 is past the year 2286",
    ),
    (
        "t.jsonl",
        '{"timestamp": 0, "input_length": 2, "output_length": 3}\n{"timestamp": 9e12, "input_length": 2, '
        '"output_length": 3}\n',
        "the replay would last 104,166.7 days, over 30",
    ),
    (
        "t.csv",
        "timestamp,input_tokens,output_tokens\n0,5,5\n10,5,5,9\n",
        "t.csv:3: 4 columns where the header",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD)
def test_a_bad_line_names_file_line_and_field(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(PlanError) as e:
        trace.load(path)
    got = str(e.value)
    assert message in got and "\n" not in got, got
    if ":1:" in message or ":2:" in message or ":4:" in message:
        assert got.startswith(f"--trace {tmp_path}/{message}"), got


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"speed": 0}, "--trace-speed must be a number greater than 0"),
        ({"speed": float("nan")}, "--trace-speed must be a number greater than 0"),
        ({"block_tokens": 0}, "--block-tokens must be from 1"),
    ],
)
def test_bad_trace_options(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(PlanError) as e:
        trace.load(write(tmp_path, "t.jsonl", mooncake(ROWS)), **kw)
    assert str(e.value).startswith(message)


def test_the_pacer_splits_the_lines_over_workers() -> None:
    offsets = tuple(i * NS // 10 for i in range(7))
    got = []
    for w in range(3):
        p = TracePacer(offsets, w, 3)
        got.append([p.next_send() for _ in range(4)])
    assert got == [
        [offsets[0], offsets[3], offsets[6], NEVER],
        [offsets[1], offsets[4], NEVER, NEVER],
        [offsets[2], offsets[5], NEVER, NEVER],
    ]


def test_the_pacer_counts_its_own_sends_between_two_times() -> None:
    offsets = tuple(i * 10 for i in range(10))  # 0, 10, ..., 90
    p = TracePacer(offsets, 1, 3)  # sends 1, 4, 7 (at 10, 40, 70)
    assert [p.count_between(a, b) for a, b in ((0, 100), (10, 40), (11, 71), (41, 70), (80, 100))] == [
        3,
        1,
        2,
        0,
        0,
    ]


def test_the_schedule_follows_the_offsets_from_t0_and_ends() -> None:
    s = trace_schedule((0.0, 0.25, 0.5, 2.0), 1, 2, t0=1000, end=None)
    assert [s.next_due(), s.next_due(), s.next_due()] == [1000 + NS // 4, 1000 + 2 * NS, None]
    cut = trace_schedule((0.0, 0.25, 0.5, 2.0), 0, 1, t0=0, end=NS)
    assert [cut.next_due() for _ in range(4)] == [0, NS // 4, NS // 2, None]  # -d 1s cuts the replay short


def trace_plan(tmp_path: Path, flags: LoadFlags = LoadFlags(workers=2), **kw: object) -> object:
    path = write(tmp_path, "t.jsonl", mooncake(ROWS))
    spec = llm_spec(CHAT, LlmFlags(trace=path, trace_speed=2), seed=0)
    return build(RequestSpec(url=CHAT, method="POST"), flags, llm=spec, argv=[], **kw)


def test_a_trace_is_the_open_model_with_one_request_per_line(tmp_path: Path) -> None:
    plan = trace_plan(tmp_path)
    assert plan.open_model and plan.stop.requests == 3 and plan.stop.duration_s is None  # type: ignore[attr-defined]
    assert plan.llm.trace_offsets == (0.0, 0.25, 1.5)  # type: ignore[attr-defined]
    assert plan.load.rate == 2.0  # type: ignore[attr-defined]  # (3 lines over 1.5 s)
    assert make_schedule(plan, 1, 0, None).next_due() == NS // 4  # type: ignore[arg-type]


def test_d_cuts_a_trace_short_and_c_sets_the_connections(tmp_path: Path) -> None:
    plan = trace_plan(tmp_path, LoadFlags(workers=1, duration="1s"), connections=5)
    assert (plan.stop.duration_s, plan.stop.requests, plan.load.connections) == (1.0, 3, 5)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("flags", "kw", "clash"),
    [
        (LoadFlags(rate=5), {}, "-r/--rate"),
        (LoadFlags(), {"requests": 9}, "-n/--requests"),
        (LoadFlags(stage=("1s:5/s",)), {}, "--stage"),
        (LoadFlags(profile="ramp", duration="1s"), {}, "--profile"),
        (LoadFlags(think="1s"), {}, "--think"),
        (LoadFlags(arrival="poisson"), {}, "--arrival"),
        (LoadFlags(shard="0/2"), {}, "--shard"),
        (LoadFlags(warmup="1s"), {}, "--warmup"),  # (the lines due in it would not be counted)
    ],
)
def test_what_else_sets_the_load_is_refused(tmp_path: Path, flags: LoadFlags, kw: dict, clash: str) -> None:
    with pytest.raises(PlanError) as e:
        trace_plan(tmp_path, flags, **kw)
    assert str(e.value) == f"--trace sends at the trace's own times, one request per line; drop {clash}"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (LlmFlags(trace_speed=2), "--trace-speed is for --trace FILE"),
        (LlmFlags(block_tokens=64), "--block-tokens is for --trace FILE"),
        (LlmFlags(trace=Path("t"), input_tokens="5"), "use either --input-tokens or --trace, not both"),
        (LlmFlags(trace=Path("t"), dataset=Path("d")), "use either --dataset or --trace, not both"),
        (
            LlmFlags(trace=Path("t"), max_tokens=5, turns=2),
            "--trace sets each request's prompt, length and order; drop --max-tokens and --turns",
        ),
        (
            LlmFlags(trace=Path("t"), max_inflight=4),
            "--max-inflight is not for --trace: -c sets the connections the trace is sent over",
        ),
        (
            LlmFlags(trace=Path("t"), prefix_tokens=5),
            "--trace sets each request's prompt, length and order; drop --prefix-tokens",
        ),
    ],
)
def test_trace_flags_that_clash_are_refused(flags: LlmFlags, message: str) -> None:
    with pytest.raises(PlanError) as e:
        llm_spec(CHAT, flags, seed=0)
    assert str(e.value).startswith(message), str(e.value)


def test_hunt_and_soak_refuse_a_trace(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as e:
        study_plan(CHAT, TargetFlags(llm=True), LoadFlags(), 4, opts=LlmFlags(trace=tmp_path / "t.jsonl"))
    assert str(e.value).startswith("--trace is replayed by `squall llm URL --trace FILE`")


def test_the_mean_rate_of_a_trace() -> None:
    assert trace_rate((0.0, 1.0, 2.0, 4.0)) == 1.0
    assert trace_rate((0.0, 0.0)) == 2.0  # (no span: the lines over a second)


def test_each_line_carries_its_input_length_and_workers_take_it_without_counting(tmp_path: Path) -> None:
    from squall.engine.workload.llm import LlmSource
    from squall.plan.plan import assemble
    from squall.plan.specs import LlmSpec, Prompt

    t = trace.load(write(tmp_path, "t.jsonl", mooncake(ROWS)))
    assert [p.input_tokens for p in t.prompts] == [1100, 700, 1300]
    # A length given is taken as it is (2 words said to be 7 tokens); none given, the text is counted.
    spec = LlmSpec(prompts=(Prompt("a b", input_tokens=7), Prompt("a b c")))
    source = LlmSource(assemble(RequestSpec(CHAT, "POST"), llm=spec), 0)
    assert source.input_estimates == [7, 3]
    assert source.reader(0).input_tokens == 7
