"""The engine: supervisor, workers, pacing, transports, recording; `run(plan) -> Result` is its entry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from squall.engine.supervisor import run

__all__ = ["run"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a leaf module (pacer, schedule) does not pull in the whole engine.
    if name == "run":
        from squall.engine.supervisor import run

        return run
    raise AttributeError(name)
