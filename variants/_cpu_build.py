"""Build a C++ source with the machine's compiler into a shared library, once, and load it.

The library is compiled for the CPU it runs on (``-march=native``) and cached under
``$LSLA_KERNEL_CACHE`` (default ``~/.cache/vit-lsla-harness``) by a hash of the source, the
compiler's version, the flags and the CPU's model and features, so a cache shared by unlike
nodes keeps one build per kind of node. Builders racing for one library each write their own
file and rename it into place. Nothing here needs torch's headers: a build takes about a second.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

SWITCH = "LSLA_CPU_KERNEL"  # 0: none of the harness's C++ kernels is built or used
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread")
BUILD_TIMEOUT_S = 300


class BuildError(Exception):
    """The library could not be built or loaded; the message is one line saying why."""


def disabled() -> bool:
    return os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


def compiler() -> str | None:
    """``$CXX``, else the first of ``c++``, ``g++``, ``clang++`` on the PATH."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def build_and_load(source: Path) -> ctypes.CDLL:
    cxx = compiler()
    if cxx is None:
        raise BuildError("no C++ compiler found (tried $CXX, c++, g++, clang++)")
    try:
        return ctypes.CDLL(str(_build(source, cxx)))
    except (OSError, subprocess.SubprocessError) as err:
        raise BuildError(f"building {source.name} with {cxx} failed: {_first_line(err)}") from err


def cache_dir() -> Path:
    if os.environ.get("LSLA_KERNEL_CACHE"):
        return Path(os.environ["LSLA_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vit-lsla-harness"


def _build(source: Path, cxx: str) -> Path:
    version = subprocess.run(
        [cxx, "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    key = hashlib.sha256()
    parts = (*_source_texts(source), version.encode(), " ".join(FLAGS).encode(), _cpu_id())
    for part in parts:
        key.update(part)
    suffix = ".dylib" if platform.system() == "Darwin" else ".so"
    cache = cache_dir()
    target = cache / f"{source.stem.lstrip('_')}_{key.hexdigest()[:16]}{suffix}"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=suffix)
    os.close(fd)
    try:
        cmd = [cxx, *FLAGS, "-o", tmp, str(source)]
        subprocess.run(cmd, capture_output=True, timeout=BUILD_TIMEOUT_S, check=True)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _source_texts(source: Path) -> list[bytes]:
    """The source and the local headers it includes (``#include "x.h"``), which a build reads."""
    text = source.read_bytes()
    names = re.findall(rb'^\s*#include\s+"([^"]+)"', text, flags=re.MULTILINE)
    return [text, *((source.parent / name.decode()).read_bytes() for name in names)]


def _first_line(err: BaseException) -> str:
    text = getattr(err, "stderr", None) or str(err)
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    lines = [line.strip() for line in text.splitlines() if "error" in line.lower()]
    return (lines or [text.strip() or type(err).__name__])[0][:200]


def cpuinfo_lines() -> list[str] | None:
    """Linux's ``/proc/cpuinfo``, a line each; None where there is none to read."""
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None


def _cpu_id() -> bytes:
    """What ``-march=native`` compiles for: the CPU's model and feature flags."""
    lines = cpuinfo_lines()
    if lines is None:
        return f"{platform.machine()} {platform.processor()}".encode()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({ln for ln in lines if ln.startswith(wanted)})).encode()
