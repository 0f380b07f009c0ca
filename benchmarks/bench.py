"""Per-call benchmark: anyloss against the call a user would otherwise write.

    python benchmarks/bench.py --quick                   # smoke run (CI): tiny sizes, prints only
    python benchmarks/bench.py --sizes batch,1m          # skip the large sizes
    python benchmarks/bench.py --portable --out docs/benchmarks.md --plot docs/_static/benchmarks.png

The workload is a training loop: one loss call per step on one batch.  For
each loss, library, mode and size, anyloss and the peer (see ``cases.py``)
are called in turn in one process, after warm-up calls, and the best call of
each is kept; the ratio is ours / peer (below 1: anyloss is faster).  Modes:

* torch: ``forward``; ``forward+backward``, the loss then ``.backward()``
  with respect to the first input;
* jax: ``eager`` (no jit: each call dispatched as a user's eager code would),
  ``jit`` (``jax.jit`` of the loss), ``jit(grad)`` (``jax.jit(jax.grad(loss))``);
* mlx: ``forward`` (the call then ``mx.eval``); ``value_and_grad``
  (``mx.value_and_grad`` of the loss, both results evaluated);
* numpy: ``forward``.

Every loss uses ``reduction='mean'``.  PyTorch runs on one thread unless
``--threads`` says otherwise.  ``--portable`` adds a column timing anyloss
inside ``anyloss._native.portable()`` (fast paths off).  Nothing is written
unless ``--out`` (markdown) or ``--plot`` (PNG) is given.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import subprocess
import sys
import time
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
from cases import CASES, LARGE, MILLION, SIZES, TIERS, Case  # noqa: E402
from measure import interleaved_times  # noqa: E402

# The goals for ours / peer: the geo-mean at one batch, per library and mode;
# the geo-means at ~1M elements and at the large sizes; every single call.
BIG_GOAL = 1.05
MAX_GOAL = 2.0


# ---------------------------------------------------------------- libraries


class Library:
    """Puts NumPy inputs on one library and makes the calls to time."""

    name = ""
    module = ""
    goals: dict[str, float] = {}  # mode -> the one-batch goal for ours / peer

    def __init__(self, opts: argparse.Namespace) -> None:
        pass

    def convert(self, arrays: list[np.ndarray]) -> list[Any]:
        return arrays

    def timed(self, mode: str, fn: Callable[..., Any], args: list[Any]) -> Callable[[], Any]:
        return lambda: fn(*args)


class NumPy(Library):
    name, module = "numpy", "numpy"
    goals = {"forward": 1.5}


class Torch(Library):
    name, module = "torch", "torch"
    goals = {"forward": 1.5, "forward+backward": 1.3}

    def __init__(self, opts):
        import torch

        self.torch = torch
        if opts.threads > 0:
            torch.set_num_threads(opts.threads)

    def convert(self, arrays):
        tensors = [self.torch.from_numpy(a) for a in arrays]
        return [t.long() if a.dtype.kind in "iu" else t for t, a in zip(tensors, arrays)]

    def timed(self, mode, fn, args):
        if mode == "forward":
            return lambda: fn(*args)
        leaf, rest = args[0].detach().clone().requires_grad_(True), args[1:]

        def step():
            leaf.grad = None
            fn(leaf, *rest).backward()

        return step


class Jax(Library):
    name, module = "jax", "jax"
    goals = {"eager": 1.0, "jit": 1.05, "jit(grad)": 1.05}

    def __init__(self, opts):
        import jax

        self.jax = jax

    def convert(self, arrays):
        return [self.jax.block_until_ready(self.jax.numpy.asarray(a)) for a in arrays]

    def timed(self, mode, fn, args):
        jax = self.jax
        f = fn if mode == "eager" else jax.jit(fn if mode == "jit" else jax.grad(fn))
        return lambda: jax.block_until_ready(f(*args))


class Mlx(Library):
    name, module = "mlx", "mlx.core"
    goals = {"forward": 1.2, "value_and_grad": 1.2}

    def __init__(self, opts):
        import mlx.core as mx

        self.mx = mx

    def convert(self, arrays):
        out = [self.mx.array(a) for a in arrays]
        self.mx.eval(*out)
        return out

    def timed(self, mode, fn, args):
        mx = self.mx
        if mode == "forward":
            return lambda: mx.eval(fn(*args))
        both = mx.value_and_grad(fn)
        return lambda: mx.eval(both(*args))


LIBRARIES: dict[str, type[Library]] = {"torch": Torch, "jax": Jax, "mlx": Mlx, "numpy": NumPy}


# --------------------------------------------------------------------- running


def _portable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with the fast paths off (under jit: while it is traced)."""

    def run(*args: Any) -> Any:
        with _native.portable():
            return fn(*args)

    return run


def _error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 160 else text[:157] + "..."


def measure(
    lib: Library, mode: str, case: Case, fns: dict[str, Callable[..., Any]], args: list[Any],
    opts: argparse.Namespace,
) -> dict[str, Any]:
    """Time ours, the peer (and the portable code) in one mode; the row for the tables."""
    row: dict[str, Any] = {"library": lib.name, "mode": mode, "loss": case.name}
    calls, errors = {}, {}
    for who, fn in fns.items():
        try:
            call = lib.timed(mode, fn, args)
            call()  # the first warm-up call, apart, so that an error names its contender
            calls[who] = call
        except Exception as exc:  # noqa: BLE001 - reported in the tables
            if who == "peer" and isinstance(exc, NotImplementedError):
                row["note"] = f"no peer: {exc}"  # the library has no such loss
            else:
                errors[who] = _error(exc)
    if calls:
        try:
            times, rounds = interleaved_times(list(calls.values()), opts.repeat,
                                              warmup=max(1, opts.warmup - 1), budget=opts.budget)
            row.update(dict(zip(calls, times)), rounds=rounds)
        except Exception as exc:  # noqa: BLE001 - a call that fails only later
            errors["timing"] = _error(exc)
    if errors:
        row["error"] = "; ".join(f"{who}: {e}" for who, e in errors.items())
    if "ours" in row and "peer" in row:
        row["ratio"] = row["ours"] / row["peer"]
    if "portable" in row and "peer" in row:
        row["portable_ratio"] = row["portable"] / row["peer"]
    return row


def run(opts: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    rows: list[dict[str, Any]] = []
    peers: dict[str, dict[str, str]] = {}  # loss -> library -> peer label
    for name in opts.libraries:
        try:
            lib = LIBRARIES[name](opts)
        except ImportError as exc:
            print(f"{name}: skipped ({_error(exc)})", flush=True)
            continue
        for case in opts.cases:
            peer = case.peer(name)
            peers.setdefault(case.name, {})[name] = peer.label
            fns = {"ours": case.ours(), "peer": peer.load()}
            if opts.portable:
                fns["portable"] = _portable(fns["ours"])
            sizes = SIZES[case.sizes]
            for index, (tier, shape) in enumerate(sizes):
                if tier not in opts.tiers or (opts.quick and index > 0):
                    continue
                # the same inputs on every library
                rng = np.random.default_rng([opts.seed, CASES.index(case), index])
                args = lib.convert(case.make(rng, shape))
                # the size's place among its tier's: the plot's geo-means go across losses by it
                place = (TIERS.index(tier), [t for t, _ in sizes[:index]].count(tier))
                for mode in lib.goals:
                    row = measure(lib, mode, case, fns, args, opts)
                    row.update(tier=tier, first=index == 0, place=place, elements=math.prod(shape),
                               shape="x".join(map(str, shape)))
                    rows.append(row)
                    print(_line(row), flush=True)
                del args
    return rows, peers


# ------------------------------------------------------------------- summaries


def _us(seconds: float | None) -> str:
    if seconds is None:
        return ""
    us = seconds * 1e6
    return f"{us:,.1f}" if us < 1000 else f"{us:,.0f}"


def _ratio(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.2f}"


def _line(r: dict[str, Any]) -> str:
    text = (f"{r['library']:6s} {r['mode']:16s} {r['loss']:23s} {r['shape']:>11s}  "
            f"ours {_us(r.get('ours')):>10s} us  peer {_us(r.get('peer')):>10s} us  "
            f"ratio {_ratio(r.get('ratio')):>5s}")
    if "portable_ratio" in r:
        text += f"  portable {_ratio(r['portable_ratio']):>5s}"
    if "error" in r:
        text += f"  ERROR {r['error']}"
    elif "note" in r:
        text += f"  ({r['note']})"
    return text


def geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


GROUPS: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    ("one batch", lambda r: r["first"]),
    ("~1M", lambda r: r["tier"] == MILLION),
    ("large", lambda r: r["tier"] == LARGE),
)


def summary(rows: list[dict[str, Any]], goals: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per library and mode: geo-means of ours / peer per group, the worst call, the misses."""
    out = []
    for lib, modes in goals.items():
        for mode, goal in modes.items():
            mine = [r for r in rows if r["library"] == lib and r["mode"] == mode]
            if not mine:
                continue
            s: dict[str, Any] = {"library": lib, "mode": mode, "goal": goal, "misses": []}
            for group, member in GROUPS:
                for key in ("ratio", "portable_ratio"):
                    s[group, key] = geomean([r[key] for r in mine if member(r) and key in r])
            timed = [r for r in mine if "ratio" in r]
            if timed:
                worst = max(timed, key=lambda r: r["ratio"])
                s["max"] = (worst["ratio"], f"{worst['loss']} {worst['shape']}")
            if s["one batch", "ratio"] > goal:
                s["misses"].append("one batch")
            s["misses"] += [g for g, _ in GROUPS[1:] if s[g, "ratio"] > BIG_GOAL]
            if "max" in s and s["max"][0] > MAX_GOAL:
                s["misses"].append("max")
            if any("error" in r for r in mine):
                s["misses"].append("errors")
            out.append(s)
    return out


def summary_table(summ: list[dict[str, Any]], portable: bool) -> list[str]:
    cols = ["library", "mode", "one batch", "goal", "~1M", "large", "goal", "max (loss, size)", "misses"]
    if portable:
        cols[7:7] = ["portable: one batch", "~1M", "large"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in summ:
        cells = [s["library"], s["mode"], _ratio(s["one batch", "ratio"]), f"<= {s['goal']:.2f}",
                 _ratio(s["~1M", "ratio"]), _ratio(s["large", "ratio"]), f"<= {BIG_GOAL:.2f}"]
        if portable:
            cells[7:7] = [_ratio(s[g, "portable_ratio"]) for g, _ in GROUPS]
        worst = s.get("max")
        cells.append(f"{worst[0]:.2f} ({worst[1]})" if worst else "")
        cells.append(", ".join(s["misses"]) or "none")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def detail_table(rows: list[dict[str, Any]], portable: bool) -> list[str]:
    cols = ["loss", "size", "ours (us)", "peer (us)", "ours/peer"]
    if portable:
        cols += ["portable (us)", "portable/peer"]
    cols.append("rounds")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["loss"], r["shape"], _us(r.get("ours")), _us(r.get("peer")), _ratio(r.get("ratio"))]
        if portable:
            cells += [_us(r.get("portable")), _ratio(r.get("portable_ratio"))]
        cells.append(str(r.get("rounds", "")))
        if "error" in r:
            cells[-1] += f" error: {r['error'].replace('|', '/')}"
        elif "note" in r:
            cells[-1] += f" ({r['note']})"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------- report


def _machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                      if ln.startswith("Model name:")), model)
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / (1 << 30):.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        memory = ""
    return f"{model}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.machine()}"


def _versions(libraries: list[str]) -> str:
    import importlib

    parts = [f"Python {platform.python_version()}", f"anyloss {anyloss.__version__}"]
    modules = ["numpy"] + [LIBRARIES[n].module for n in libraries if n != "numpy"]
    if "jax" in libraries:
        modules.append("optax")
    for module in modules:
        try:
            version = importlib.import_module(module).__version__
        except (ImportError, AttributeError):
            continue
        parts.append(f"{module.split('.')[0]} {version}")
    return ", ".join(parts)


METHOD = """\
- Workload: one loss call per training step on one batch.  anyloss and the peer
  (the call a user would otherwise write, table below) run in one process, called
  in turn, after warm-up calls (compilation and caches excluded); each time is the
  best call of up to `--repeat` rounds (fewer for slow calls: about `--budget`
  seconds per measurement, at least 3 rounds), in microseconds per call.  The
  ratio is ours / peer: below 1, anyloss is faster.
- Every loss uses `reduction='mean'`, so forward and backward time the same
  function; the gradient is taken with respect to the first input.
- torch: `forward`; `forward+backward` (the loss, then `.backward()`), PyTorch on
  {threads}.  jax: `eager` (no jit around the call: anyloss and the peer dispatch
  as eager user code does), `jit` (`jax.jit` of the loss), `jit(grad)`
  (`jax.jit(jax.grad(loss))`).  mlx: `forward` (the call, then `mx.eval`),
  `value_and_grad` (`mx.value_and_grad`, value and gradient evaluated).  numpy:
  `forward`.
- Sizes (float32): cross_entropy and nll_loss 64x10, 256x1000, 4096x32000 (8 x 512
  tokens, 32000-word vocabulary), 1024x1024 and 4096x32768 logits with class
  indices; the elementwise losses 256, 4096, 2^20 and 2^24 elements;
  cosine_similarity_loss and triplet_loss 64x128, 256x768, 1024x1024 and 16384x1024
  rows of embeddings; kl_div_loss 64x10, 256x1000, 1024x1024 and 16384x1024 (the
  log-probabilities of nll_loss and kl_div_loss from a log-softmax).
- Summary: the geometric mean of ours / peer over the losses at one batch (the
  first size of each loss: 64x10, 256 elements, 64x128), at ~1M elements
  (1024x1024, 2^20) and at the large sizes; the goals are those of the project:
  at one batch torch forward <= 1.5, forward+backward <= 1.3, JAX eager <= 1.0,
  `jax.jit` <= 1.05, MLX <= 1.2, NumPy <= 1.5; at ~1M and large <= {big} everywhere;
  no single call above {worst}x."""

NOTES = """\
- The peers' math equals ours, with two known differences of `eps` placement:
  `F.triplet_margin_loss` adds `eps` to the difference (MLX and optax inside the
  root), and `optax.losses.cosine_similarity` clips each squared norm at
  `epsilon` (MLX: the product of the norms at `eps`).  Neither changes the work.
- `F.kl_div(..., reduction='batchmean', log_target=True)` of a 2-d input is the
  mean over rows of the sum over classes, the value of `kl_div_loss(..., 'mean')`.
- The portable column (with `--portable`) is anyloss inside
  `anyloss._native.portable()`, the Array API code with every fast path off;
  in eager modes it includes entering and leaving that context on each call."""


def write_markdown(rows, peers, summ, path: Path, opts: argparse.Namespace, command: str,
                   plot: str | None, elapsed: float) -> None:
    threads = "one thread" if opts.threads == 1 else (
        "its default threads" if opts.threads <= 0 else f"{opts.threads} threads")
    libs = [n for n in opts.libraries if any(r["library"] == n for r in rows)]
    lines = [
        "# Benchmarks",
        "",
        "Per call, as a training loop calls a loss: anyloss against the call a user "
        "would otherwise write on each library. Written by `benchmarks/bench.py`.",
        "",
        f"- Machine: {_machine()}",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Versions: {_versions(libs)}",
        f"- Command: `{command}`, which ran "
        + (f"{elapsed:.0f} s" if elapsed < 120 else f"{elapsed / 60:.0f} min"),
        METHOD.format(threads=threads, big=f"{BIG_GOAL:.2f}", worst=f"{MAX_GOAL:g}"),
        "",
        "## Summary",
        "",
        *_partial(opts),
        *summary_table(summ, opts.portable),
        "",
    ]
    if plot:
        lines += [f"![ours / peer against size, per library and mode]({plot})", ""]
    lines += ["## Peers", "", "| loss | " + " | ".join(libs) + " |", "|" + "---|" * (len(libs) + 1)]
    for loss, by_lib in peers.items():
        lines.append(f"| {loss} | " + " | ".join(f"`{by_lib.get(n, '')}`" for n in libs) + " |")
    lines += ["", "## All results", ""]
    for lib in libs:
        for mode in LIBRARIES[lib].goals:
            mine = [r for r in rows if r["library"] == lib and r["mode"] == mode]
            if mine:
                lines += [f"### {lib}, {mode}", "", *detail_table(mine, opts.portable), ""]
    lines += ["## Notes", "", NOTES, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _partial(opts: argparse.Namespace) -> list[str]:
    """A warning line where the run left out libraries, losses or sizes."""
    left_out = [n for n in LIBRARIES if n not in opts.libraries]
    left_out += [c.name for c in CASES if c not in opts.cases]
    left_out += ["sizes other than the first" if opts.quick else ""]
    left_out += [f"the {t} sizes" for t in TIERS if t not in opts.tiers]
    left_out = [s for s in left_out if s]
    if not left_out:
        return []
    return [f"**A partial run**, without {', '.join(left_out)}.", ""]


def write_plot(rows: list[dict[str, Any]], path: Path) -> bool:
    """One panel per library: ours / peer against the input's size, one colour per mode."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    libs = [n for n in LIBRARIES if any(r["library"] == n and "ratio" in r for r in rows)]
    if not libs:
        return False
    ncols = min(2, len(libs))
    nrows = math.ceil(len(libs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 5.0 * nrows), squeeze=False,
                             sharey=True, layout="constrained")
    for ax in axes.flat[len(libs):]:
        ax.set_visible(False)
    for ax, lib in zip(axes.flat, libs):
        for k, mode in enumerate(LIBRARIES[lib].goals):
            mine = [r for r in rows if r["library"] == lib and r["mode"] == mode and "ratio" in r]
            if not mine:
                continue
            color = f"C{k}"
            ax.scatter([r["elements"] for r in mine], [r["ratio"] for r in mine], s=12,
                       color=color, alpha=0.35, linewidths=0)
            # the geo-mean over the losses at each place (one batch, second batch size, ...)
            places = [[r for r in mine if r["place"] == p] for p in sorted({r["place"] for r in mine})]
            points = sorted((geomean([r["elements"] for r in g]), geomean([r["ratio"] for r in g]))
                            for g in places)
            xs, ys = zip(*points)
            ax.plot(xs, ys, "-o", color=color, markersize=5, label=mode)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(MAX_GOAL, color="gray", linewidth=0.8, linestyle="--", label=f"{MAX_GOAL:g}x")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{lib} vs its peer")
        ax.set_xlabel("elements in the first input")
        ax.set_ylabel("time ours / peer (below 1: faster)")
        ax.grid(True, which="major", alpha=0.3)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2,
                  title="dots: each loss at each size; lines: their geo-mean", title_fontsize=8)
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    low, high = min(0.5, min(ratios) / 1.2), max(2.5, max(ratios) * 1.2)
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 1.5, 2, 5, 10, 20, 50, 100) if low <= t <= high]
    for ax in axes.flat:  # the y axis is shared
        ax.set_ylim(low, high)
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


CASE_BY_NAME = {c.name: c for c in CASES}


# ------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the first size of each loss, few rounds (CI smoke run)")
    p.add_argument("--libraries", default=",".join(LIBRARIES), help="comma-separated subset of " + ",".join(LIBRARIES))
    p.add_argument("--losses", default="", help="comma-separated subset of the losses (default all)")
    p.add_argument("--sizes", default=",".join(TIERS), help="comma-separated subset of " + ",".join(TIERS))
    p.add_argument("--repeat", type=int, default=None, help="most timed rounds per measurement (default 300; --quick 3)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds a measurement may take before rounds are cut (default 1; --quick 0)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls per contender first (default 3; --quick 1)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads; 0 for its default (default 1)")
    p.add_argument("--portable", action="store_true", help="also time anyloss with its fast paths off")
    p.add_argument("--out", default=None, help="write the results as markdown here (e.g. docs/benchmarks.md)")
    p.add_argument("--plot", default=None, help="write the plot here (e.g. docs/_static/benchmarks.png)")
    p.add_argument("--seed", type=int, default=0)
    opts = p.parse_args(argv)
    opts.libraries = [s for s in opts.libraries.split(",") if s]
    opts.tiers = [s for s in opts.sizes.split(",") if s]
    wanted = [s for s in opts.losses.split(",") if s]
    for given, known, what in ((opts.libraries, LIBRARIES, "library"), (opts.tiers, TIERS, "size"),
                               (wanted, CASE_BY_NAME, "loss")):
        unknown = [s for s in given if s not in known]
        if unknown:
            p.error(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    opts.cases = [c for c in CASES if not wanted or c.name in wanted]
    opts.repeat = opts.repeat or (3 if opts.quick else 300)
    opts.budget = opts.budget if opts.budget is not None else (0.0 if opts.quick else 1.0)
    opts.warmup = opts.warmup if opts.warmup is not None else (1 if opts.quick else 3)
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    start = time.perf_counter()
    rows, peers = run(opts)
    goals = {n: LIBRARIES[n].goals for n in opts.libraries}
    summ = summary(rows, goals)
    print()
    print("\n".join(summary_table(summ, opts.portable)))
    errors = [r for r in rows if "error" in r]
    if errors:
        print(f"\n{len(errors)} measurement(s) with errors:")
        for r in errors:
            print(f"  {r['library']} {r['mode']} {r['loss']} {r['shape']}: {r['error']}")
    print(f"\n{len(rows)} measurements in {time.perf_counter() - start:.0f} s")

    command = " ".join(["python benchmarks/bench.py", *(sys.argv[1:] if argv is None else argv)])
    plot = None
    if opts.plot and write_plot(rows, Path(opts.plot)):
        plot = opts.plot
        print(f"wrote {plot}")
    if opts.out:
        rel = os.path.relpath(plot, Path(opts.out).parent) if plot else None
        write_markdown(rows, peers, summ, Path(opts.out), opts, command, rel,
                       time.perf_counter() - start)
        print(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
