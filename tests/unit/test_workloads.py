"""The workload seam: a plan's workload kind, the WORKLOADS registry wiring it onto the transport it names (an
unknown name is an error, not raw), and the face every sender shows the worker."""

from dataclasses import replace
from pathlib import Path

import pytest

from squall.engine.recorder import Recorder
from squall.engine.transport import TRANSPORTS
from squall.engine.transport.aiohttp import AiohttpTransport
from squall.engine.transport.raw import RawTransport
from squall.engine.workload import WORKLOADS, make_sender, workload_kind
from squall.engine.workload.http import BadRequest, HttpSource
from squall.engine.workload.journey import JourneyWorkload
from squall.engine.workload.llm import LlmSource
from squall.engine.workload.py import PyWorkload
from squall.plan.plan import Client, Plan
from squall.plan.scenario.load import load_scenario
from squall.plan.specs import LlmSpec, PySpec, RequestSpec
from squall.units import PlanError

URL = "http://127.0.0.1:1/v1/chat/completions"
SENDER = ("open", "preconnect", "channel", "begin", "classify", "finish", "close")


def plans(tmp_path: Path) -> dict[str, Plan]:
    doc = tmp_path / "s.yaml"
    doc.write_text(
        "base_url: http://127.0.0.1:1\nscenarios:\n  - {name: s, steps: [{name: a, request: {}}]}\n"
    )
    spec = RequestSpec(URL)
    return {
        "http": Plan(spec),
        "llm": Plan(spec, llm=LlmSpec()),
        "journey": Plan(spec, scenario=load_scenario(doc)),
        "py": Plan(spec, py=PySpec("examples.x:y")),
    }


def test_every_plan_names_its_workload_kind(tmp_path: Path) -> None:
    assert list(WORKLOADS) == ["http", "llm", "journey", "py"]
    assert {kind: workload_kind(plan) for kind, plan in plans(tmp_path).items()} == {
        "http": "http",
        "llm": "llm",
        "journey": "journey",
        "py": "py",
    }


@pytest.mark.parametrize("transport", ["raw", "aiohttp"])
def test_the_registry_wires_each_workload_onto_the_named_transport(tmp_path: Path, transport: str) -> None:
    cls = {"raw": RawTransport, "aiohttp": AiohttpTransport}[transport]
    assert TRANSPORTS[transport]() is cls
    got = {}
    for kind, plan in plans(tmp_path).items():
        rec = Recorder(0, table=[0] * 8)
        got[kind] = make_sender(replace(plan, client=replace(plan.client, transport=transport)), 2, 0, rec)
    assert (type(got["http"]), type(got["http"].source)) == (cls, HttpSource)
    assert (type(got["llm"]), type(got["llm"].source)) == (cls, LlmSource)
    assert (type(got["journey"]), type(got["journey"].http)) == (JourneyWorkload, cls)
    assert type(got["py"]) is PyWorkload
    for sender in got.values():
        assert all(callable(getattr(sender, m, None)) for m in SENDER), type(sender)


def test_an_unknown_transport_is_an_error_not_raw() -> None:
    with pytest.raises(PlanError, match=r"^--transport 'h3' is not one of raw, aiohttp$"):
        make_sender(Plan(RequestSpec(URL), client=Client(transport="h3")), 1)


def test_iteration_workloads_learn_the_measured_start_from_begin(tmp_path: Path) -> None:
    for kind in ("journey", "py"):
        plan = plans(tmp_path)[kind]
        raw = replace(plan, client=replace(plan.client, transport="raw"))
        sender = make_sender(raw, 1, 0, Recorder(0, table=[0] * 8))
        sender.begin(12_345)
        assert sender.measure_start == 12_345, kind  # type: ignore[attr-defined]


def test_a_request_that_cannot_go_on_the_wire_is_bad_request_on_both_transports() -> None:
    plan = Plan(RequestSpec(URL))
    for cls in (RawTransport, AiohttpTransport):
        assert cls(plan, 1).classify(BadRequest("line break")) == "bad_request", cls
    assert (
        AiohttpTransport(plan, 1).classify(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "x")) == "bad_request"
    )
