"""JAX: every call runs one compiled computation, cached per static arguments.

``jax.jit`` of :func:`anyloss._formulas.evaluate` with the loss's name, its
parameters, the reduction and the dtypes fixed: an eager call is one cached
XLA executable (no tracing, no compilation after the first call with those
shapes), and under an outer ``jax.jit``, ``grad`` or ``vmap`` the same
function is inlined into the caller's trace.

Some losses run in forms that XLA compiles to the passes of the native
kernels (the row forms of :mod:`anyloss._formulas`):

* ``cross_entropy`` without training options:
  :func:`~anyloss._formulas.cross_entropy_plain` (the
  ``log1p`` that keeps a confident row's tiny loss costs a compare and a
  select over the logits, which XLA on the CPU does not fuse into the sum);
  with class weights or ignore_index (class indices, no smoothing, soft-cap
  or z-loss), those rows weighted by :func:`~anyloss._formulas.weighted_rows`,
  with ignore_index only where every logit is finite (else the formula);
  the other options: the formula;
* ``softmax_focal_loss`` and ``poly1_cross_entropy`` (class indices): their
  ``*_of_ce`` forms of that cross entropy, and ``info_nce_loss`` its cross
  entropies in that form;
* ``js_div_loss``: the formula, differentiated by its slopes
  (:func:`~anyloss._formulas.js_div_slopes`) in a ``jax.custom_jvp``, not
  through its forms;
* ``binary_cross_entropy`` with logits: the whole call (reduction included)
  by :func:`~anyloss._formulas.bce_logits_relu` where its result has no NaN
  (its mark of an infinite logit with its matching target), else by the
  formula, under ``lax.cond`` in a ``jax.custom_jvp`` whose
  tangent is the formula's (the formula's selects split XLA's fusion of the
  reduction, and each split writes an array of the inputs' size);
* ``poisson_nll_loss`` without ``full``: the whole call by
  :func:`~anyloss._formulas.poisson_nll_plain` where its result has no NaN,
  else by the formula (the formula's ``0 log 0`` select splits the fusion
  as above), differentiated as the formula;
* ``hinge_embedding_loss``: :func:`~anyloss._formulas.hinge_embedding_nested`;
* ``cosine_embedding_loss``: the pair terms of ``cosine_similarity_loss``'s form;
* ``cosine_similarity_loss``, ``triplet_loss`` (p = 2), ``kl_div_loss``: the
  plain rows, and the safe rows under ``lax.cond`` only where the plain ones
  are not exact, inside a ``jax.custom_jvp`` whose tangent is taken outside
  the conditional (a conditional under reverse-mode autodiff would store the
  safe branch's intermediates on every call).

Class indices of a concrete array on the CPU are checked here, on the host
(:func:`checks_class_indices`), with one reduction of their NumPy view.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from .. import _formulas as F
from .._formulas import evaluate
from .numpy import _check_range

#: Compiled configurations kept (each holds XLA executables per input shape).
CACHE_SIZE = 512
#: Inputs from this size on take :func:`_unless`'s conditional: below it
#: the conditional (and its custom_jvp) costs more than the passes it saves.
COND_MIN_SIZE = 1 << 14

_HOST: dict[Any, bool] = {}  # sharding -> whether all its devices are CPUs


@functools.lru_cache(maxsize=CACHE_SIZE)
def compiled(
    name: str, params: tuple[Any, ...], reduction: str, out_dtype: Any, dtype: Any, weighted: bool
) -> Any:
    """The jitted computation of one loss configuration (bounded cache)."""
    whole = functools.partial(evaluate, jnp, name, params, reduction, out_dtype, dtype, weighted)
    if name == "binary_cross_entropy" and params[0]:
        return jax.jit(_bce_logits(whole))
    if name == "poisson_nll_loss" and not params[1]:  # without full
        log_input, eps = params[0], params[2]
        plain = functools.partial(whole, formula=lambda xp, x, t, *p: F.poisson_nll_plain(xp, x, t, log_input, eps))
        return jax.jit(_unless(_unless_nan(plain), whole, COND_MIN_SIZE))
    return jax.jit(functools.partial(whole, formula=_form(name, params)))


def run(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays):
    if name in ("cross_entropy", "nll_loss") and checks_class_indices(arrays[1]):
        _check_range(name, arrays[0], np.asarray(arrays[1]), params[0], params[-1])
    return compiled(name, params, reduction, out_dtype, dtype, weighted)(*arrays)


def checks_class_indices(targets: Any) -> bool:
    """Whether ``targets`` is a concrete integer array on the CPU (not a tracer),
    whose values :func:`run` reads."""
    if (
        isinstance(targets, jax.core.Tracer)
        or not isinstance(targets, jax.Array)
        or targets.dtype.kind not in "iu"
    ):
        return False
    sharding = targets.sharding
    try:
        return _HOST[sharding]
    except KeyError:
        host = _HOST[sharding] = all(d.platform == "cpu" for d in sharding.device_set)
        return host


# ------------------------------------------------------------------ the forms


def _form(name: str, params: tuple[Any, ...]) -> Callable[..., Any] | None:
    """The form of loss ``name`` for XLA, with its formula's signature, or
    ``None`` for the formula itself."""
    if name == "cross_entropy":
        return _cross_entropy(*params)
    if name == "kl_div_loss":
        return _kl_div(*params)
    if name == "cosine_similarity_loss":
        return _cosine(*params)
    if name == "triplet_loss" and params[1] == 2:
        return _triplet(*params)
    if name == "cosine_embedding_loss":
        return _cosine_embedding(*params)
    if name == "softmax_focal_loss":
        return _softmax_focal(*params)
    if name == "poly1_cross_entropy" and not params[2]:
        return _poly1(*params)
    if name == "js_div_loss":
        return _js_div(*params)
    if name == "info_nce_loss":
        return _INFO_NCE
    if name == "hinge_embedding_loss":
        return F.hinge_embedding_nested
    return None


def _tangents(tangents: Any) -> list[Any]:
    return [None if type(t) is SymbolicZero else t for t in tangents]


def _rowwise(
    plain: Callable[..., Any],
    safe: Callable[..., Any],
    finish: Callable[[Any], Any],
    tangent: Callable[..., Any],
) -> Callable[..., Any]:
    """A loss ``finish(rows)`` from row values: ``plain(*arrays)`` gives
    ``(rows, exact, scales, coefficients)``, ``safe(*arrays)`` the same
    without ``exact`` and runs under ``lax.cond`` only where ``exact`` is
    false; ``tangent(arrays, tangents, scales, coefficients)`` gives the
    rows' tangent, and ``finish``'s is taken by ``jax.jvp``."""

    def pick(arrays: tuple[Any, ...], derivative: bool) -> Any:
        rows, exact, *rest = plain(*arrays)
        if not derivative:  # the coefficients unused, so never computed
            return lax.cond(exact, lambda ops: ops[0], lambda ops: safe(*ops[1])[0], (rows, arrays))
        return lax.cond(exact, lambda ops: ops[0], lambda ops: safe(*ops[1]), ((rows, *rest), arrays))

    @jax.custom_jvp
    def loss(*arrays: Any) -> Any:
        return finish(pick(arrays, False))

    def rule(primals: Any, tangents: Any) -> Any:
        rows, scales, coefficients = pick(primals, True)
        drows = tangent(primals, _tangents(tangents), scales, coefficients)
        return jax.jvp(finish, (rows,), (drows,))

    loss.defjvp(rule, symbolic_zeros=True)
    return loss


@functools.lru_cache(maxsize=CACHE_SIZE)
def _cosine(axis: int, floor: float) -> Callable[..., Any]:
    def tangent(arrays, tangents, scales, coefficients):
        (a, b), (da, db) = arrays, tangents
        if da is None and db is None:
            return jnp.zeros_like(coefficients[0])
        return F.cosine_tangent(jnp, a, b, da, db, axis, scales, coefficients)

    loss = _rowwise(
        lambda a, b: F.cosine_rows(jnp, a, b, axis, floor),
        lambda a, b: F.cosine_safe_rows(jnp, a, b, axis, floor),
        lambda rows: jnp.squeeze(rows, axis),
        tangent,
    )
    return lambda xp, a, b, *params: loss(a, b)


def _unless(
    fast: Callable[..., Any], formula: Callable[..., Any], min_size: int = 0
) -> Callable[..., Any]:
    """``fast`` of the arrays, which gives ``(out, failed)``, or ``formula``
    where ``failed``, under ``lax.cond``; differentiated as ``formula``, with
    the tangent outside the conditional (reverse mode would otherwise store
    both branches' intermediates); ``formula`` alone below ``min_size``
    elements."""

    def value(*arrays):
        out, failed = fast(*arrays)
        return lax.cond(failed, lambda a: formula(*a), lambda a: out, arrays)

    loss = jax.custom_jvp(value)
    loss.defjvp(lambda primals, tangents: (value(*primals), jax.jvp(formula, primals, tangents)[1]))
    return lambda *arrays: formula(*arrays) if arrays[0].size < min_size else loss(*arrays)


def _unless_nan(plain: Callable[..., Any]) -> Callable[..., Any]:
    """``plain`` and whether its result holds a NaN (a plain form's mark of
    ``0 * inf``, or a NaN input), for :func:`_unless`."""

    def fast(*arrays):
        out = plain(*arrays)
        return out, jnp.isnan(jnp.sum(out))

    return fast


def _bce_logits(whole: Callable[..., Any]) -> Callable[..., Any]:
    plain = functools.partial(whole, formula=lambda xp, x, t, w, *params: F.bce_logits_relu(xp, x, t, w))
    return _unless(_unless_nan(plain), whole)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _cosine_embedding(axis: int, margin: float, floor: float) -> Callable[..., Any]:
    cosine = _cosine(axis, floor)
    return lambda xp, a, b, y, *params: F._cosine_pair_terms(xp, cosine(xp, a, b), y, margin)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _triplet(axis: int, p: float, margin: float, eps: float) -> Callable[..., Any]:
    def tangent(arrays, tangents, scales, coefficients):
        (a, pos, neg), (da, dpos, dneg) = arrays, tangents
        out = []
        for other, dother, scale, k in ((pos, dpos, scales[0], coefficients[0]),
                                        (neg, dneg, scales[1], coefficients[1])):
            d = da if dother is None else (-dother if da is None else da - dother)
            out.append(jnp.zeros_like(k) if d is None else
                       F.distance_tangent(jnp, a - other, d, axis, scale, k))
        return tuple(out)

    def finish(rows):
        dp, dn = rows
        return jnp.squeeze(F.triplet_hinge(jnp, dp, dn, margin), axis)

    loss = _rowwise(
        lambda a, pos, neg: F.triplet_rows(jnp, a, pos, neg, axis, eps),
        lambda a, pos, neg: F.triplet_safe_rows(jnp, a, pos, neg, axis, eps),
        finish,
        tangent,
    )
    return lambda xp, a, pos, neg, *params: loss(a, pos, neg)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _kl_div(axis: int) -> Callable[..., Any]:
    def value(x, t):
        loss, exact = F.kl_div_plain(jnp, x, t, axis)
        return lax.cond(exact, lambda ops: ops[0], lambda ops: F.kl_div_loss(jnp, *ops[1], axis),
                        (loss, (x, t)))

    loss = jax.custom_jvp(value)

    def rule(primals, tangents):
        (x, t), (dx, dt) = primals, _tangents(tangents)
        out = value(x, t)
        if dx is None and dt is None:
            return out, jnp.zeros_like(out)
        return out, F.kl_div_tangent(jnp, x, t, dx, dt, axis)

    loss.defjvp(rule, symbolic_zeros=True)
    return lambda xp, x, t, *params: loss(x, t)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _cross_entropy(
    axis: int, smoothing: float, probabilities: bool, guard: bool, softcap: Any, z_loss: float,
    ignore: Any,
) -> Callable[..., Any]:
    """Cross entropy as the native kernels compute it where no training
    option is given (class weights are seen when traced), else the formula."""
    plain = softcap is None and not z_loss and ignore is None
    dense = _probabilities(axis, smoothing) if probabilities else None
    indexed = (not probabilities and softcap is None and not z_loss
               and isinstance(smoothing, float) and smoothing == 0)

    def form(xp, logits, targets, class_weights, *params):
        if indexed and (ignore is not None or class_weights is not None) and logits.size:
            return _weighted_plain(logits, targets, class_weights, axis, guard, ignore)
        if not plain or class_weights is not None:
            return F.cross_entropy(xp, logits, targets, class_weights, *params)
        if probabilities:
            return dense(xp, logits, targets)
        return F.cross_entropy_plain(xp, logits, targets, axis, smoothing, False, guard)

    return form


def _weighted_plain(logits, targets, class_weights, axis, guard, ignore):
    """Class weights and ignore_index over :func:`~anyloss._formulas.cross_entropy_plain`'s
    rows (no N x C mask, which XLA's CPU fusion would write out as a whole
    array); with ignore_index only where every row, ignored or not, is
    finite (a NaN or infinite logit makes its row so), else the formula,
    whose mask keeps an ignored row's NaN out of the gradient; differentiated
    as the formula.  Below ``COND_MIN_SIZE`` logits the formula alone (the
    conditional costs more there)."""

    def weighted(x, t, cw):
        keep = None if ignore is None else t != ignore
        if keep is not None:
            t = jnp.where(keep, t, jnp.zeros_like(t))
        rows = F.cross_entropy_plain(jnp, x, t, axis, 0.0, False, guard)
        return F.weighted_rows(jnp, rows, t, cw, keep), ~jnp.isfinite(jnp.sum(rows))

    if ignore is None:
        return weighted(logits, targets, class_weights)[0]

    def formula(x, t, cw):
        return F.cross_entropy(jnp, x, t, cw, axis, 0.0, False, guard, None, 0.0, ignore)

    return _unless(weighted, formula, COND_MIN_SIZE)(logits, targets, class_weights)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _probabilities(axis: int, smoothing: float) -> Callable[..., Any]:
    """Cross entropy with probability targets: the unguarded score where no
    row is NaN, else the guarded one; derivatives from the guarded form."""

    def guarded(x, t):
        return F.cross_entropy_plain(jnp, x, t, axis, smoothing, True, False)

    def value(x, t):
        loss, exact = F.cross_entropy_probabilities_plain(jnp, x, t, axis, smoothing)
        return lax.cond(exact, lambda ops: ops[0], lambda ops: guarded(*ops[1]), (loss, (x, t)))

    loss = jax.custom_jvp(value)

    def rule(primals, tangents):
        (x, t), (dx, dt) = primals, _tangents(tangents)
        if dt is None:
            return jax.jvp(lambda x: guarded(x, t), (x,), (dx,))
        if dx is None:
            return jax.jvp(lambda t: guarded(x, t), (t,), (dt,))
        return jax.jvp(guarded, primals, (dx, dt))

    loss.defjvp(rule, symbolic_zeros=True)
    return lambda xp, x, t, *params: loss(x, t)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _softmax_focal(axis: int, gamma: float, guard: bool) -> Callable[..., Any]:
    def form(xp, logits, targets, class_weights, *params):
        ce = F.cross_entropy_plain(xp, logits, targets, axis, 0.0, False, guard)
        return F.softmax_focal_of_ce(xp, ce, targets, class_weights, gamma, guard)

    return form


@functools.lru_cache(maxsize=CACHE_SIZE)
def _poly1(axis: int, epsilon: float, probabilities: bool, guard: bool) -> Callable[..., Any]:
    def form(xp, logits, targets, *params):
        return F.poly1_of_ce(xp, F.cross_entropy_plain(xp, logits, targets, axis, 0.0, False, guard), epsilon)

    return form


# info_nce_loss's cross entropies as cross_entropy's (their row's own index
# is always in range)
_INFO_NCE = functools.partial(F.info_nce_loss, rows=F.cross_entropy_plain_rows)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _js_div(axis: int) -> Callable[..., Any]:
    loss = jax.custom_jvp(lambda x, t: F.js_div_loss(jnp, x, t, axis))

    def rule(primals, tangents):
        (x, t), (dx, dt) = primals, _tangents(tangents)
        out = loss(x, t)
        if dx is None and dt is None:
            return out, jnp.zeros_like(out)
        sx, st = F.js_div_slopes(jnp, x, t)
        terms = sx * dx if dt is None else (st * dt if dx is None else sx * dx + st * dt)
        return out, jnp.sum(terms, axis=axis)

    loss.defjvp(rule, symbolic_zeros=True)
    return lambda xp, x, t, *params: loss(x, t)
