"""squall: a load engine for HTTP and LLM APIs.

A `squall py` workload may `import squall` and call `squall.timer`, `squall.record` and `squall.count`
(the same as `squall.sdk`'s).
"""

from typing import Any

__version__ = "0.1.0"

_SDK = ("timer", "record", "count", "User")


def __getattr__(name: str) -> Any:
    # squall.sdk on first use, so `import squall` stays free of imports for every other user.
    if name in _SDK:
        from squall import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'squall' has no attribute {name!r}")
