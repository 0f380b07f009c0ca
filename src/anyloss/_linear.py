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
from ._common import astype, reduce, take


def chunk_logits(xp: Any, x: Any, weight: Any, bias: Any, dtype: Any) -> Any:
    """A chunk's logits ``x @ W.T + b`` in ``dtype`` (``weight`` and ``bias``
    already in it)."""
    logits = astype(xp, x, dtype) @ weight.T
    return logits if bias is None else logits + bias


def ce_params(params: tuple[Any, ...]) -> tuple[Any, ...]:
    """``cross_entropy``'s static parameters (axis, smoothing, probabilities,
    guard, softcap, z_loss, ignore_index) from ours."""
    smoothing, guard, softcap, z_loss, ignore_index = params
    return (-1, smoothing, False, guard, softcap, z_loss, ignore_index)


def chunk_rows(xp: Any, logits: Any, targets: Any, class_weights: Any, params: tuple[Any, ...]
               ) -> tuple[Any, Any]:
    """The per-row loss of a chunk's ``logits`` and the weight its rows add
    to a 'mean' (``None``: one per row)."""
    _, smoothing, _, guard, softcap, z_loss, ignore_index = ce_params(params)
    out = _formulas.cross_entropy(
        xp, logits, targets, class_weights, -1, smoothing, False, guard, softcap, z_loss,
        ignore_index,
    )
    return out if isinstance(out, tuple) else (out, None)


def chunk_loss(
    xp: Any, x: Any, weight: Any, bias: Any, targets: Any, class_weights: Any, dtype: Any,
    params: tuple[Any, ...],
) -> tuple[Any, Any]:
    """One chunk's per-row loss and the weight its rows add to a 'mean'
    (``None``: one per row).  ``weight``, ``bias`` and ``class_weights`` are
    already in ``dtype``; ``params`` = (smoothing, guard, softcap, z_loss,
    ignore_index)."""
    return chunk_rows(xp, chunk_logits(xp, x, weight, bias, dtype), targets, class_weights, params)


def mean_total(xp: Any, targets: Any, class_weights: Any, ignore_index: Any, dtype: Any) -> Any:
    """The denominator of a 'mean' over ``targets`` as :func:`chunk_rows`
    gives it: the class weight of the rows kept, or their number (a 0-d
    array)."""
    keep = None if ignore_index is None else targets != ignore_index
    if class_weights is None:
        if keep is None:
            return xp.asarray(float(targets.shape[0]), dtype=dtype, device=targets.device)
        return xp.sum(astype(xp, keep, dtype))
    safe = targets if keep is None else xp.where(keep, targets, xp.zeros_like(targets))
    # an index out of range (unchecked, its row NaN) reads no memory out of bounds
    rows = take(xp, class_weights, xp.clip(safe, 0, class_weights.shape[0] - 1))
    return xp.sum(rows if keep is None else xp.where(keep, rows, xp.zeros_like(rows)))


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
        xc, tc = (x, targets) if stop - start == n else (x[start:stop, ...], targets[start:stop])
        loss, weight_sum = chunk_loss(xp, xc, w, b, tc, cw, dtype, params)
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
