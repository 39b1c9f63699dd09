"""What a latency table depends on: the CPU, its vector extensions and the thread counts of each runtime."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

# The extensions that decide which kernels a runtime can use, in the order a reader compares machines by.
X86_EXTENSIONS = (
    "sse4_2",
    "avx",
    "f16c",
    "fma",
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
)
ARM_EXTENSIONS = ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")
# Instructions that multiply int8 and accumulate in int32: without one, int8 kernels widen to int16 or float and
# a full-int8 model can run slower than float32 (measured: a ResNet-50 on an AVX2-only machine), with one it runs
# several times faster (3.5x on an AVX-512 VNNI machine).
INT8_DOT_PRODUCTS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU model, its vector extensions and logical CPU count, read from /proc/cpuinfo where there is one.

    Args:
        cpuinfo: the file to read (Linux's); elsewhere the model falls back to `platform.processor()` and the
            extensions are unknown (an empty list).

    Returns:
        `model`, `machine` (x86_64, aarch64...), `logical_cpus` (the CPUs this process may run on),
        `vector_extensions` (those of `X86_EXTENSIONS` or `ARM_EXTENSIONS` present) and `int8_dot_products`
        (those of `INT8_DOT_PRODUCTS` present).
    """
    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            if not line.strip():
                break  # the first processor's block is enough: they are alike
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    known = ARM_EXTENSIONS if "Features" in fields and "flags" not in fields else X86_EXTENSIONS
    extensions = [name for name in known if name in flags]
    model = fields.get("model name") or fields.get("Hardware") or platform.processor() or platform.machine()
    return {
        "model": model or "unknown",
        "machine": platform.machine(),
        "logical_cpus": usable_cpus(),
        "vector_extensions": extensions,
        "int8_dot_products": [name for name in INT8_DOT_PRODUCTS if name in flags],
    }


def usable_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), or None where the platform has none: above the usable CPU
    count, other work competes with what is being timed."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def set_tensorflow_threads(threads: int) -> int:
    """Ask TensorFlow for `threads` intra-op threads and return the count it actually uses.

    The count can only change before TensorFlow executes anything; after that its current count is returned
    (0, TensorFlow's default, counts as every usable CPU), so that a report states what ran, not what was asked.
    """
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # TensorFlow is running already: it keeps the count it has
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    return tf.config.threading.get_intra_op_parallelism_threads() or usable_cpus()


def describe_cpu(cpu: dict) -> str:
    """One line for a table's header: the model, the extensions and whether int8 has dot-product instructions."""
    extensions = " ".join(cpu["vector_extensions"]) or "unknown"
    if cpu["int8_dot_products"]:
        int8 = "int8 dot products: " + " ".join(cpu["int8_dot_products"])
    else:
        int8 = "no int8 dot-product instructions (int8 may run slower than float32 here)"
    return (
        f"CPU: {cpu['model']} ({cpu['machine']}, {cpu['logical_cpus']} usable CPUs); vector extensions: {extensions}; "
        f"{int8}"
    )
