"""MLX: every eager call runs one compiled graph, cached per static arguments.

``mx.compile`` of the loss's computation (``_formulas.evaluate``) with its
name, parameters, reduction and dtypes fixed.  MLX traces it once per input
shapes and dtypes and replays the fused graph; a repeated call traces
nothing.  Under ``mx.grad``, ``mx.vjp``, ``mx.jvp``, ``mx.vmap`` or an
enclosing ``mx.compile`` the inputs are tracers and MLX runs the function
itself, op by op or into the enclosing trace.

The formulas run on MLX's namespace with a few primitives in cheaper forms
of equal value (from ``_formulas``): ``exp`` as a power of two on large
arrays, ``isfinite`` in two primitives, rows of 2-d arrays summed and
maximized in blocks, and a transposed matmul operand copied first.  Two
losses take another form of their formula (:data:`FORMS`), and CTC another
form of its recursion over the frames (:data:`PARTS`): a custom function
differentiated by the backward recursion, since under ``mx.grad`` MLX runs
it op by op and autodiff through every move costs more than the moves (in a
trace each move takes fewer ``exp`` and ``log``: :func:`_ctc_moves`).  No
other loss uses a custom function in a trace: MLX cannot replay one in a
shapeless trace (CTC's slices of the frames keep it out of one already).
Run directly on small inputs (under ``mx.grad``, ``mx.vjp``, ``mx.jvp``,
which :func:`_runs_directly` tells from a trace), a loss of :data:`DIRECT`
is a custom function differentiated by its formula's derivatives, and one of
:data:`PLAIN` takes its plain form where the form's condition, read on the
host, holds.  Under an enclosing ``mx.compile(shapeless=True)`` the batch
size may change; the length of a reduced row and the number of classes are
part of the trace.

Each configuration keeps its traces (one per input signature) until it has
seen ``MAX_SIGNATURES`` of them; then its compiled function is replaced,
which frees them, so a stream of new shapes cannot grow memory without
bound.  At most ``MAX_CONFIGURATIONS`` configurations are kept, the least
recently used dropped first.
"""

from __future__ import annotations

import functools
import types
from collections import OrderedDict
from typing import Any

import mlx.core as mx

from .. import _formulas
from .._common import astype, reduce

# Input signatures one compiled configuration traces before it starts afresh.
MAX_SIGNATURES = 64
# Configurations (loss, parameters, reduction, dtypes) kept compiled.
MAX_CONFIGURATIONS = 128
# Arrays at least this large take exp as a power of two: below it the extra
# primitive costs more than it saves when the function runs uncompiled
# (under mx.grad).
FORMS_MIN_SIZE = 1024
# Rows at least this long are reduced in blocks (see _blocked).
BLOCKED_MIN_LENGTH = 256
# Inputs below this size run a loss of DIRECT by its derivatives under mx.grad:
# above it the derivatives cost more passes than MLX's own gradient saves.
DIRECT_MAX_SIZE = 1 << 16


def _exp(x: Any) -> Any:
    return _formulas.exp_by_pow2(mx, x) if x.size >= FORMS_MIN_SIZE else mx.exp(x)


def _isfinite(x: Any) -> Any:
    return _formulas.isfinite_by_subtraction(mx, x)


