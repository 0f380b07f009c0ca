"""Side-by-side benchmark: anyloss against each library's own losses.

    python benchmarks/bench.py            # full sizes; writes docs/benchmarks.md and the plot
    python benchmarks/bench.py --quick    # tiny sizes, a smoke run (CI); writes nothing unless asked

For each loss and library it times anyloss and the peer in one process, in
turn: ``torch.nn.functional`` on PyTorch tensors, ``mlx.nn.losses`` on MLX
arrays, the same math in ``jax.numpy`` under ``jax.jit`` on JAX arrays (our
call jitted too), and anyloss on NumPy arrays against ``jax.jit`` of the same
math on the same CPU (the fused floor).  Forward, and forward+backward for the
autodiff libraries.  Times are the best of ``--repeat`` calls after a warm-up;
ratios are ours / peer (below 1 is faster).  ``--portable`` adds a column
timing anyloss with its fast paths switched off (the portable reference code).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src").is_dir():
    sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

import anyloss  # noqa: E402
from anyloss import _native  # noqa: E402
from cases import CASES, Case  # noqa: E402
from measure import (  # noqa: E402
    best_time,
    interleaved_times,
    jax_compiled_bytes,
    mlx_peak,
    numpy_peak,
    rss_peak,
)

LIBRARIES = ("numpy", "torch", "jax", "mlx")
PEER_NAME = {
    "numpy": "jax.jit (same math, fused floor)",
    "torch": "torch.nn.functional",
    "jax": "jax.jit (same math in jax.numpy)",
    "mlx": "mlx.nn.losses",
}
TARGET = {"numpy": 1.5, "torch": 1.05, "jax": 1.05, "mlx": 1.05}


# ---------------------------------------------------------------- per library


def _portable(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        with _native.portable():
            return fn(*args)

    return run


class Runner:
    """Builds inputs on one library and the callables to time."""

    autodiff = True

    def convert(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        raise NotImplementedError

    def forward(self, fn: Callable[..., Any], args: dict[str, Any]) -> Callable[[], Any]:
        raise NotImplementedError

    def backward(
        self, fn: Callable[..., Any], args: dict[str, Any], wrt: str
    ) -> Callable[[], Any]:
        raise NotImplementedError

    def memory(self, call: Callable[[], Any], fn: Callable[..., Any], args: dict[str, Any], wrt: str | None) -> int | None:
        return rss_peak(call)


class NumpyRunner(Runner):
    autodiff = False

    def convert(self, arrays):
        return dict(arrays)

    def forward(self, fn, args):
        return lambda: fn(*args.values())

    def memory(self, call, fn, args, wrt):
        return numpy_peak(call)


class TorchRunner(Runner):
    def convert(self, arrays):
        import torch

        out = {}
        for k, a in arrays.items():
            t = torch.from_numpy(np.ascontiguousarray(a))
            out[k] = t.long() if a.dtype.kind in "iu" else t
        return out

    def forward(self, fn, args):
        return lambda: fn(*args.values())

    def backward(self, fn, args, wrt):
        leaf = args[wrt].detach().clone().requires_grad_(True)
        values = [leaf if k == wrt else v for k, v in args.items()]

        def call():
            leaf.grad = None
            loss = fn(*values)
            loss.backward()
            return leaf.grad

        return call


class JaxRunner(Runner):
    def __init__(self):
        import jax

        self.jax = jax
        self._jitted: dict[Any, Any] = {}

    def convert(self, arrays):
        import jax.numpy as jnp

        return {k: self.jax.block_until_ready(jnp.asarray(a)) for k, a in arrays.items()}

    def _jit(self, fn, grad_of=None):
        key = (fn, grad_of)
        if key not in self._jitted:
            target = fn if grad_of is None else self.jax.grad(fn, argnums=grad_of)
            self._jitted[key] = self.jax.jit(target)
        return self._jitted[key]

    def forward(self, fn, args):
        jitted = self._jit(fn)
        values = list(args.values())
        return lambda: self.jax.block_until_ready(jitted(*values))

    def backward(self, fn, args, wrt):
        jitted = self._jit(fn, list(args).index(wrt))
        values = list(args.values())
        return lambda: self.jax.block_until_ready(jitted(*values))

    def memory(self, call, fn, args, wrt):
        jitted = self._jit(fn, None if wrt is None else list(args).index(wrt))
        return jax_compiled_bytes(jitted, *args.values())


class MlxRunner(Runner):
    def __init__(self):
        import mlx.core as mx

        self.mx = mx

    def convert(self, arrays):
        out = {k: self.mx.array(a) for k, a in arrays.items()}
        self.mx.eval(*out.values())
        return out

    def forward(self, fn, args):
        values = list(args.values())

        def call():
            out = fn(*values)
            self.mx.eval(out)
            return out

        return call

    def backward(self, fn, args, wrt):
        grad = self.mx.grad(fn, argnums=list(args).index(wrt))
        values = list(args.values())

        def call():
            g = grad(*values)
            self.mx.eval(g)
            return g

        return call

    def memory(self, call, fn, args, wrt):
        return mlx_peak(call)


def make_runner(library: str) -> Runner:
    return {"numpy": NumpyRunner, "torch": TorchRunner, "jax": JaxRunner, "mlx": MlxRunner}[library]()


# --------------------------------------------------------------------- running


def run_case(
    library: str,
    runner: Runner,
    floor: Runner | None,
    case: Case,
    quick: bool,
    repeat: int,
    with_portable: bool,
    seed: int,
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    shape = case.shape(quick)
    arrays = case.make(rng, shape)
    args = runner.convert(arrays)
    peer_runner = floor if floor is not None else runner
    peer_args = floor.convert(arrays) if floor is not None else args
    peer_fn = getattr(case, "jax" if library in ("numpy", "jax") else library)
    reps = max(1, repeat if math.prod(shape) < 1 << 25 else max(2, repeat // 2))

    modes = ["forward"] + (["forward+backward"] if runner.autodiff else [])
    rows = []
    for mode in modes:
        if mode == "forward":
            ours = runner.forward(case.ours, args)
            peer = peer_runner.forward(peer_fn, peer_args)
            port = runner.forward(_portable(case.ours), args) if with_portable else None
        else:
            ours = runner.backward(case.ours, args, case.wrt)
            peer = peer_runner.backward(peer_fn, peer_args, case.wrt)
            port = runner.backward(_portable(case.ours), args, case.wrt) if with_portable else None
        # ours and the peer in turn; the portable code timed on its own after
        # them, so that freeing its large temporaries slows neither contender
        times = interleaved_times([ours, peer], reps)
        if port is not None:
            times.append(best_time(port, reps))
        wrt = None if mode == "forward" else case.wrt
        mem_ours = runner.memory(ours, case.ours, args, wrt)
        mem_peer = peer_runner.memory(peer, peer_fn, peer_args, wrt)
        row = {
            "library": library,
            "loss": case.name,
            "mode": mode,
            "shape": "x".join(map(str, shape)),
            "ours_s": times[0],
            "peer_s": times[1],
            "ratio": times[0] / times[1],
            "ours_mem": mem_ours,
            "peer_mem": mem_peer,
            "headline": case.headline and (mode == "forward" or case.name == "cross_entropy"),
            "repeat": reps,
        }
        if port is not None:
            row["portable_s"] = times[2]
            row["portable_ratio"] = times[2] / times[1]
        rows.append(row)
        print(
            f"{library:6s} {case.name:24s} {mode:17s} ours {times[0] * 1e3:9.2f} ms  "
            f"peer {times[1] * 1e3:9.2f} ms  ratio {row['ratio']:5.2f}"
            + (f"  portable {row['portable_ratio']:5.2f}" if port is not None else "")
            + f"  mem {_fmt_bytes(mem_ours)} / {_fmt_bytes(mem_peer)}",
            flush=True,
        )
        del ours, peer, port
    return rows


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def summary(rows: list[dict[str, Any]], key: str = "ratio") -> dict[str, float]:
    out = {}
    for lib in LIBRARIES:
        vals = [r[key] for r in rows if r["library"] == lib and r["headline"] and key in r]
        if vals:
            out[lib] = geomean(vals)
    return out


# ---------------------------------------------------------------------- report

NOTES = """
## How the fast paths work, and what bounds each library

