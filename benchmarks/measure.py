"""Timing and peak-memory probes used by the benchmark runner.

Peak extra memory is measured per library with the best probe it offers:

* NumPy: ``tracemalloc`` (NumPy reports every buffer it allocates), the peak
  during the call minus what was allocated before it.
* JAX: XLA's own accounting of the compiled computation
  (``compiled.memory_analysis()``): temporary buffers plus outputs.
* MLX: ``mx.get_peak_memory()`` after ``mx.reset_peak_memory()``, minus the
  memory active before the call (MLX's allocator, buffer cache cleared).
* PyTorch (CPU has no allocator statistics): the growth of the process's
  peak resident set, ``VmHWM`` in ``/proc/self/status``, reset before the
  call through ``/proc/self/clear_refs``.  Large tensors are allocated with
  ``mmap`` and returned on free, so the delta is the call's peak working set.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any, Callable


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` calls, in seconds (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def interleaved_times(
    fns: list[Callable[[], Any]], repeat: int
) -> list[float]:
    """Best time of each function, calling them in turn ``repeat`` times so
    that slow drifts of the machine hit every contender alike.  Each round
    starts with the next function, so that none always runs right after
    the same other one (whose freed memory may slow the next call)."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    k = len(fns)
    for r in range(repeat):
        for step in range(k):
            i = (r + step) % k
            start = time.perf_counter()
            fns[i]()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


# ---------------------------------------------------------------------- memory


def numpy_peak(fn: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak - base


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_peak(fn: Callable[[], Any]) -> int | None:
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    base = _status_kib("VmRSS")
    result = fn()
    peak = _status_kib("VmHWM")
    del result
    if base is None or peak is None:
        return None
    return max(0, peak - base) * 1024


def mlx_peak(fn: Callable[[], Any]) -> int:
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    result = fn()
    peak = mx.get_peak_memory()
    del result
    return max(0, peak - base)


def jax_compiled_bytes(jitted: Any, *args: Any) -> int | None:
    try:
        analysis = jitted.lower(*args).compile().memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None
    if analysis is None:
        return None
    return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes)
