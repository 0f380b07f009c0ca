"""NumPy: the portable formulas, called directly."""

from __future__ import annotations

from .._formulas import evaluate


def run(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays):
    return evaluate(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays)