The portable code (written once against the Array API standard) is the
reference; `anyloss._native` holds fast paths that compute the same algorithm,
with the same accuracy safeguards (tiny losses kept through `log1p`,
0 * log 0 = 0, scaled cosine and distances), and are tested against the
portable code, gradients included (`tests/test_native*.py`).
`with anyloss._native.portable():` or `ANYLOSS_PORTABLE=1` switches them off;
the "portable/peer" column above is the portable code timed in the same run.
Every loss has a fast path on NumPy and PyTorch; the module docstrings in
`src/anyloss/_native/` say per loss why it equals the portable code and what
was measured.

- **NumPy.** Each block of rows or elements (64 Ki elements) goes through all
  the operations of the loss while it sits in the CPU cache, on reused `out=`
  buffers, and the blocks are shared by one thread per core (NumPy releases the
  GIL).  cross_entropy keeps no logits-sized buffer at all (peak extra memory
  above).  Two-branch losses (smooth_l1, log_cosh) blend both branches
  arithmetically, each fed only arguments where it is finite, because a
  random-mask `np.where` costs more than the whole loss; log_cosh's branches
  are polynomials fitted with mpmath (NumPy's float32 `sinh` and `log1p` cost
  40 and 19 ns per element).  Sums of products are fused dot products of
  short pieces.  What bounds the rest is NumPy's float32 transcendental loops
  on this CPU (AVX2, no AVX-512): `exp` about 2 ns and `log` 2 to 3 ns per
  element in one thread, where the `jax.jit` floor spends 1.4 to 2 ns on a
  whole kl_div or gaussian_nll element; binary_cross_entropy needs one `exp`
  and one `log` per element (its `log1p` is `u log(1 + u) / ((1 + u) - 1)`,
  the 0 / 0 of tiny `u` made 1 by adding the smallest normal number to both
  terms), cross_entropy one `exp` per logit, kl_div one `exp`, gaussian_nll one
  `log`.  The losses without transcendental functions (mse, l1, hinge,
  margin_ranking) are bound by memory traffic and NumPy's per-call overhead.
  A compiled kernel with a SIMD math library would move it: numba kernels for
  binary_cross_entropy, cross_entropy, mse and l1 were measured and left out,
  because this numba build has no vectorized math library (its scalar `exp`
  and `log1p` made binary_cross_entropy 560 ms against 108 ms).
