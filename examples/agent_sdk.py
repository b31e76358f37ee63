"""A small async "agent SDK" and a squall py workload for it, with a mock LLM client behind it.

The SDK is what a team would ship: `Negotiation(llm).run(topic)` makes 3-7 LLM calls (formulate, then
offer/counter rounds, then agree). The mock client answers after a fixed latency and, at the rates asked for,
times out, answers empty or answers malformed JSON; the SDK raises on the last two, as a real one would.

    squall py examples.agent_sdk:workload -c 10 -d 10s
    squall py examples.agent_sdk:workload --param agents=5,10,50 --param concurrency=1,5,10 -d 5s
"""

from __future__ import annotations

import asyncio
import json
import random

import squall


class EmptyReply(Exception):
    """The model answered nothing."""


class MalformedReply(Exception):
    """The model's answer is not the JSON the SDK asked for."""


class MockLLM:
    """An LLM client stand-in: fixed latency, and injected timeouts, empty and malformed replies."""

    def __init__(
        self, latency_s: float, timeout_rate: float, empty_rate: float, bad_rate: float, seed: int
    ) -> None:
        self.latency_s = latency_s
        self.rates = (timeout_rate, empty_rate, bad_rate)
        self.rng = random.Random(seed)

    async def complete(self, prompt: str) -> str:
        timeout_rate, empty_rate, bad_rate = self.rates
        r = self.rng.random()
        if r < timeout_rate:
            await asyncio.sleep(self.latency_s * 3)
            raise TimeoutError("the model did not answer in time")
        await asyncio.sleep(self.latency_s)
        if r < timeout_rate + empty_rate:
            return ""
        if r < timeout_rate + empty_rate + bad_rate:
            return "{not json"
        return json.dumps({"text": f"re: {prompt[:20]}", "price": self.rng.randint(1, 100)})


class Negotiation:
    """The SDK's public API: one negotiation between `agents` parties, 3-7 LLM calls."""

    def __init__(self, llm: MockLLM, agents: int, rng: random.Random) -> None:
        self.llm, self.agents, self.rng = llm, agents, rng

    async def _ask(self, prompt: str) -> dict:
        squall.count("llm_calls")
        text = await self.llm.complete(prompt)
        if not text:
            raise EmptyReply(prompt)
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise MalformedReply(text) from e

    async def run(self, topic: str) -> int:
        with squall.timer("formulation"):
            await self._ask(f"formulate a position on {topic} for {self.agents} agents")
        rounds = self.rng.randint(1, 5)
        price = 0
        for _ in range(rounds):
            with squall.timer("offer"):
                price = (await self._ask(f"offer on {topic}"))["price"]
        with squall.timer("agreement"):
            await self._ask(f"agree at {price}")
        squall.count("agreements")
        return price


class Workload:
    """What `squall py examples.agent_sdk:workload` runs: one negotiation per iteration."""

    def __init__(
        self, agents: int, latency_ms: float, timeouts: float, empty: float, malformed: float
    ) -> None:
        self.agents = agents
        self.llm = MockLLM(latency_ms / 1000, timeouts, empty, malformed, seed=agents)
        self.opened = False

    async def setup(self) -> None:
        self.opened = True  # a real workload would open its client sessions here

    async def user_setup(self, user: squall.User) -> None:
        user.state["rng"] = random.Random(user.id)

    async def run(self, user: squall.User) -> None:
        await Negotiation(self.llm, self.agents, user.state["rng"]).run(f"item-{user.id}-{user.iteration}")

    async def teardown(self) -> None:
        self.opened = False


def workload(
    agents: int = 5,
    latency_ms: float = 5.0,
    timeouts: float = 0.02,
    empty: float = 0.02,
    malformed: float = 0.02,
) -> Workload:
    """The factory squall calls once per worker, with the --param values (`concurrency` goes to -c)."""
    return Workload(agents, latency_ms, timeouts, empty, malformed)
