"""NumPy: the portable formulas on a lean NumPy namespace; large arrays in
cache-sized blocks shared by a thread pool.

Small calls run ``evaluate`` on :data:`lean`, NumPy's own functions without the
dispatch layers the formulas never need (``np.sum`` is ``np.add.reduce``
behind two Python frames), with identical values.  binary_cross_entropy
(logits; with pos_weight by ``bce_logits_relu``), kl_div, cosine,
cosine_embedding, poisson_nll (without ``full``), triplet (p = 2), smooth_l1,
hinge_embedding, sigmoid_focal and multilabel_soft_margin run their plain forms from ``_formulas`` where
the form's condition holds, the formula where it does not.  cross_entropy, softmax_focal and poly1 (class
indices) take the formula's cross entropy rows with the maximum's term removed
at its index, in place (:func:`_plain_ce`).  Class indices are range-checked
here, in one pass.

Large calls evaluate the same formulas block by block: blocks of elements
for elementwise losses, of rows for losses along an axis, each small enough
that its temporaries stay in the core's cache (and in memory already mapped)
across the formula's passes.  The blocks go to one thread per core (NumPy
releases the GIL in its loops); the caller's thread works too, and a call
from inside a pool thread runs alone.  Sums are combined from per-block sums
in the compute dtype, in block order, so a result does not depend on the
thread timing.  Nothing is kept between calls but the lazily created pool.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import os
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import array_api_compat.numpy as compat_np
import numpy as np

from .._common import astype, gather, reduce
from .._formulas import (
    FORMULAS,
    bce_logits_plain,
    bce_logits_relu,
    cosine_embedding_plain,
    cosine_plain,
    evaluate,
    hinge_embedding_plain,
    kl_div_plain,
    multilabel_of_bce,
    poisson_nll_plain,
    poly1_of_ce,
    sigmoid_focal_plain,
    smooth_l1_plain,
    softmax_focal_of_ce,
    triplet_plain,
    weighted_rows,
)

# ------------------------------------------------------------------ the namespace


class _Lean(types.ModuleType):
    """NumPy under its own name: the functions set here, and array-api-compat's
    NumPy namespace for everything else (NumPy's own functions, mostly)."""

    def __getattr__(self, name: str) -> Any:  # a name compat makes on demand
        return getattr(compat_np, name)


# Each takes NumPy's own arguments; anything beyond the formulas' use (other
# keywords, an array subclass) goes to the NumPy function itself.


def _sum(x, axis=None, dtype=None, *args, keepdims=False, **kwargs):
    if args or kwargs or type(x) is not np.ndarray:
        return np.sum(x, axis, dtype, *args, keepdims=keepdims, **kwargs)
    return np.add.reduce(x, axis=axis, dtype=dtype, keepdims=keepdims)


def _max(x, axis=None, *args, keepdims=False, **kwargs):
    if args or kwargs or type(x) is not np.ndarray:
        return np.max(x, axis, *args, keepdims=keepdims, **kwargs)
    return np.maximum.reduce(x, axis=axis, keepdims=keepdims)


def _mean(x, axis=None, *args, keepdims=False, **kwargs):
    # np.mean's own steps for a non-empty float32/float64 array: the sum over
    # the count, divided in float64 and rounded to the sum's type.
    if (
        axis is None and not (args or kwargs or keepdims) and type(x) is np.ndarray
        and x.dtype.char in "fd" and x.size
    ):
        total = np.add.reduce(x, axis=None)
        return total.dtype.type(float(total) / x.size)
    return np.mean(x, axis, *args, keepdims=keepdims, **kwargs)


def _astype(x, dtype, /, *, copy=True, device=None):
    if device is not None or type(x) is not np.ndarray:
        return compat_np.astype(x, dtype, copy=copy, device=device)
    return x.astype(dtype, copy=copy)


def _asarray(obj, /, *, dtype=None, device=None, copy=None):
    if device is not None or copy is not None:
        return compat_np.asarray(obj, dtype=dtype, device=device, copy=copy)
    return np.asarray(obj, dtype=dtype)


# The *_like functions as np.ones, np.zeros and np.full of the shape (the
# formulas read their values only, not their memory layout): np.zeros_like
# costs several times as much on a small array.


def _ones_like(x, /, *, dtype=None, device=None):
    if device is not None or not (type(x) is np.ndarray or isinstance(x, np.generic)):
        return compat_np.ones_like(x, dtype=dtype, device=device)
    return np.ones(x.shape, x.dtype if dtype is None else dtype)


def _zeros_like(x, /, *, dtype=None, device=None):
    if device is not None or not (type(x) is np.ndarray or isinstance(x, np.generic)):
        return compat_np.zeros_like(x, dtype=dtype, device=device)
    return np.zeros(x.shape, x.dtype if dtype is None else dtype)


def _full_like(x, /, fill_value, *, dtype=None, device=None):
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    if device is not None or type(x) is not np.ndarray or dtype.kind != "f" or type(fill_value) is not float:
        return compat_np.full_like(x, fill_value, dtype=dtype, device=device)
    return np.full(x.shape, fill_value, dtype)


def _expand_dims(x, axis):
    if type(axis) is not int or type(x) is not np.ndarray:
        return np.expand_dims(x, axis)
    shape = x.shape
    if not -len(shape) - 1 <= axis <= len(shape):
        return np.expand_dims(x, axis)  # its error
    axis %= len(shape) + 1
    return x.reshape(shape[:axis] + (1,) + shape[axis:])


def _squeeze(x, axis=None):
    if type(axis) is not int or type(x) is not np.ndarray:
        return np.squeeze(x, axis)
    shape = x.shape
    if not -len(shape) <= axis < len(shape) or shape[axis] != 1:
        return np.squeeze(x, axis)  # its error
    axis %= len(shape)
    return x.reshape(shape[:axis] + shape[axis + 1 :])


def _take_along_axis(x, indices, axis=-1):
    # np.take_along_axis's own fancy index: orthogonal aranges, the indices
    # along ``axis``; its checks and error messages where they apply.
    if (
        type(axis) is not int or type(x) is not np.ndarray or type(indices) is not np.ndarray
        or x.ndim != indices.ndim or indices.dtype.kind not in "iu" or not -x.ndim <= axis < x.ndim
    ):
        return np.take_along_axis(x, indices, axis=axis)
    ndim = x.ndim
    axis %= ndim
    index = []
    for dim, n in enumerate(x.shape):
        if dim == axis:
            index.append(indices)
        else:
            index.append(np.arange(n).reshape((1,) * dim + (n,) + (1,) * (ndim - dim - 1)))
    return x[tuple(index)]


# the Array API's dtype kinds as NumPy's kind codes
_KIND_CODES = {
    "bool": "b",
    "signed integer": "i",
    "unsigned integer": "u",
    "integral": "iu",
    "real floating": "f",
    "complex floating": "c",
    "numeric": "iufc",
}


def _isdtype(dtype, kind):
    codes = _KIND_CODES.get(kind) if type(kind) is str else None
    if codes is None or not isinstance(dtype, np.dtype):
        return compat_np.isdtype(dtype, kind)
    return dtype.kind in codes


#: NumPy as the formulas see it here.
lean = _Lean("numpy", "NumPy's functions without the dispatch layers the formulas do not use.")
for _name in dir(compat_np):
    if not _name.startswith("_"):
        setattr(lean, _name, getattr(compat_np, _name))
for _name, _fn in {
    "sum": _sum,
    "max": _max,
    "mean": _mean,
    "astype": _astype,
    "asarray": _asarray,
    "ones_like": _ones_like,
    "zeros_like": _zeros_like,
    "full_like": _full_like,
    "expand_dims": _expand_dims,
    "squeeze": _squeeze,
    "isdtype": _isdtype,
    "take_along_axis": _take_along_axis,
}.items():
    setattr(lean, _name, _fn)

# ------------------------------------------------------------------------ blocks

#: Losses along an axis (``params[0]``) that are cut into blocks of rows.
ROWS = frozenset({"cross_entropy", "kl_div_loss", "cosine_similarity_loss", "triplet_loss"})
#: Elementwise losses (every array, and the loss, of one shape): blocks of elements.
ELEMENTWISE = frozenset(
    {
        "binary_cross_entropy",
        "gaussian_nll_loss",
        "hinge_embedding_loss",
        "hinge_loss",
        "huber_loss",
        "l1_loss",
        "log_cosh_loss",
        "margin_ranking_loss",
        "mse_loss",
        "msle_loss",
        "sigmoid_focal_loss",
        "smooth_l1_loss",
    }
)
# Any other loss runs directly: nll_loss reads one element per row, and a
# loss not named here is not known to be cut safely.

#: Elements of the first array per block: the block's temporaries stay in cache.
BLOCK = 1 << 16
#: Calls on fewer elements run directly (the blocks would not pay).
THRESHOLD = 1 << 17
#: Calls on fewer elements run their blocks on the caller's thread alone
#: (waking a pool thread costs tens of microseconds).
THREADED = 1 << 18
#: Losses with a few light passes per element and many per row: a block's
#: fixed cost weighs more, so their blocks and threshold are this many times larger.
_LIGHT = {"cosine_similarity_loss": 4, "kl_div_loss": 4, "triplet_loss": 4}


def checks_class_indices(targets: Any) -> bool:
    """Whether :func:`run` checks these class indices (of cross_entropy and
    nll_loss) itself: a NumPy array's, always."""
    return type(targets) is np.ndarray


def _check_range(func: str, x: Any, targets: Any, axis: int, ignore: Any = None) -> None:
    """Class indices in ``[0, classes)`` (``ignore`` aside), with the front
    door's error.  One pass: a negative index seen as unsigned is at least
    ``2 ** (bits - 1)``."""
    classes = x.shape[axis]
    if not targets.size:
        return
    if ignore is not None:
        targets = np.where(targets == ignore, np.zeros((), targets.dtype), targets)
    if targets.dtype.kind == "u":
        bad = np.maximum.reduce(targets, axis=None) >= classes
    elif targets.dtype.kind == "i" and classes <= 1 << (8 * targets.itemsize - 1):
        bad = np.maximum.reduce(targets.view(targets.dtype.str.replace("i", "u")), axis=None) >= classes
    else:
        bad = np.minimum.reduce(targets, axis=None) < 0 or np.maximum.reduce(targets, axis=None) >= classes
    if bad:
        lo, hi = int(np.min(targets)), int(np.max(targets))
        but = "" if ignore is None else f" (besides ignore_index={ignore})"
        raise ValueError(
            f"{func}: targets holds class indices from {lo} to {hi}{but}, but the class axis has "
            f"{classes} entries; expected 0 <= index < {classes}"
        )


# loss -> its plain form (see _formulas) and that form's parameters, or None;
# a form that returns the loss alone is exact wherever its result is not NaN
_PLAIN: dict[str, Callable[[tuple[Any, ...]], Any]] = {
    # (pos_weight: bce_logits_relu, see _evaluate)
    "binary_cross_entropy": lambda p: (bce_logits_plain, ()) if p[0] else None,
    "sigmoid_focal_loss": lambda p: (sigmoid_focal_plain, p),
    "cosine_embedding_loss": lambda p: (cosine_embedding_plain, p),
    "cosine_similarity_loss": lambda p: (cosine_plain, p),
    "hinge_embedding_loss": lambda p: (hinge_embedding_plain, p),
    "kl_div_loss": lambda p: (kl_div_plain, p),
    "poisson_nll_loss": lambda p: None if p[1] else (poisson_nll_plain, (p[0], p[2])),
    "smooth_l1_loss": lambda p: (smooth_l1_plain, p),
    "triplet_loss": lambda p: (triplet_plain, (p[0], p[2], p[3])) if p[1] == 2 else None,
}


def _along(x: Any, indices: Any, axis: int) -> tuple[Any, ...]:
    """The fancy index of ``x`` at ``indices`` (``x``'s shape, 1 along ``axis``)."""
    ndim = x.ndim
    return tuple(
        indices if dim == axis else np.arange(n).reshape((1,) * dim + (n,) + (1,) * (ndim - dim - 1))
        for dim, n in enumerate(x.shape)
    )


def _plain_ce(xp, logits, targets, axis, guard):
    """The formula's cross entropy rows (class indices): :func:`shifted_logsumexp`'s
    ``log1p`` of the other terms with the maximum's term removed at its index
    (``argmax``, in place) instead of by a mask over the logits, minus the
    target's shifted logit; four passes over the logits where the mask takes
    eight.  ``None`` where a row is not finite (an infinite or NaN logit): the
    formula runs."""
    if not logits.size or not logits.shape[axis]:
        return None
    at_max = _along(logits, np.argmax(logits, axis=axis, keepdims=True), axis)
    top = logits[at_max]
    with np.errstate(all="ignore"):
        terms = np.subtract(logits, top)
        np.exp(terms, out=terms)
        terms[at_max] = 0
        rest = np.add.reduce(terms, axis=axis)
        if guard:
            picked = gather(xp, logits, targets, axis, guard)
        else:  # the index of the maximum's, at the targets
            index = list(at_max)
            index[axis] = np.expand_dims(targets, axis)
            picked = logits[tuple(index)]
        rows = np.log1p(rest) - np.squeeze(picked - top, axis)
    if not np.isfinite(np.add.reduce(rows, axis=None)):
        return None
    return rows


def _cross_entropy(xp, logits, targets, class_weights, axis, smoothing, probabilities, guard,
                   softcap, z_loss, ignore):
    """Cross entropy with class indices from :func:`_plain_ce`'s rows, weighted
    by :func:`weighted_rows` for class weights or ignore_index; the formula
    for the other options, and where the rows are not exact."""
    if (not probabilities and softcap is None and not z_loss and type(smoothing) is float
            and smoothing == 0):
        keep, kept = None, targets
        if ignore is not None:
            keep = targets != ignore
            kept = np.where(keep, targets, np.zeros((), targets.dtype))
        rows = _plain_ce(xp, logits, kept, axis, guard)
        if rows is not None:
            if keep is None and class_weights is None:
                return rows
            return weighted_rows(xp, rows, kept, class_weights, keep)
    return FORMULAS["cross_entropy"](
        xp, logits, targets, class_weights, axis, smoothing, probabilities, guard, softcap, z_loss, ignore
    )


def _softmax_focal(xp, logits, targets, class_weights, axis, gamma, guard):
    ce = _plain_ce(xp, logits, targets, axis, guard)
    if ce is None:
        return FORMULAS["softmax_focal_loss"](xp, logits, targets, class_weights, axis, gamma, guard)
    return softmax_focal_of_ce(xp, ce, targets, class_weights, gamma, guard)


def _poly1(xp, logits, targets, axis, epsilon, probabilities, guard):
    ce = None if probabilities else _plain_ce(xp, logits, targets, axis, guard)
    if ce is None:
        return FORMULAS["poly1_cross_entropy"](xp, logits, targets, axis, epsilon, probabilities, guard)
    return poly1_of_ce(xp, ce, epsilon)


def _multilabel(xp, x, t, class_weights):
    """multilabel_soft_margin from :func:`bce_logits_plain` where that has no
    NaN, else the formula."""
    with np.errstate(all="ignore"):
        bce = bce_logits_plain(xp, x, t)
    if np.isnan(np.add.reduce(bce, axis=None)):
        return FORMULAS["multilabel_soft_margin_loss"](xp, x, t, class_weights)
    return multilabel_of_bce(xp, bce, class_weights)


# loss -> its form of the formula by a plain form (the formula's signature)
_FORMS = {
    "cross_entropy": _cross_entropy,
    "softmax_focal_loss": _softmax_focal,
    "poly1_cross_entropy": _poly1,
    "multilabel_soft_margin_loss": _multilabel,
}


def _evaluate(name, params, reduction, out_dtype, dtype, weighted, arrays):
    """``evaluate`` on :data:`lean`, by the loss's plain form where that is exact."""
    form = _FORMS.get(name)
    if form is not None:
        return evaluate(lean, name, params, reduction, out_dtype, dtype, weighted, *arrays, formula=form)
    plain = _PLAIN.get(name)
    form = plain(params) if plain is not None else None
    with_pos_weight = form is not None and name == "binary_cross_entropy" and arrays[2] is not None
    if with_pos_weight:
        form = (bce_logits_relu, ())
    if form is not None:
        if weighted:
            *values, weights = arrays
        else:
            values = arrays
        if name == "binary_cross_entropy" and not with_pos_weight:
            values = values[:2]  # without the pos_weight left out
        # NumPy's warnings are the formula's: the plain form's 0 * inf and
        # overflowing squares are not the caller's (they fail the condition).
        with np.errstate(all="ignore"):
            loss = form[0](lean, *[astype(lean, a, dtype) for a in values], *form[1])
        loss, exact = loss if type(loss) is tuple else (loss, None)
        if exact is None or exact:
            if weighted:
                loss = loss * astype(lean, weights, dtype)
            result = reduce(lean, loss, reduction, out_dtype)
            if exact is not None or not (math.isnan(result) if not result.ndim else np.isnan(result).any()):
                return result
    return evaluate(lean, name, params, reduction, out_dtype, dtype, weighted, *arrays)


def run(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays):
    if name == "nll_loss" or (name == "cross_entropy" and not params[2]):
        if type(arrays[1]) is np.ndarray:  # the front door left the check to us
            _check_range(name, arrays[0], arrays[1], params[0], params[-1])
    for a in arrays:
        if type(a) is not np.ndarray and a is not None:  # subclasses keep their own dispatch
            return evaluate(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays)
    if (
        arrays[0].size >= THRESHOLD * _LIGHT.get(name, 1)
        and (name in ROWS or name in ELEMENTWISE)
        and not getattr(_local, "inside", False)
        and not _per_class(name, params, arrays)
    ):
        plan = _plan(name, params, arrays)
        if plan is not None:
            return _blocked(plan, name, reduction, out_dtype, dtype, weighted)
    return _evaluate(name, params, reduction, out_dtype, dtype, weighted, arrays)


def _per_class(name: str, params: tuple[Any, ...], arrays: tuple[Any, ...]) -> bool:
    """Whether a call has per-class arrays (class_weights, pos_weight) or a
    mean over kept rows, which blocks do not cut: it runs directly."""
    if name == "cross_entropy":
        return arrays[2] is not None or params[6] is not None
    return name == "binary_cross_entropy" and arrays[2] is not None and not _one_weight(arrays)


def _one_weight(arrays: tuple[Any, ...]) -> bool:
    """Whether binary_cross_entropy's pos_weight is one number for every
    element (0-d or one entry), which each block takes whole."""
    return arrays[2].size == 1 and arrays[2].ndim <= 1


class _Plan:
    """Views of the arrays, the axis to cut them along and the loss's shape."""

    __slots__ = ("arrays", "axes", "params", "length", "step", "workers", "loss_shape", "view_shape")

    def __init__(self, arrays, axes, params, length, step, workers, loss_shape, view_shape):
        self.arrays = arrays  # the views the blocks are cut from
        self.axes = axes  # per array, the axis to cut along
        self.params = params  # the formula's parameters, for the views
        self.length = length  # the extent of the cut axis
        self.step = step  # its entries per block
        self.workers = workers  # threads to share the blocks
        self.loss_shape = loss_shape  # of the unreduced loss of the call
        self.view_shape = view_shape  # of the unreduced loss of the views

    def blocks(self) -> int:
        return -(-self.length // self.step)

    def block(self, i: int) -> tuple[slice, list[Any]]:
        cut = slice(i * self.step, min((i + 1) * self.step, self.length))
        return cut, [
            a if a is None or ax is None else a[(slice(None),) * ax + (cut,)]
            for a, ax in zip(self.arrays, self.axes)
        ]


def _view(a: Any, shape: tuple[int, ...]) -> Any:
    """``a`` reshaped without a copy, or ``None``; an array left out
    (``None``) stays :data:`_ABSENT`."""
    if a is None:
        return _ABSENT
    if a.flags.c_contiguous:
        return a.reshape(shape)
    try:
        return np.reshape(a, shape, copy=False)
    except ValueError:  # a copy would be needed
        return None
    except TypeError:  # NumPy before 2.1: no copy argument
        view = a.reshape(shape)
        return view if np.shares_memory(view, a) else None


_ABSENT = object()  # an optional array left out, in _plan's views


def _plan(name: str, params: tuple[Any, ...], arrays: tuple[Any, ...]) -> _Plan | None:
    first = arrays[0]
    shape, size = first.shape, first.size
    if name in ROWS:
        ax = params[0]
        classes = shape[ax]
        loss_shape = shape[:ax] + shape[ax + 1 :]
        full = [a is not None and a.ndim == first.ndim for a in arrays]
        pre, post = math.prod(shape[:ax]), math.prod(shape[ax + 1 :])
        if post == 1:
            shapes = {True: (pre, classes), False: (pre,)}
            cut = {True: 0, False: 0}
            length, unit, view_shape = pre, classes, (pre,)
        else:
            shapes = {True: (pre, classes, post), False: (pre, post)}
            cut = {True: 0, False: 0} if pre >= post else {True: 2, False: 1}
            length, unit = (pre, classes * post) if pre >= post else (post, classes)
            view_shape = (pre, post)
        views = [_view(a, shapes[f]) for a, f in zip(arrays, full)]
        if all(v is not None for v in views):
            views = [None if v is _ABSENT else v for v in views]
            axes = [cut[f] for f in full]
            new_params = (1, *params[1:])
        else:  # strided arrays: cut the longest axis other than the class axis
            b = max((i for i in range(first.ndim) if i != ax), key=lambda i: shape[i], default=None)
            if b is None:
                return None
            views, axes, new_params = list(arrays), [b if f else b - (b > ax) for f in full], params
            length, unit, view_shape = shape[b], size // max(shape[b], 1), loss_shape
    else:
        loss_shape = shape
        whole = [False] * len(arrays)  # arrays each block takes whole (a pos_weight of one entry)
        if name == "binary_cross_entropy" and arrays[2] is not None:
            whole[2] = True
        views = [a if w else _view(a, (size,)) for a, w in zip(arrays, whole)]
        if all(v is not None for v in views):
            views = [None if v is _ABSENT else v for v in views]
            axes, length, unit, view_shape = [0] * len(arrays), size, 1, (size,)
        else:
            b = max(range(first.ndim), key=lambda i: shape[i])
            views, axes, length, unit, view_shape = list(arrays), [b] * len(arrays), shape[b], size // shape[b], shape
        axes = [None if w else ax for ax, w in zip(axes, whole)]
        new_params = params
    # cache-sized blocks, and at least one per thread
    workers = threads() if size >= THREADED else 1
    block = BLOCK * _LIGHT.get(name, 1)
    step = max(1, min(block, -(-size // workers)) // max(unit, 1))
    if length <= step:
        return None
    return _Plan(views, axes, new_params, length, step, workers, loss_shape, view_shape)


def _blocked(plan: _Plan, name, reduction, out_dtype, dtype, weighted):
    params = plan.params
    if reduction == "none":
        out = np.empty(plan.view_shape, out_dtype)
        loss_axis = _loss_axis(name, plan)

        def work(i):
            cut, blocks = plan.block(i)
            out[(slice(None),) * loss_axis + (cut,)] = _evaluate(
                name, params, "none", out_dtype, dtype, weighted, blocks
            )

        _map(work, plan.blocks(), plan.workers)
        return out.reshape(plan.loss_shape)

    def partial(i):
        _, blocks = plan.block(i)
        return _evaluate(name, params, "sum", dtype, dtype, weighted, blocks)

    total = np.add.reduce(np.asarray(_map(partial, plan.blocks(), plan.workers), dtype=dtype))
    if reduction == "mean":
        count = math.prod(plan.loss_shape)
        total = total.dtype.type(total / np.intp(count))  # as np.mean divides
    return np.asarray(total, dtype=dtype).astype(out_dtype)


def _loss_axis(name: str, plan: _Plan) -> int:
    """The axis of the unreduced loss (of the views) that the blocks cut."""
    ax = plan.axes[0]  # the first array has the full shape
    if name in ROWS:
        class_axis = plan.params[0]
        return ax - (ax > class_axis)
    return ax


# ------------------------------------------------------------------------ threads

_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def threads() -> int:
    """Threads a large call uses: ``ANYLOSS_NUM_THREADS``, else the cores this
    process may run on."""
    env = os.environ.get("ANYLOSS_NUM_THREADS", "").strip()
    if env.isdigit():
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _mark_inside() -> None:
    _local.inside = True


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            old = _pool
            _pool = ThreadPoolExecutor(workers, "anyloss", initializer=_mark_inside)
            _pool_size = workers
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _forget_pool() -> None:  # a forked child has none of the parent's threads
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _map(work: Callable[[int], Any], count: int, workers: int) -> list[Any]:
    """``[work(i) for i in range(count)]``, the calls shared by this thread and
    ``workers - 1`` pool threads, each under a copy of this thread's context
    (NumPy's errstate)."""
    results: list[Any] = [None] * count
    helpers = min(workers, count) - 1
    if helpers <= 0:
        return [work(i) for i in range(count)]
    indices = itertools.count()  # next() is atomic under the GIL
    failure: list[BaseException] = []

    def drain() -> None:
        try:
            for i in indices:
                if i >= count or failure:
                    return
                results[i] = work(i)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller
            failure.append(error)

    # NumPy 2 keeps its errstate in a context variable, NumPy 1 per thread
    errors = dict(np.geterr(), call=np.geterrcall())

    def helper() -> None:
        with np.errstate(**errors):
            drain()

    pool = _executor(helpers)
    futures = [pool.submit(contextvars.copy_context().run, helper) for _ in range(helpers)]
    _local.inside = True
    try:
        drain()
    finally:
        _local.inside = False
        for f in futures:
            if not f.cancel():
                f.result()
    if failure:
        raise failure[0]
    return results
