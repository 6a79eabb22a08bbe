"""The C allocator's policy for a process that times or trains models on CPU.

glibc's malloc adapts as a process runs: each freed mmapped block raises its mmap threshold (up
to 32 MB) and its trim threshold (twice that), and when more than the trim threshold lies free
at the top of the heap it hands the memory back, which the next call maps and faults in again
(about 1.6 us a page in the VM of 2026-12-05). What a model pays therefore depends on what the
process ran before it: on 2026-12-05, at batch 16, vit_lsla_t took 65,700 faults per inference in
a process of its own, 28,200 beside swin_t_ref and timm's swin_tiny, none in an earlier run of
the same benchmark; timm's swin_tiny 27,650 at batch 4 beside our models. Even one loop that
frees two 30 MB maps took no faults a call in some processes and 15,328 in others, as the heap's
layout fell. A speed ratio then measures the allocator's history as much as the models.

``steady`` fixes glibc's thresholds at its own ceiling for mmap (32 MB: larger blocks are still
mapped fresh each call, which ``variants._inference_chunks`` avoids for our maps) and never trims
the heap, so freed memory is reused and no candidate's figure depends on another's; the process
keeps its peak heap, as torch's CUDA caching allocator keeps device memory. ``system`` leaves the
allocator as the process found it (glibc's adaptive default, or ``GLIBC_TUNABLES``).
``LSLA_MALLOC`` chooses for the harness's commands and benchmarks; steady is the default.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache

POLICIES = ("steady", "system")
SWITCH = "LSLA_MALLOC"
MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit; mallopt refuses more
NO_TRIM = (1 << 31) - 1  # mallopt takes an int: the largest, 2 GiB, never reached at the top
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h

_steady = False  # whether this process set the steady policy (glibc cannot go back)


def from_env() -> str:
    """The policy ``LSLA_MALLOC`` names (default steady); a ValueError names the bad value."""
    policy = os.environ.get(SWITCH, "steady").strip().lower() or "steady"
    if policy not in POLICIES:
        raise ValueError(
            f"{SWITCH}={os.environ[SWITCH]!r} is not an allocator policy; choose one of "
            f"{', '.join(POLICIES)} or unset it (steady: fixed glibc thresholds, no trim; "
            "system: as found)"
        )
    return policy


def use(policy: str) -> str:
    """Put this process's allocator under ``policy``; returns :func:`describe`'s line.

    Steady cannot be undone within a process (glibc has no call back to its adaptive
    thresholds): asking for system after it is a ValueError saying to start a new process."""
    global _steady
    if policy not in POLICIES:
        raise ValueError(f"allocator policy {policy!r}: choose one of {', '.join(POLICIES)}")
    if policy == "system" and _steady:
        raise ValueError(
            f"this process already runs the steady allocator policy; start a new process with "
            f"{SWITCH}=system to measure glibc's own"
        )
    libc = _glibc()
    if policy == "steady" and libc is not None and not _steady:  # elsewhere: nothing to set
        if not (
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            and libc.mallopt(_M_TRIM_THRESHOLD, NO_TRIM)
        ):
            raise RuntimeError("glibc refused mallopt's thresholds")  # not a user's error
        _steady = True
    return describe()


def describe() -> str:
    """This process's allocator in one line, recorded beside every timing."""
    libc = _glibc()
    if libc is None:
        return "system (not glibc: its own malloc)"
    if _steady:
        return f"steady (glibc mmap threshold {MMAP_THRESHOLD >> 20} MB, heap never trimmed)"
    tunables = os.environ.get("GLIBC_TUNABLES")
    return f"system (glibc, GLIBC_TUNABLES={tunables})" if tunables else "system (glibc adaptive)"


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl and macOS lack it)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc
