"""The accuracy scoreboard: anyloss, MLX and PyTorch on the hard cases.

Runs every case of ``tests/test_hard_cases.py`` through

- anyloss (on NumPy, or on PyTorch for bfloat16, which NumPy lacks),
- ``mlx.nn.losses`` (MLX arrays of the case's dtype, on the CPU),
- the ``torch.nn.functional`` equivalent (``binary_cross_entropy_with_logits``,
  ``cross_entropy``, ``kl_div(log_target=True)``, ``cosine_similarity``,
  ``triplet_margin_loss``, ``gaussian_nll_loss``, ``huber_loss``,
  ``smooth_l1_loss``, ...; ``n/a`` where PyTorch has no such loss),

and prints, for each case, whether each result is right to the precision of
the input dtype: within ``ULPS`` units in the last place of the exact value
computed with mpmath from the same rounded inputs (an exact value beyond the
dtype's range must come out as ``inf``).  The bound is deliberately loose
(16 ulps), so that a "wrong" is an answer that is NaN, infinite, zero or off
by far more than rounding.

Usage::

    python benchmarks/accuracy.py          # the table and the totals
    python benchmarks/accuracy.py -v       # also the values
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import test_hard_cases as hard  # noqa: E402

import anyloss  # noqa: E402

ULPS = 16


def effective_params(case: hard.Case) -> dict:
    """The case's parameters with the reduction made explicit (defaults differ
    between anyloss/MLX and PyTorch)."""
    params = dict(case.params)
    if "reduction" not in params:
        params["reduction"] = inspect.signature(getattr(anyloss, case.loss)).parameters["reduction"].default
    return params


# ------------------------------------------------------------------------ contenders


def run_anyloss(case: hard.Case):
    lib = "numpy" if "numpy" in hard.LIBRARIES_BY_DTYPE[case.dtype] else "torch"
    return hard.result_to_float64(hard.run_anyloss(case, lib))


def run_mlx(case: hard.Case):
    import mlx.core as mx
    import mlx.nn.losses as losses

    with mx.stream(mx.cpu):
        inputs = {k: hard.to_library("mlx", v, case.dtype) for k, v in hard.case_inputs(case).items()}
        out = getattr(losses, case.loss)(**inputs, **effective_params(case))
        return hard.result_to_float64(out)


def _torch_reduce(torch, loss, reduction):
    if reduction == "mean":
        return torch.mean(loss)
    if reduction == "sum":
        return torch.sum(loss)
    return loss


def run_torch(case: hard.Case):
    """The torch.nn.functional equivalent, or None where there is none."""
    import torch
    import torch.nn.functional as F

    a = {k: hard.to_library("torch", v, case.dtype) for k, v in hard.case_inputs(case).items()}
    p = effective_params(case)
    red = p.pop("reduction")
    name = case.loss
    if name == "binary_cross_entropy":
        fn = F.binary_cross_entropy_with_logits if p.get("with_logits", True) else F.binary_cross_entropy
        out = fn(a["inputs"], a["targets"], weight=a.get("weights"), reduction=red)
    elif name == "cross_entropy":
        logits = torch.movedim(a["logits"], p.get("axis", -1), 1)
        targets = a["targets"]
        if targets.ndim == logits.ndim:
            targets = torch.movedim(targets, p.get("axis", -1), 1)
        out = F.cross_entropy(logits, targets, reduction="none", label_smoothing=p.get("label_smoothing", 0.0))
        out = _torch_reduce(torch, out * a["weights"] if "weights" in a else out, red)
    elif name == "nll_loss":
        out = F.nll_loss(torch.movedim(a["inputs"], p.get("axis", -1), 1), a["targets"], reduction=red)
    elif name == "kl_div_loss":
        out = F.kl_div(a["inputs"], a["targets"], reduction="none", log_target=True).sum(p.get("axis", -1))
        out = _torch_reduce(torch, out, red)
    elif name == "l1_loss":
        out = F.l1_loss(a["predictions"], a["targets"], reduction=red)
    elif name == "mse_loss":
        out = F.mse_loss(a["predictions"], a["targets"], reduction=red)
    elif name == "smooth_l1_loss":
        out = F.smooth_l1_loss(a["predictions"], a["targets"], beta=p.get("beta", 1.0), reduction=red)
    elif name == "huber_loss":
        out = F.huber_loss(a["inputs"], a["targets"], delta=p.get("delta", 1.0), reduction=red)
    elif name == "gaussian_nll_loss":
        out = F.gaussian_nll_loss(a["inputs"], a["targets"], a["vars"], full=p.get("full", False),
                                  eps=p.get("eps", 1e-6), reduction=red)
    elif name == "cosine_similarity_loss":
        out = F.cosine_similarity(a["x1"], a["x2"], dim=p.get("axis", 1), eps=p.get("eps", 1e-8))
        out = _torch_reduce(torch, out, red)
    elif name == "triplet_loss":
        # PyTorch adds eps to the difference, MLX inside the root: the cases use eps = 0.
        assert p.get("eps", 1e-6) == 0.0 and p.get("axis", -1) in (-1, 1), case.id
        out = F.triplet_margin_loss(a["anchors"], a["positives"], a["negatives"], margin=p.get("margin", 1.0),
                                    p=p.get("p", 2), eps=0.0, reduction=red)
    elif name == "margin_ranking_loss":
        out = F.margin_ranking_loss(a["inputs1"], a["inputs2"], a["targets"].to(a["inputs1"].dtype),
                                    margin=p.get("margin", 0.0), reduction=red)
    else:  # hinge_loss, log_cosh_loss: no PyTorch loss
        return None
    return hard.result_to_float64(out)


CONTENDERS = {"anyloss": run_anyloss, "MLX": run_mlx, "PyTorch": run_torch}


def score(case: hard.Case, run) -> tuple[str, str]:
    """('right' | 'wrong' | 'n/a', a short description of the result)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = run(case)
    except Exception as exc:  # an error on a valid input is a wrong answer
        return "wrong", f"{type(exc).__name__}"
    if got is None:
        return "n/a", ""
    ok, _ = hard.within_precision(got, hard.case_expected(case), case.dtype, ULPS)
    shown = np.array2string(np.asarray(got).ravel()[:3], precision=6, separator=",")
    return ("right" if ok else "wrong"), shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show the values")
    args = parser.parse_args()

    marks = {"right": "ok", "wrong": "WRONG", "n/a": "n/a"}
    totals = {name: {"right": 0, "wrong": 0, "n/a": 0} for name in CONTENDERS}
    width = max(len(c.id) for c in hard.CASES)
    print(f"{'case':<{width}}  {'dtype':<8}  " + "  ".join(f"{n:>8}" for n in CONTENDERS))
    for case in hard.CASES:
        results = {name: score(case, run) for name, run in CONTENDERS.items()}
        for name, (verdict, _) in results.items():
            totals[name][verdict] += 1
        line = f"{case.id:<{width}}  {case.dtype:<8}  " + "  ".join(
            f"{marks[v]:>8}" for v, _ in results.values()
        )
        print(line)
        if args.verbose:
            import mpmath as mp

            exact = hard.case_expected(case)
            first = np.asarray(exact, dtype=object).ravel()[0]
            print(f"{'':<{width}}  exact {mp.nstr(first, 10)}; "
                  + "; ".join(f"{n} {shown}" for n, (_, shown) in results.items()))

    n = len(hard.CASES)
    print()
    print(f"{n} hard cases; right to the input dtype's precision (within {ULPS} ulps of the exact value):")
    for name, t in totals.items():
        applicable = n - t["n/a"]
        extra = f" ({t['n/a']} without an equivalent)" if t["n/a"] else ""
        print(f"  {name:<8} {t['right']:>3} / {applicable}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
