"""Transports (bytes on the wire) and their registry, `TRANSPORTS`; `squall.engine.workload` wires a plan's
workload onto one of them."""

from __future__ import annotations

from collections.abc import Callable


def _raw() -> type:
    from squall.engine.transport.raw import RawTransport

    return RawTransport


def _aiohttp() -> type:
    from squall.engine.transport.aiohttp import AiohttpTransport

    return AiohttpTransport


# name -> the transport's class (imported when chosen: a worker loads only the client it uses)
TRANSPORTS: dict[str, Callable[[], type]] = {"raw": _raw, "aiohttp": _aiohttp}
