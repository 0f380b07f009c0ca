"""Peak memory and time of one training step of linear_cross_entropy against
the naive composition (logits = x @ W.T, then the library's cross entropy).

Each (library, method, N) runs in a fresh process: the peak is the growth of
the process's resident high-water mark during the first step (JAX compiles
before it; on MLX, whose allocator keeps freed buffers, the growth of
``mx.get_peak_memory()`` over the memory in use), the time the best of three steps (loss and gradients for inputs
and weight).  Usage::

    PYTHONPATH=src python benchmarks/linear_ce.py [torch jax mlx]   # every configuration
    PYTHONPATH=src python benchmarks/linear_ce.py torch fused 2048   # one, as a child
    PYTHONPATH=src python benchmarks/linear_ce.py torch pytorch 2048 # torch's own chunked
                                                                     # F.linear_cross_entropy
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

D, V = 256, 32768
SIZES = (2048, 4096)
LIBRARIES = ("torch", "jax", "mlx")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _step(library: str, method: str, n: int):
    """A function running one step to completion, after its setup."""
    import numpy as np

    import anyloss

    rng = np.random.default_rng(0)
    x0 = (rng.standard_normal((n, D)) / 16).astype(np.float32)
    w0 = (rng.standard_normal((V, D)) / 16).astype(np.float32)
    t0 = rng.integers(0, V, n)
    if library == "torch":
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(2)
        x = torch.tensor(x0, requires_grad=True)
        w = torch.tensor(w0, requires_grad=True)
        t = torch.tensor(t0)

        def step():
            x.grad = w.grad = None
            if method == "fused":
                loss = anyloss.linear_cross_entropy(x, w, t)
            elif method == "pytorch":
                loss = F.linear_cross_entropy(x, w, t, options=torch.nn.LinearCrossEntropyOptions())
            else:
                loss = F.cross_entropy(x @ w.T, t)
            loss.backward()
            return float(loss.detach())
        return step
    if library == "jax":
        import jax
        import jax.numpy as jnp

        x, w, t = jnp.asarray(x0), jnp.asarray(w0), jnp.asarray(t0)
        if method == "fused":
            def loss(x, w):
                return anyloss.linear_cross_entropy(x, w, t)
        else:
            def loss(x, w):
                logp = jax.nn.log_softmax(x @ w.T, axis=-1)
                return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))
        f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(x, w).compile()

        def step():
            value, grads = f(x, w)
            jax.block_until_ready(grads)
            return float(value)
        return step
    import mlx.core as mx
    import mlx.nn as nn

    x, w, t = mx.array(x0), mx.array(w0), mx.array(t0)
    if method == "fused":
        def loss(x, w):
            return anyloss.linear_cross_entropy(x, w, t)
    else:
        def loss(x, w):
            return nn.losses.cross_entropy(x @ w.T, t, reduction="mean")
    f = mx.value_and_grad(loss, argnums=(0, 1))

    def step():
        value, grads = f(x, w)
        mx.eval(value, grads)
        return value.item()
    return step


def child(library: str, method: str, n: int) -> None:
    step = _step(library, method, n)
    if library == "mlx":  # MLX's allocator keeps freed buffers: its own count of live ones
        import mlx.core as mx

        mx.reset_peak_memory()
        base = mx.get_active_memory() / 2**20
        peak_mib = lambda: mx.get_peak_memory() / 2**20  # noqa: E731
    else:
        base = _rss_mib()
        peak_mib = _rss_mib
    start = time.perf_counter()
    value = step()
    times = [time.perf_counter() - start]
    peak = peak_mib() - base
    for _ in range(2):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"library": library, "method": method, "n": n, "loss": value,
                      "peak_mib": round(peak, 1), "time_s": round(min(times), 3)}))


def main(libraries: tuple[str, ...] = LIBRARIES) -> None:
    rows = []
    for library in libraries:
        for n in SIZES:
            for method in ("naive", "fused"):
                out = subprocess.run([sys.executable, __file__, library, method, str(n)],
                                     capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    print("\n| library | N | naive peak MiB | fused peak MiB | ratio | naive s | fused s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for library in libraries:
        for n in SIZES:
            a, b = (next(r for r in rows if (r["library"], r["method"], r["n"]) == (library, m, n))
                    for m in ("naive", "fused"))
            print(f"| {library} | {n} | {a['peak_mib']:.0f} | {b['peak_mib']:.0f} | "
                  f"{b['peak_mib'] / a['peak_mib']:.2f} | {a['time_s']:.2f} | {b['time_s']:.2f} | "
                  f"{b['time_s'] / a['time_s']:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) == 4:
        child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    elif set(sys.argv[1:]) <= set(LIBRARIES):
        main(tuple(sys.argv[1:]) or LIBRARIES)
    else:
        sys.exit(__doc__)
