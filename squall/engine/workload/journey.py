"""Scenario runs: a channel is one virtual user, and one send() is one iteration of a weighted journey.

The worker paces iterations exactly as it paces requests (closed or open model, stages, think time between
iterations, -n as an iteration budget); this workload runs each iteration's steps through the run's
transport (`Transport.request`, raw or aiohttp), records every step into the worker's recorder (the whole
run) and into the step's own recorder (`summary.steps.<name>`), and the iteration into its journey's
recorder. Think time also separates the steps inside an iteration. A step whose Authorization, x-api-key
or api-key header takes a data row's value is counted in that key's part too (`summary.by_key`).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
from time import perf_counter_ns
from typing import Any

import orjson
from yarl import URL

from squall.engine.llm.apis import APIS, prompt_text, request_body
from squall.engine.llm.history import dumps, key_part
from squall.engine.llm.stream import AnswerReader, Reading
from squall.engine.llm.tokens import make_counter
from squall.engine.recorder import Recorder
from squall.engine.transport.base import AnswerCut, Channel, Interrupted, Owner, TaskChannel, Transport
from squall.engine.workload.http import BadRequest, Request, build
from squall.plan.plan import Plan
from squall.plan.scenario.model import Journey, Scenario, Step
from squall.plan.specs import LlmSpec, Prompt

STEP = "step"
JOURNEY = "journey"
KEY = "key"
KEY_HEADERS = ("authorization", "x-api-key", "api-key")
# Distinct keys each worker keeps apart (the cap is per worker: with -w 4 up to 4 x 256 keys in all, by which
# worker met them first); later ones are pooled under "other", and their values are not stored.
KEY_PARTS = 256


class StepFailed(Exception):
    """A step's response failed its expect or extract; `kind` says which (it ends the iteration)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _UserChannel(TaskChannel):
    """One virtual user: its variables (user id, data row, extracted values) and its running iteration."""

    __slots__ = ("iteration", "t", "uid")

    def __init__(self, t: JourneyWorkload, owner: Owner, uid: int) -> None:
        super().__init__(owner)
        self.t, self.uid = t, uid
        self.iteration = 0

    async def go(self) -> None:
        t = self.t
        journey = t.pick()
        env = t.variables(self)
        self.iteration += 1
        started = perf_counter_ns()
        failed_at: str | None = None
        history: list[tuple[str, str]] = []  # the iteration's conversation (LLM steps with history: true)
        try:
            for i, step in enumerate(journey.steps):
                if i and t.think is not None:
                    await asyncio.sleep(t.think())
                if not await t.run_step(step, env, self.start, history):
                    failed_at = step.name
                    break
        except asyncio.CancelledError:
            self.busy = False
            self.owner.on_failure(self, Interrupted())
            return
        except Exception as e:  # a bug in a step must not kill the worker: count it, end the iteration
            failed_at = f"{type(e).__name__}"
        done = perf_counter_ns()
        if self.start >= t.measure_start:
            rec = t.parts[JOURNEY, journey.name]
            if failed_at is None:
                rec.response(200, self.start, started, done, done, 0)
            else:  # a journey that failed has no duration, as a request with no answer has no latency
                rec.failure(f"failed_at:{failed_at}")
        self.busy = False
        self.owner.on_response(self, 0, done, done, 0)