- **PyTorch.** Without autograd, the NumPy fast paths run on zero-copy views
  of the CPU tensors (log_cosh and gaussian_nll: the portable terms in torch
  operations a block at a time, whose vectorized `sinh`/`log1p`/`log` beat
  NumPy's).  Every fresh array-sized PyTorch CPU tensor pays its page faults
  (here `torch.abs` of 2^24 floats takes 68 ms against 20 ms for `np.abs`), so
  the portable code's temporaries, not its arithmetic, dominate.  With
  autograd, mse, l1, huber, smooth_l1 (where beta is a power of two >= 1, so
  that its rounding is ours) and nll_loss call `torch.nn.functional`; the
  other losses are autograd functions whose forward is the blocked fast path
  (reduced inside, no loss-sized tensor) and whose backward is the portable
  code's derivative formulas, a block at a time (double backward: the same
  formulas, differentiable).  binary_cross_entropy cannot use
  `F.binary_cross_entropy_with_logits`, which computes
  `(1 - t) x - logsigmoid(x)` and rounds the tiny loss of a confident negative
  logit to 0; its backward (the portable composition, about 12 operations per
  block against the peer's fused `sigmoid(x) - t`) keeps its forward+backward
  above the peer's.  nll_loss's forward is `F.nll_loss` itself; the ratio is
  the per-call argument checks (a fraction of a millisecond).  Under
  `torch.compile` and `torch.func` the portable code runs.
- **Cosine similarity and triplet distances (NumPy, PyTorch, JAX).** The dot
  product and squared norms (or squared distances) are first computed
  unscaled; where every one is finite and at least `n` times the smallest
  normal number, they are as accurate as the scaled ones and give the result,
  otherwise the scaled portable computation runs (JAX: `jax.lax.cond`, with a
  `custom_jvp`; NumPy and PyTorch: per block of rows).  With numba installed
  (`anyloss[fast]`) NumPy's cosine is one fused parallel pass per row with
  float64 sums.
- **JAX.** Under `jax.jit` XLA fuses the portable code, but its CPU backend
  fuses a reduction only with the operations its reduction kernels accept
  (arithmetic, `exp`/`log`/`log1p`/`expm1`/`sqrt`, `abs`, `sign`, `max`/`min`,
  division); a compare, select or clip in front of a reduction writes its
  input out as a full-size temporary and costs a second pass.  Each fast path
  is therefore a select-free form in one fused pass, a check on its small
  result, and otherwise the portable computation through `jax.lax.cond`, in
  blocks so that the fallback reserves a fraction of a MiB (XLA's
  `memory_analysis()` counts the branch's temporaries even when it does not
  run); a `custom_jvp` gives the portable derivatives.  cross_entropy: the
  plain `s = sum(exp(x - max))`, whose `log(s)` is as accurate as the masked
  `log1p` wherever every row has `s >= 2` (no class above probability 1/2);
  a batch with a confident row takes the masked branch (`exp(z) sign(-z)`, no
  select): three passes over the logits against the peer's two.
  binary_cross_entropy sums `(max(sign(x), 0) - t) x + log1p(exp(-|x|))`,
  kl_div the plain `exp(t)(t - x)` (both differ from the portable value only
  where the sum is nan, which sends the call to the guarded form), log_cosh
  one formula `log1p(u^2 / (2 (1 + u)))` with `u = expm1(min(|a|, 20))` (plus
  `|a| - 20` beyond), cosine and triplet (p = 2) the unscaled sums.  XLA flushes
  subnormal results to zero, so the unscaled sums count as exact only from
  `n * tiny / eps` up.
- **MLX.** Each fast path is the portable algorithm as fused `mx.compile`
  kernels (traced per shape: a shapeless trace broadcasts every operand, and
  the broadcasts count towards the depth at which MLX stops fusing) inside an
  `mx.custom_function` whose VJP gives the portable derivatives.  On this CPU
  build `mx.exp` and `mx.log1p` cost about 300 ms per 2^24 float32 elements,
  `mx.log` and `mx.power` 100 to 150 ms, so `exp` is computed as the same
  power of two through `mx.power` (within 1 ulp of `mx.exp`) and `log1p` as a
  corrected `log(1 + w)`.  cross_entropy sums `exp(x - max)` with the first
  maximum's term set to 0, the portable `log1p` of the rest with no
  data-dependent branch (`mx.logsumexp` rounds a loss below about 6e-8 to 0).
  What bounds forward+backward: compiled kernels called from a custom VJP
  while `mx.grad` traces are not fused (a 6-operation kernel: 65 ms called
  directly, 165 to 195 ms as a VJP), so each VJP costs a pass per operation,
  like the peer's autodiff, whose formulas are shorter (no safeguards).
  cosine_similarity_loss runs the portable code: the unscaled statistics
  could only be chosen by reading values (an eval, a device sync on a GPU,
  which anyloss never forces), and both forms that avoid the choice cost more
  than the peer alone (float64 statistics 0.48 s, the scaled form in its
  fewest passes about 0.46 s, the peer 0.26 s, 16384 x 1024 float32).
"""


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _fmt_time(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 10 else f"{s:.1f} s"


def _machine() -> str:
    model, cores = platform.processor() or "unknown CPU", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
        memory = f", {mem:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        memory = ""
    return f"{model}, {cores} cores{memory}, {platform.system()} {platform.machine()}"


def _versions(libraries: list[str]) -> str:
    import importlib

    parts = [f"Python {platform.python_version()}", f"anyloss {anyloss.__version__}"]
    names = {"numpy": "numpy", "torch": "torch", "jax": "jax", "mlx": "mlx.core"}
    wanted = set(libraries) | ({"jax"} if "numpy" in libraries else set())
    for lib in LIBRARIES:
        if lib in wanted or lib == "numpy":
            mod = importlib.import_module(names[lib])
            parts.append(f"{lib} {getattr(mod, '__version__', '?')}")
    return ", ".join(parts)


def write_markdown(rows: list[dict[str, Any]], path: Path, command: str, libraries: list[str], plot: str | None) -> None:
    has_portable = any("portable_s" in r for r in rows)
    final = summary(rows)
    lines = [
        "# Benchmarks",
        "",
        "anyloss against each library's own losses, side by side in one run: "
        "`torch.nn.functional` on PyTorch tensors, `mlx.nn.losses` on MLX arrays, the same "
        "math in `jax.numpy` under `jax.jit` on JAX arrays (anyloss jitted too), and anyloss "
        "on NumPy arrays against `jax.jit` of the same math on the same CPU, the floor a "
        "fusing compiler reaches.",
        "",
        f"- Machine: {_machine()}",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Versions: {_versions(libraries)}",
        f"- Command: `{command}`",
        "- Time: the best of several calls after a warm-up (repeat count in the table); "
        "ratio = anyloss / peer, below 1 is faster. All losses use `reduction='mean'`; "
        "forward+backward is the gradient with respect to the first argument.",
        "- Peak extra memory: NumPy, `tracemalloc` peak during the call; JAX, XLA's "
        "`memory_analysis()` of the compiled call (temporaries + outputs); MLX, "
        "`mx.get_peak_memory()` above the memory active before the call; PyTorch, growth of "
        "the process's peak resident set (`VmHWM`, reset before the call).",
        "- Sizes: cross_entropy 4096 x 32768 float32 logits with class indices; elementwise "
        "losses 2^24 float32 elements; cosine_similarity_loss 16384 x 1024 along axis 1.",
        "",
        "## Summary",
        "",
        "Geometric mean of the ratio over cross_entropy, binary_cross_entropy, mse_loss, "
        "huber_loss, cosine_similarity_loss (forward) and cross_entropy forward+backward "
        "(NumPy: the five forwards).",
        "",
    ]
    header = "| library | peer | geo-mean ours/peer | target |"
    sep = "|---|---|---|---|"
    if has_portable:
        header = "| library | peer | portable code / peer | geo-mean ours/peer | target |"
        sep = "|---|---|---|---|---|"
    lines += [header, sep]
    base = summary(rows, "portable_ratio") if has_portable else {}
    for lib in LIBRARIES:
        if lib not in final:
            continue
        cells = [lib, PEER_NAME[lib]]
        if has_portable:
            cells.append(f"{base.get(lib, float('nan')):.2f}x")
        cells += [f"{final[lib]:.2f}x", f"<= {TARGET[lib]:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## All results", ""]
    cols = ["library", "loss", "mode", "shape", "ours", "peer", "ours/peer"]
    if has_portable:
        cols.append("portable/peer")
    cols += ["peak extra memory ours", "peer", "repeat"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [
            r["library"], r["loss"], r["mode"], r["shape"], _fmt_time(r["ours_s"]),
            _fmt_time(r["peer_s"]), f"{r['ratio']:.2f}",
        ]
        if has_portable:
            cells.append(f"{r['portable_ratio']:.2f}" if "portable_ratio" in r else "")
        cells += [_fmt_bytes(r["ours_mem"]), _fmt_bytes(r["peer_mem"]), str(r["repeat"])]
        lines.append("| " + " | ".join(cells) + " |")
    if plot:
        lines += ["", f"![ours / peer per loss and library]({plot})", ""]
    lines += ["", NOTES.strip(), ""]
    path.write_text("\n".join(lines) + "\n")


def write_plot(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = []
    for r in rows:
        label = r["loss"] + (" (fwd+bwd)" if r["mode"] != "forward" else "")
        if label not in labels:
            labels.append(label)
    libs = [lib for lib in LIBRARIES if any(r["library"] == lib for r in rows)]
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / max(1, len(libs))
    for i, lib in enumerate(libs):
        ys = []
        for label in labels:
            match = [
                r["ratio"] for r in rows
                if r["library"] == lib
                and r["loss"] + (" (fwd+bwd)" if r["mode"] != "forward" else "") == label
            ]
            ys.append(match[0] if match else float("nan"))
        xs = [j + (i - (len(libs) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, ys, width, label=f"{lib} vs {PEER_NAME[lib]}")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(1.5, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_ylabel("time ours / peer (lower is better)")
    ax.set_title("anyloss vs each library's own losses")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (CI smoke run)")
    parser.add_argument("--libraries", default=",".join(LIBRARIES), help="comma-separated subset")
    parser.add_argument("--losses", default="", help="comma-separated subset of losses")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per contender")
    parser.add_argument("--portable", action="store_true", help="also time the portable code (fast paths off)")
    parser.add_argument("--out", default=None, help="markdown file (default docs/benchmarks.md; none with --quick)")
    parser.add_argument("--plot", default=None, help="plot file (default docs/_static/benchmarks.png)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    libraries = [s for s in args.libraries.split(",") if s]
    losses = [s for s in args.losses.split(",") if s]
    repeat = args.repeat or (2 if args.quick else 5)
    out = args.out if args.out is not None else (None if args.quick else str(ROOT / "docs" / "benchmarks.md"))
    plot = args.plot if args.plot is not None else (None if args.quick else str(ROOT / "docs" / "_static" / "benchmarks.png"))

    floor = make_runner("jax") if "numpy" in libraries else None
    rows: list[dict[str, Any]] = []
    for library in libraries:
        runner = floor if library == "jax" and floor is not None else make_runner(library)
        for case in CASES:
            if losses and case.name not in losses:
                continue
            rows += run_case(
                library, runner, floor if library == "numpy" else None, case,
                args.quick, repeat, args.portable, args.seed,
            )

    print()
    base = summary(rows, "portable_ratio") if args.portable else {}
    for lib, g in summary(rows).items():
        extra = f"  (portable code {base[lib]:.2f}x)" if lib in base else ""
        print(f"geo-mean ours/peer {lib:6s} {g:.2f}x  target <= {TARGET[lib]:.2f}x{extra}")

    command = "python benchmarks/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if plot:
        plot_path = Path(plot)
        if write_plot(rows, plot_path):
            print(f"wrote {plot_path}")
        else:
            plot = None
    if out:
        rel_plot = None
        if plot:
            rel_plot = os.path.relpath(plot, Path(out).parent)
        write_markdown(rows, Path(out), command.strip(), libraries, rel_plot)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