def _blocked(reduce: Any) -> Any:
    """``reduce`` (``mx.sum``, ``mx.max``) with a 2-d array's rows reduced
    over blocks of 32, 16 or 8 strided columns first, then over the blocks:
    MLX's CPU reduces strided columns several times faster than a contiguous
    row.  The leading axis stays -1 in the reshape, so a shapeless trace
    stays right across batch sizes."""

    def blocked(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        if x.ndim == 2 and axis in (None, 1, -1) and x.shape[0] > 0:
            n = x.shape[1]
            if n >= BLOCKED_MIN_LENGTH:
                for k in (32, 16, 8):
                    if n % k == 0:
                        rows = reduce(reduce(mx.reshape(x, (-1, n // k, k)), axis=1), axis=1)
                        if axis is None:
                            return reduce(rows, keepdims=keepdims).reshape((1, 1) if keepdims else ())
                        return mx.expand_dims(rows, 1) if keepdims else rows
        return reduce(x, axis=axis, keepdims=keepdims)

    return blocked


def _matrix_transpose(x: Any) -> Any:
    """The transpose of the last two axes, laid out in memory: MLX's CPU
    matmul runs slower on a transposed view than on a copy made first."""
    return mx.contiguous(mx.swapaxes(x, -1, -2))


def _namespace() -> Any:
    """``mlx.core`` with ``exp``, ``isfinite``, ``sum``, ``max`` and
    ``matrix_transpose`` in their cheaper forms."""
    ns = types.ModuleType(mx.__name__)
    ns.__dict__.update((k, v) for k, v in vars(mx).items() if not k.startswith("__"))
    ns.exp = _exp
    ns.isfinite = _isfinite
    ns.sum = _blocked(mx.sum)
    ns.max = _blocked(mx.max)
    ns.matrix_transpose = _matrix_transpose
    return ns


NAMESPACE = _namespace()


def _body(state: Any) -> Any:
    """The traced function of one configuration; it records the input
    signatures it has seen in ``state``.  ``mx.compile`` takes arrays only:
    the optional arrays left out (``None``, at the positions in the
    configuration's last entry) are put back here."""

    static, missing = state.static[:-1], state.static[-1]

    def body(*arrays: Any) -> Any:
        # Under mx.grad this runs on every call: a list, not a generator.
        state.signatures.add(tuple([(a.shape, a.dtype) for a in arrays]))
        if missing:
            given = iter(arrays)
            arrays = tuple(None if i in missing else next(given) for i in range(len(arrays) + len(missing)))
        return computation(NAMESPACE, *static, *arrays)

    return body


class Compiled:
    """One configuration of one loss, compiled; it starts afresh once it has
    traced ``MAX_SIGNATURES`` input signatures."""

    __slots__ = ("function", "state")

    def __init__(self, static: tuple[Any, ...]) -> None:
        # The traced function holds the state, not this object: no reference
        # cycle, so a dropped configuration frees its traces at once.
        self.state = types.SimpleNamespace(static=static, signatures=set())
        self.function = mx.compile(_body(self.state))

    def __call__(self, *arrays: Any) -> Any:
        out = self.function(*arrays)
        if len(self.state.signatures) > MAX_SIGNATURES:
            # A new function object; MLX frees the old one's traces with it.
            self.state.signatures = set()
            self.function = mx.compile(_body(self.state))
        return out


def _ordered_moves(xp: Any, a: Any, b: Any, c: Any) -> Any:
    return _formulas.logaddexp3_ordered(xp, a, b, c, functools.partial(_formulas.exp_by_pow2, xp))


def _ctc_moves(emissions: Any) -> Any:
    """The form of CTC's moves: in a trace, where MLX fuses each frame's
    elementwise ops, the one with fewer ``exp`` and ``log``; run directly
    (under ``mx.grad``), op by op, the one with fewer primitives."""
    return _formulas.logaddexp3 if _runs_directly(emissions) else _ordered_moves


def _ctc_paths(guard: bool) -> Any:
    """``(log p, alphas)`` of :func:`_formulas.ctc_alphas` and
    :func:`_formulas.ctc_final` as one custom function, differentiated by
    :func:`_formulas.ctc_path_weights` (the backward recursion): no
    gradient of every move of the forward recursion.  The alphas are an
    output for the vjp's use only (their tangent is given as 0)."""

    @mx.custom_function
    def paths(emissions: Any, skip: Any, frames: Any, lengths: Any) -> Any:
        alphas = _formulas.ctc_alphas(NAMESPACE, emissions, skip, _ctc_moves(emissions))
        return _formulas.ctc_final(NAMESPACE, alphas, frames, lengths, guard), alphas

    def weights(primals: Any, log_p: Any, alphas: Any) -> Any:
        return _formulas.ctc_path_weights(NAMESPACE, *primals, alphas, log_p, _ctc_moves(primals[0]))

    @paths.vjp
    def paths_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        log_p, alphas = outputs
        grad = weights(primals, log_p, alphas) * mx.reshape(cotangents[0], (1, -1, 1))
        return (grad, *(mx.zeros_like(a) for a in primals[1:]))

    @paths.jvp
    def paths_jvp(primals: Any, tangents: Any) -> Any:
        log_p, alphas = paths(*primals)
        tangent = mx.sum(weights(primals, log_p, alphas) * tangents[0], axis=(0, 2))
        return tangent, mx.zeros_like(alphas)

    return paths


_CTC_PATHS = {guard: _ctc_paths(guard) for guard in (False, True)}


def ctc_log_likelihood(xp: Any, emissions: Any, skip: Any, frames: Any, lengths: Any, guard: bool) -> Any:
    """:func:`_formulas.ctc_log_likelihood` by :func:`_ctc_paths`."""
    return _CTC_PATHS[guard](emissions, skip, frames, lengths)[0]


# Losses whose formula takes one of its parts in another form (see _formulas).
PARTS = {"ctc_loss": functools.partial(_formulas.ctc_loss, likelihood=ctc_log_likelihood)}

@functools.lru_cache(maxsize=None)
def _js_div_by_slopes(axis: int) -> Any:
    """:func:`_formulas.js_div_loss` as a custom function differentiated by
    :func:`_formulas.js_div_slopes` (in both modes, in MLX ops of the
    primals, so a derivative of the gradient is still right)."""

    @mx.custom_function
    def loss(x: Any, t: Any) -> Any:
        return _formulas.js_div_loss(NAMESPACE, x, t, axis)

    @loss.vjp
    def loss_vjp(primals: Any, cotangent: Any, output: Any) -> Any:
        sx, st = _formulas.js_div_slopes(NAMESPACE, *primals)
        row = mx.expand_dims(cotangent, axis)
        return sx * row, st * row

    @loss.jvp
    def loss_jvp(primals: Any, tangents: Any) -> Any:
        # MLX passes None for an argument whose tangent is not asked for
        sx, st = _formulas.js_div_slopes(NAMESPACE, *primals)
        dx, dt = tangents
        change = sx * dx if dt is None else st * dt if dx is None else sx * dx + st * dt
        return mx.sum(change, axis=axis)

    return loss


def _runs_directly(x: Any) -> bool:
    """Whether the computation runs on the arrays themselves, as under
    ``mx.grad``, ``mx.vjp`` and ``mx.jvp`` (MLX evaluates an input there),
    rather than into a trace, as under ``mx.compile`` and ``mx.vmap`` (MLX
    refuses to).  The input's value is computed here, a few microseconds
    before the rest of the graph would compute it."""
    try:
        mx.eval(x)
    except ValueError:
        return False
    return True


# Losses run directly (under mx.grad, mx.vjp, mx.jvp) as a custom function
# differentiated by the formula's own derivatives: MLX would otherwise
# differentiate every primitive of the formula, op by op.  Never in a trace:
# MLX cannot replay a custom function in a shapeless one.
DIRECT = {"js_div_loss": lambda xp, x, t, axis: _js_div_by_slopes(axis)(x, t)}

# Losses run directly (under mx.grad, mx.vjp, mx.jvp) by their plain form
# where its condition holds on the host, which MLX differentiates in fewer
# primitives than the exact form (its derivative is the formula's there).
PLAIN = {
    "cosine_similarity_loss": _formulas.cosine_plain,
    "cosine_embedding_loss": _formulas.cosine_embedding_plain,
}


def _plain_or_formula(name: str) -> Any:
    """The loss's form in :data:`PLAIN` where its condition holds (read on
    the host), else its formula."""
    plain, formula = PLAIN[name], FORMS.get(name, _formulas.FORMULAS[name])

    def form(xp: Any, *args: Any) -> Any:
        loss, exact = plain(xp, *args)
        return loss if exact.item() else formula(xp, *args)

    return form


# Losses computed by another form of their formula (see _formulas).
FORMS = {
    "cosine_similarity_loss": _formulas.cosine_similarity_rows,
    "smooth_l1_loss": _formulas.smooth_l1_select_free,
}


def evaluate(
    xp: Any,
    name: str,
    params: tuple[Any, ...],
    reduction: str,
    out_dtype: Any,
    dtype: Any,
    weighted: bool,
    *arrays: Any,
) -> Any:
    """``_formulas.evaluate``, with the form in :data:`FORMS` for a loss that
    has one (run directly, the one in :data:`DIRECT` or :data:`PLAIN`)."""
    if name in PLAIN and type(params[-1]) is float and arrays[0].size < DIRECT_MAX_SIZE and _runs_directly(arrays[0]):
        return _formulas.evaluate(
            xp, name, params, reduction, out_dtype, dtype, weighted, *arrays, formula=_plain_or_formula(name)
        )
    form = FORMS.get(name)
    if form is None:
        formula = PARTS.get(name)
        if name in DIRECT and arrays[0].size < DIRECT_MAX_SIZE and _runs_directly(arrays[0]):
            formula = DIRECT[name]
        return _formulas.evaluate(
            xp, name, params, reduction, out_dtype, dtype, weighted, *arrays, formula=formula
        )
    if weighted:
        *arrays, weights = arrays
    loss = form(xp, *[astype(xp, a, dtype) for a in arrays], *params)
    if weighted:
        loss = loss * astype(xp, weights, dtype)
    return reduce(xp, loss, reduction, out_dtype)


# The computation the compiled functions trace, looked up when they run
# (tests count the traces).
computation = evaluate

_CACHE: OrderedDict[tuple[Any, ...], Compiled] = OrderedDict()


def compiled(
    name: str, params: tuple[Any, ...], reduction: str, out_dtype: Any, dtype: Any, weighted: bool,
    missing: tuple[int, ...] = (),
) -> Compiled:
    """The compiled computation of one loss configuration, the arrays at
    ``missing`` left out (bounded cache)."""
    key = (name, params, reduction, out_dtype, dtype, weighted, missing)
    try:
        found = _CACHE[key]
        _CACHE.move_to_end(key)
    except KeyError:  # new (or dropped by another thread meanwhile)
        found = _CACHE[key] = Compiled(key)
        while len(_CACHE) > MAX_CONFIGURATIONS:
            _CACHE.popitem(last=False)
    return found


def checks_class_indices(targets: Any) -> bool:
    """Whether :func:`run` checks class indices itself: never (MLX's values
    are not read; the formula guards them)."""
    return False


def run(
    xp: Any,
    name: str,
    params: tuple[Any, ...],
    reduction: str,
    out_dtype: Any,
    dtype: Any,
    weighted: bool,
    *arrays: Any,
) -> Any:
    missing = tuple(i for i, a in enumerate(arrays) if a is None)  # optional arrays left out
    if missing:
        arrays = tuple(a for a in arrays if a is not None)
    return compiled(name, params, reduction, out_dtype, dtype, weighted, missing)(*arrays)
