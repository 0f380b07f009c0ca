"""The portable chunked computation of ``linear_cross_entropy``.

Tokens are taken ``chunk`` rows at a time: a chunk's logits
``x @ W.T + b`` (in the compute dtype, float32 for half precision) go through
``_formulas.cross_entropy`` and are dropped before the next chunk, so no
``N x V`` array exists.  The library drivers in ``_native`` (autodiff with a
small peak) call :func:`chunk_loss` per chunk; :func:`forward` is the loop
for every other library (loss values, for evaluation).
"""

from __future__ import annotations

from typing import Any

from . import _formulas
from ._common import astype, reduce


def chunk_loss(
    xp: Any, x: Any, weight: Any, bias: Any, targets: Any, class_weights: Any, dtype: Any,
    params: tuple[Any, ...],
) -> tuple[Any, Any]:
    """One chunk's per-row loss and the weight its rows add to a 'mean'
    (``None``: one per row).  ``weight``, ``bias`` and ``class_weights`` are
    already in ``dtype``; ``params`` = (smoothing, guard, softcap, z_loss,
    ignore_index)."""
    smoothing, guard, softcap, z_loss, ignore_index = params
    logits = astype(xp, x, dtype) @ weight.T
    if bias is not None:
        logits = logits + bias
    out = _formulas.cross_entropy(
        xp, logits, targets, class_weights, -1, smoothing, False, guard, softcap, z_loss,
        ignore_index,
    )
    return out if isinstance(out, tuple) else (out, None)


def spans(n: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk of ``n`` rows."""
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def finish(xp: Any, rows_or_sum: Any, total: Any, reduction: str, out_dtype: Any) -> Any:
    """The reduced loss from the per-row losses ('none') or their sum and the
    mean's denominator (a 0-d array)."""
    if reduction == "none":
        return reduce(xp, rows_or_sum, "none", out_dtype)
    return reduce(xp, rows_or_sum, reduction, out_dtype, total)


def forward(
    xp: Any, x: Any, weight: Any, bias: Any, targets: Any, class_weights: Any, dtype: Any,
    params: tuple[Any, ...], reduction: str, out_dtype: Any, chunk: int,
) -> Any:
    """The loss of ``x`` (N, D) with a Python loop over chunks."""
    n = x.shape[0]
    w = astype(xp, weight, dtype)
    b = None if bias is None else astype(xp, bias, dtype)
    cw = None if class_weights is None else astype(xp, class_weights, dtype)
    rows, loss_sum, total = [], None, None
    for start, stop in spans(n, chunk):
        loss, weight_sum = chunk_loss(xp, x[start:stop, ...], w, b, targets[start:stop], cw, dtype, params)
        if weight_sum is None:
            weight_sum = float(stop - start)
        if reduction == "none":
            rows.append(loss)
            continue
        part = xp.sum(loss)
        loss_sum = part if loss_sum is None else loss_sum + part
        total = weight_sum if total is None else total + weight_sum
    if reduction == "none":
        return finish(xp, xp.concat(rows) if rows else xp.zeros((0,), dtype=dtype), None, reduction, out_dtype)
    if loss_sum is None:  # no rows
        loss_sum = xp.zeros((), dtype=dtype)
        total = 0.0
    return finish(xp, loss_sum, xp.asarray(total, dtype=dtype) if isinstance(total, float) else total,
                  reduction, out_dtype)