class JourneyWorkload:
    """Runs a scenario file's journeys over a transport (its `request`), one task per iteration."""

    def __init__(self, plan: Plan, worker: int, rec: Recorder, http: Transport) -> None:
        scenario: Scenario = plan.scenario
        self.plan, self.scenario, self.worker = plan, scenario, worker
        self.http = http
        self.name = http.name
        self.rec = rec
        self.measure_start = 0  # set by begin() once the run's t0 is known
        self.rng = random.Random(f"{plan.seed}:journeys:{worker}")
        weights = list(itertools.accumulate(j.weight for j in scenario.journeys))
        self.cumulative, self.total_weight = weights, weights[-1]
        self.think = (
            plan.load.think.sampler(random.Random(f"{plan.seed}:steps:{worker}")) if plan.load.think else None
        )
        self.uids = plan.spread.user_ids(plan.load.connections, worker)
        self.iterations = itertools.count(worker, plan.spread.workers)  # workers take turns: no row twice
        self.count_tokens = make_counter()
        llm_steps = {s.name for j in scenario.journeys for s in j.steps if s.llm is not None}
        self.readings = {  # one per LLM step: how its answers are read
            s.name: Reading(APIS[s.llm.api], s.llm.stream, self.count_tokens)
            for j in scenario.journeys
            for s in j.steps
            if s.llm is not None
        }
        self.parts: dict[tuple[str, str], Recorder] = {}
        for name in scenario.step_names:
            step = Recorder(worker, 0, llm=name in llm_steps, open_model=False, table=rec.table, sparse=True)
            self.parts[STEP, name] = step
        for j in scenario.journeys:
            self.parts[JOURNEY, j.name] = Recorder(worker, 0, open_model=False, table=rec.table, sparse=True)
        rec.parts = self.parts
        # Per key: each step's key header whose value comes from a data row (its template names a column).
        columns = set(scenario.data_columns)
        self.key_headers = {
            s.name: tpl
            for j in scenario.journeys
            for s in j.steps
            for name, tpl in s.headers
            if name.lower() in KEY_HEADERS and tpl.names & columns
        }
        self.key_llm = bool(llm_steps)
        self.key_names: dict[str, str] = {}  # a header's value -> its part's name (hashed once)
        self.pooled = False  # a key past KEY_PARTS went into "other" (said once, in the window's notes)

    async def open(self) -> None:
        """Opens the transport the steps go over."""
        await self.http.open()

    async def preconnect(self, channels: list[Channel], within_s: float) -> int:
        """Nothing: the steps' pooled connections open as the first steps go out."""
        return 0

    def channel(self, owner: Owner) -> Channel:
        """A new virtual user."""
        return _UserChannel(self, owner, next(self.uids))

    def grow(self, connections: int) -> None:
        """Let the transport's pools hold `connections` (a steer added users past -c)."""
        grow = getattr(self.http, "grow", None)  # (aiohttp's pools are capped; raw's channels are its own)
        if grow is not None:
            grow(connections)

    def begin(self, measure_start_ns: int) -> None:
        """Iterations that start from `measure_start_ns` on are measured."""
        self.measure_start = measure_start_ns

    def classify(self, exc: BaseException) -> str:
        """The transport's error kind."""
        return self.http.classify(exc)

    def finish(self) -> None:
        """Nothing to add to the last window."""

    async def close(self) -> None:
        """Closes the transport."""
        await self.http.close()

    # -- one iteration -------------------------------------------------------------------------------

    def pick(self) -> Journey:
        i = bisect.bisect_right(self.cumulative, self.rng.random() * self.total_weight)
        return self.scenario.journeys[min(i, len(self.scenario.journeys) - 1)]

    def key_recorder(self, step: Step, env: dict[str, Any]) -> Recorder | None:
        """The part of the key the step sends (its key header's value from a data row), or None."""
        tpl = self.key_headers.get(step.name)
        if tpl is None:
            return None
        value = str(tpl.render(env))
        name = self.key_names.get(value)
        if name is None:
            if len(self.key_names) < KEY_PARTS:
                name = self.key_names[value] = key_part(value)
            else:  # (not stored: memory would grow with every new data row)
                name = "other"
                if not self.pooled:
                    self.pooled = True
                    self.rec.notes["keys_pooled"] = KEY_PARTS  # (the result's warning)
        return self.rec.part(KEY, name, self.key_llm)

    def variables(self, ch: _UserChannel) -> dict[str, Any]:
        sc = self.scenario
        n = next(self.iterations)
        env: dict[str, Any] = {"user": ch.uid, "worker": self.worker, "iteration": ch.iteration}
        env.update(sc.row(ch.uid if sc.data_per == "user" else n))
        return env

    async def run_step(
        self, step: Step, env: dict[str, Any], intended: int, history: list[tuple[str, str]] | None = None
    ) -> bool:
        """One request; True when it passed (then its extracts are in `env`). An LLM step with `history`
        sends the conversation so far before its prompt, then adds its prompt and the answer as read."""
        t = self
        rec, step_rec = t.rec, t.parts[STEP, step.name]
        key_rec = t.key_recorder(step, env) if t.key_headers else None
        recs = (rec, step_rec) if key_rec is None else (rec, step_rec, key_rec)
        measured = intended >= t.measure_start
        carried = history if step.llm is not None and step.llm.history else None
        try:
            req, reader, prompt = t._build(step, env, carried)
        except BadRequest:  # a data row put a line break in a header: never sent, counted
            if measured:
                for r in recs:
                    r.failure("bad_request")
            return False
        start = perf_counter_ns()
        try:
            answer = await t.http.request(req, reader)
        except asyncio.CancelledError:
            if measured:
                for r in recs:
                    r.interrupted += 1
            raise
        except Exception as e:
            if measured:
                kind = t.classify(e)
                if isinstance(e, AnswerCut) and reader is not None:
                    kind = "stream_broken"  # cut after the answer began, as `squall llm` counts it
                for r in recs:
                    r.failure(kind)
            return False
        status, first, done, nbytes = answer.status, answer.first, answer.done, answer.nbytes
        if carried is not None and reader is not None:
            reader.finish(done)  # (idempotent: the text as read, a cut or empty answer as what arrived)
            said = reader.text()
            carried.append(("user", prompt))
            if said or (step.llm is not None and APIS[step.llm.api].empty_message_ok):
                carried.append(("assistant", said))  # (Anthropic refuses an empty message: left out)
        if not measured:
            for r in recs:
                r.warmup += 1
        elif reader is not None:
            for r in recs:
                r.answer(status, start, start, first, done, nbytes, reader, False)
        else:
            for r in recs:
                r.response(status, start, start, first, done, nbytes)
        # One rule for the step and its journey: a status the step allows is ok in both; whatever the step
        # counts as an error (with its kind) is what ends the iteration, and nothing else does.
        if status >= 400:
            if status not in step.expect.status:
                return False
            if measured:  # a negative test: the error status is the step's success
                for r in recs:
                    r.expect(status)
        elif reader is not None and reader.finish(done) is not None:
            return False  # (an error body is no answer to read: only a 1xx-3xx answer's stream is judged)
        try:
            t._check(step, status, answer.body, reader, answer.headers, env)
        except StepFailed as e:
            if measured:
                for r in recs:
                    r.reject(e.kind)
            return False
        return True

    def _build(
        self, step: Step, env: dict[str, Any], history: list[tuple[str, str]] | None = None
    ) -> tuple[Request, AnswerReader | None, str]:
        """The step's request, its answer reader (LLM steps) and its rendered prompt ("" for a request)."""
        sc = self.scenario
        url = str(URL(sc.base_url + str(step.path.render(env)), encoded=False))
        headers = tuple((name, str(tpl.render(env))) for name, tpl in step.headers)
        if step.llm is not None:
            call = step.llm
            prompt = str(call.prompt.render(env))
            spec = LlmSpec(api=call.api, stream=call.stream, model=call.model, max_tokens=call.max_tokens)
            p = Prompt(prompt)
            if history:  # (a journey's few steps: the list is rebuilt, not kept encoded as --turns does)
                if APIS[call.api].history_field is not None:
                    p = Prompt(messages=(*history, ("user", prompt)))
                else:
                    p = Prompt("\n".join([*(text for _, text in history), prompt]))
            body = request_body(spec, p)
            body.update(call.extra.render(env))
            defaults = (("Content-Type", "application/json"),)
            if call.stream:
                defaults += (("Accept", "text/event-stream"),)
            reader = AnswerReader(self.readings[step.name], self.count_tokens(prompt_text(p)))
            # (history.dumps: an earlier answer may hold a lone surrogate, which orjson refuses)
            return build(step.method, url, headers, dumps(body), defaults), reader, prompt
        data = b""
        defaults = ()
        if step.body is not None:
            value = step.body.render(env)
            if step.body_is_json:
                data = orjson.dumps(value)
                defaults = (("Content-Type", "application/json"),)
            else:
                data = str(value).encode()
        return build(step.method, url, headers, data, defaults), None, ""

    @staticmethod
    def _check(step: Step, status: int, body: bytes, reader: Any, head: Any, env: dict[str, Any]) -> None:
        expect = step.expect
        if expect.status and status not in expect.status:
            raise StepFailed("expect_status")
        text = "".join(reader.pieces) if reader is not None else None
        doc: Any = None
        for ex in step.extract:
            if ex.header is not None:
                value = head.get(ex.header)
                if value is None:
                    raise StepFailed("extract")
                env[ex.name] = value
                continue
            if doc is None:
                try:
                    doc = orjson.loads(body) if reader is None else orjson.loads(text or "null")
                except orjson.JSONDecodeError:
                    raise StepFailed("extract") from None
            try:
                env[ex.name] = ex.path.find(doc)  # type: ignore[union-attr]
            except LookupError:
                raise StepFailed("extract") from None
        if expect.body_contains is not None:  # after extract: the check may use what this step extracted
            haystack = text if text is not None else body.decode("utf-8", "replace")
            if str(expect.body_contains.render(env)) not in haystack:
                raise StepFailed("expect_body")
