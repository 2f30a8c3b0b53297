"""What machine a benchmark ran on: the one description every ``bench-results/*.json`` records under ``machine``.

Contract:
- ``describe(**extra)`` returns ``cpus`` (``os.cpu_count()``), ``platform``, the CPU's ``model`` name (with its
  family and model numbers where Linux gives them) and its widest ``simd`` (``avx512``, ``avx2``, ``neon`` or
  ``baseline``, with ``+vnni`` where the CPU has the int8 dot product instructions) as Linux's ``/proc/cpuinfo``
  names them ("unknown" where it is absent), the 1-minute ``load_average`` now, then ``extra`` (a benchmark's own
  fields: threads, load before the run).
- Why the vector width is recorded: a fraction of the fp32 peak, and above all an int8 speed-up, depend on it.
  The same code measured ONNX int8 at 1.4-1.5x its fp32 on AVX2 hosts without VNNI and 1.9-2.3x on an AVX-512
  host with VNNI, and the project's CI and sessions land on hosts of either kind (docs/benchmarks.md).
- Reads files only; no benchmark imports anything heavy through it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo(path: Path) -> dict[str, str]:
    """The first processor's ``key: value`` lines of ``path`` (empty where it cannot be read)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def simd(flags: set[str]) -> str:
    """The widest vector instruction set among ``flags`` (``/proc/cpuinfo``'s names), ``+vnni`` when present."""
    if "avx512f" in flags:
        width = "avx512"
    elif "avx2" in flags:
        width = "avx2"
    elif {"asimd", "neon"} & flags:
        width = "neon"
    else:
        width = "baseline"
    vnni = {"avx512_vnni", "avx_vnni", "asimddp"} & flags
    return f"{width}+vnni" if vnni else width


def describe(cpuinfo: Path = CPUINFO, **extra) -> dict:
    info = _cpuinfo(cpuinfo)
    flags = set((info.get("flags") or info.get("Features") or "").split())
    model = info.get("model name") or platform.processor() or "unknown"
    if info.get("cpu family") and info.get("model"):  # a virtual machine may name only the vendor: "AMD EPYC"
        model += f" (family {info['cpu family']}, model {info['model']})"
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "model": model,
            "simd": simd(flags) if flags else "unknown",
            "load_average": [round(x, 2) for x in os.getloadavg()], **extra}


def line(machine: dict) -> str:
    """One printed line: ``2 cores, AMD EPYC (family 25, model 17) (avx512+vnni), 1-min load 1.05``."""
    return (f"{machine['cpus']} cores, {machine['model']} ({machine['simd']}), 1-min load "
            f"{machine['load_average'][0]}")
