"""Name a process (as shown by top, ps -o comm and psutil) so users and tests can tell squall's apart."""

from __future__ import annotations

import ctypes
import ctypes.util

PR_SET_NAME = 15


def set_process_name(name: str) -> None:
    """Set the kernel's name for this process (Linux; at most 15 bytes); a no-op elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass
