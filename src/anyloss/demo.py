"""Train small models on real data with anyloss, on PyTorch, JAX or MLX.

Run it with ``python -m anyloss.demo`` (``--help`` for the options).  Four
tasks, all on data sets that ship inside scikit-learn (no download):

* ``digits``: 8x8 images of handwritten digits, 10 classes, ``cross_entropy``;
* ``breast_cancer``: 30 measurements of a tumour, benign or malignant,
  ``binary_cross_entropy``;
* ``diabetes_huber``: disease progression from 10 measurements, ``huber_loss``;
* ``diabetes_gaussian``: the same, predicting a mean *and* a variance,
  ``gaussian_nll_loss``.

The model (a one-hidden-layer perceptron), the optimizer (Adam), the loss and
the metrics are written once; only the gradient comes from the chosen library
(``torch.func``, ``jax.grad``, ``mx.value_and_grad``).  Initial weights and
the order of the examples come from a NumPy seed, so every library starts from
the same point, sees the same batches, and draws the same training curve.

The training functions are importable: :func:`train` runs one task on one
library and returns a :class:`Result`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import numpy as np

import anyloss

BACKENDS = ("torch", "jax", "mlx")
TASKS = ("digits", "breast_cancer", "diabetes_huber", "diabetes_gaussian")

_LOSS_NAME = {
    "digits": "cross_entropy",
    "breast_cancer": "binary_cross_entropy",
    "diabetes_huber": "huber_loss",
    "diabetes_gaussian": "gaussian_nll_loss",
}
_TITLE = {
    "digits": "digits",
    "breast_cancer": "breast cancer",
    "diabetes_huber": "diabetes",
    "diabetes_gaussian": "diabetes",
}
_GRADIENT = {"torch": "torch.autograd", "jax": "jax.value_and_grad + jax.jit", "mlx": "mx.value_and_grad"}

# ------------------------------------------------------------------------ libraries


def installed_backends() -> list[str]:
    """The libraries among ``torch``, ``jax`` and ``mlx`` that can be imported."""
    found = []
    for name in BACKENDS:
        module = "mlx.core" if name == "mlx" else name
        try:
            if importlib.util.find_spec(module) is not None:
                found.append(name)
        except (ImportError, ValueError):  # a parent package that is missing or broken
            pass
    return found


class _Backend:
    """The three things a library must provide: arrays, gradients, and back to NumPy."""

    name: str
    first_step = "first training step"  # what the first call of the step does, in words

    def asarray(self, a: np.ndarray) -> Any:
        raise NotImplementedError

    def compile_step(self, step: Callable) -> Callable:
        """``step(params, state, x, y, t) -> (loss, params, state)``, gradients included."""
        raise NotImplementedError

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Settings for the length of one training run."""
        yield


class _Torch(_Backend):
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def asarray(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(np.array(a, copy=True))

    def compile_step(self, step: Callable) -> Callable:
        torch = self.torch

        def run(params: dict, state: dict, x: Any, y: Any, t: Any) -> tuple:
            leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
            with torch.enable_grad():
                loss = step.loss(leaves, x, y)
                grads = torch.autograd.grad(loss, list(leaves.values()))
            with torch.no_grad():
                new_params, new_state = step.update(params, dict(zip(leaves, grads)), state, t)
            return loss.detach(), new_params, new_state

        return run

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.detach().cpu().numpy()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        # The matrices are tiny: one thread is fastest, and several threads spin
        # against each other (and anything else running) on a busy machine.
        threads = self.torch.get_num_threads()
        self.torch.set_num_threads(1)
        try:
            yield
        finally:
            self.torch.set_num_threads(threads)


class _Jax(_Backend):
    name = "jax"
    first_step = "compiling the training step (jax.jit)"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp

    def asarray(self, a: np.ndarray) -> Any:
        return self.jnp.asarray(a)

    def compile_step(self, step: Callable) -> Callable:
        jax = self.jax

        @jax.jit
        def run(params: dict, state: dict, x: Any, y: Any, t: Any) -> tuple:
            loss, grads = jax.value_and_grad(step.loss)(params, x, y)
            new_params, new_state = step.update(params, grads, state, t)
            return loss, new_params, new_state

        return run


class _Mlx(_Backend):
    name = "mlx"

    def __init__(self) -> None:
        import mlx.core as mx

        self.mx = mx

    def asarray(self, a: np.ndarray) -> Any:
        return self.mx.array(a)

    def compile_step(self, step: Callable) -> Callable:
        mx = self.mx
        value_and_grad = mx.value_and_grad(step.loss)

        def run(params: dict, state: dict, x: Any, y: Any, t: Any) -> tuple:
            loss, grads = value_and_grad(params, x, y)
            new_params, new_state = step.update(params, grads, state, t)
            mx.eval(loss, new_params, new_state)
            return loss, new_params, new_state

        return run


def get_backend(name: str) -> _Backend:
    """The backend object for ``'torch'``, ``'jax'`` or ``'mlx'``."""
    try:
        return {"torch": _Torch, "jax": _Jax, "mlx": _Mlx}[name]()
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}") from None


# ----------------------------------------------------------------------------- data


@dataclass
class _Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    y_scale: float = 1.0  # regression targets are standardized; metrics are reported in units
    y_shift: float = 0.0


def _split(x: np.ndarray, y: np.ndarray, seed: int, test_fraction: float = 0.25) -> tuple:
    order = np.random.default_rng(seed + 1000).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def load_data(task: str, seed: int = 0) -> _Data:
    """The task's data set from scikit-learn, split 75/25, features standardized."""
    from sklearn import datasets

    if task == "digits":
        x, y = datasets.load_digits(return_X_y=True)
        y = y.astype(np.int64)
    elif task == "breast_cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
        y = y.astype(np.float32)
    elif task in ("diabetes_huber", "diabetes_gaussian"):
        x, y = datasets.load_diabetes(return_X_y=True)
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    x_train, y_train, x_test, y_test = _split(x, y, seed)
    x_train, x_test = _standardize(x_train, x_test)
    data = _Data(x_train, y_train, x_test, y_test)
    if task.startswith("diabetes"):
        data.y_shift, data.y_scale = float(y_train.mean()), float(y_train.std())
        data.y_train = ((y_train - data.y_shift) / data.y_scale).astype(np.float32)
    return data


# ---------------------------------------------------------------------------- model


def _init_params(rng: np.random.Generator, sizes: tuple[int, ...]) -> dict[str, np.ndarray]:
    """A perceptron with tanh hidden layers, Glorot-uniform weights, zero biases."""
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        limit = math.sqrt(6.0 / (n_in + n_out))
        params[f"w{i}"] = rng.uniform(-limit, limit, size=(n_in, n_out)).astype(np.float32)
        params[f"b{i}"] = np.zeros(n_out, dtype=np.float32)
    return params


def _forward(params: dict, x: Any) -> Any:
    """The perceptron's output for a batch ``x``: any library, via the Array API."""
    import array_api_compat

    xp = array_api_compat.array_namespace(x)
    layers = len(params) // 2
    for i in range(layers):
        x = x @ params[f"w{i}"] + params[f"b{i}"]
        if i < layers - 1:
            x = xp.tanh(x)
    return x


def _softplus(xp: Any, x: Any) -> Any:
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


def _loss_function(task: str) -> Callable[[dict, Any, Any], Any]:
    """``loss(params, x, y)``: the model's mean loss on a batch, through anyloss."""

    def loss(params: dict, x: Any, y: Any) -> Any:
        out = _forward(params, x)
        if task == "digits":
            return anyloss.cross_entropy(out, y, reduction="mean")
        if task == "breast_cancer":
            return anyloss.binary_cross_entropy(out[:, 0], y)  # logits; mean by default
        if task == "diabetes_huber":
            return anyloss.huber_loss(out[:, 0], y, delta=1.0, reduction="mean")
        import array_api_compat

        xp = array_api_compat.array_namespace(out)
        variance = _softplus(xp, out[:, 1]) + 1e-3
        return anyloss.gaussian_nll_loss(out[:, 0], y, variance)

    return loss


class _Step:
    """One Adam step: the loss to differentiate and the update, library-neutral."""

    def __init__(self, loss: Callable, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.loss, self.lr, self.b1, self.b2, self.eps = loss, lr, b1, b2, eps

    def corrections(self, t: int) -> tuple[float, float]:
        """Adam's bias corrections after ``t`` steps, as Python floats (``t`` >= 1)."""
        return 1.0 - self.b1**t, 1.0 - self.b2**t

    def update(self, params: dict, grads: dict, state: dict, t: tuple) -> tuple[dict, dict]:
        import array_api_compat

        correction1, correction2 = t
        new_params, m_new, v_new = {}, {}, {}
        for k, p in params.items():
            xp = array_api_compat.array_namespace(p)
            g = grads[k]
            m = self.b1 * state["m"][k] + (1.0 - self.b1) * g
            v = self.b2 * state["v"][k] + (1.0 - self.b2) * (g * g)
            new_params[k] = p - self.lr * (m / correction1) / (xp.sqrt(v / correction2) + self.eps)
            m_new[k], v_new[k] = m, v
        return new_params, {"m": m_new, "v": v_new}


# ------------------------------------------------------------------------- training


@dataclass
class Result:
    """What one training run gives back."""

    task: str
    backend: str
    metric: str  # what ``value`` measures
    value: float  # the held-out metric
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    seconds: float = 0.0  # the training steps of every epoch, the first (which compiles) included
    total_seconds: float = 0.0  # all of train(): the library, the data, training and evaluation
    extra: str = ""  # a second held-out number, in words
    details: dict = field(default_factory=dict)  # the numbers behind ``extra``

    def summary(self) -> str:
        """The held-out result in a few words."""
        if self.metric == "accuracy":
            text = f"accuracy {self.value:.1%}"
        else:
            text = f"{self.metric} {self.value:.1f}"
        return text + (f" ({self.extra})" if self.extra else "")


# Epochs, hidden units, learning rate, batch size per task.
_SETTINGS = {
    "digits": (20, 32, 3e-3, 32),
    "breast_cancer": (20, 16, 3e-3, 32),
    "diabetes_huber": (60, 16, 3e-3, 32),
    "diabetes_gaussian": (60, 16, 3e-3, 32),
}


def train(
    task: str,
    backend: str,
    *,
    epochs: Optional[int] = None,
    seed: int = 0,
    progress: Optional[Callable[[int, int, float], None]] = None,
    stage: Optional[Callable[[str], None]] = None,
) -> Result:
    """Train the task's model on ``backend`` and evaluate it on held-out data.

    Args:
        task: One of :data:`TASKS`.
        backend: ``'torch'``, ``'jax'`` or ``'mlx'``.
        epochs: Passes over the training set; default: the task's own number.
        seed: Seeds the initial weights, the batches and the train/test split.
        progress: Called as ``progress(epoch, epochs, loss)`` after each epoch.
        stage: Called as ``stage(what)`` before each step that comes before the
            first epoch ends: starting the library, loading the data, the first
            training step (where the library compiles it).

    Returns:
        Result: The held-out metric, the training curve and the times.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    begin = time.perf_counter()
    say = stage if stage is not None else (lambda what: None)
    say(f"starting {backend}")
    lib = get_backend(backend)
    default_epochs, hidden, lr, batch = _SETTINGS[task]
    epochs = default_epochs if epochs is None else epochs
    say("loading the data")
    data = load_data(task, seed)
    n_in = data.x_train.shape[1]
    n_out = {"digits": 10, "diabetes_gaussian": 2}.get(task, 1)

    rng = np.random.default_rng(seed)
    params_np = _init_params(rng, (n_in, hidden, n_out))
    params = {k: lib.asarray(v) for k, v in params_np.items()}
    state = {
        "m": {k: lib.asarray(np.zeros_like(v)) for k, v in params_np.items()},
        "v": {k: lib.asarray(np.zeros_like(v)) for k, v in params_np.items()},
    }
    adam = _Step(_loss_function(task), lr)
    step = lib.compile_step(adam)

    # Full batches only, so that every step has the same shape (one jit trace).
    n = len(data.x_train)
    n_batches = n // batch
    losses: list[float] = []
    seconds = 0.0
    with lib.session():
        for epoch in range(epochs):
            order = rng.permutation(n)
            total = 0.0
            start = time.perf_counter()
            for b in range(n_batches):
                if epoch == 0 and b == 0:
                    say(lib.first_step)
                idx = order[b * batch : (b + 1) * batch]
                x = lib.asarray(data.x_train[idx])
                y = lib.asarray(data.y_train[idx])
                # Python floats: weakly typed under jit, so float32 stays float32.
                t = adam.corrections(epoch * n_batches + b + 1)
                loss, params, state = step(params, state, x, y, t)
                total += float(lib.to_numpy(loss))
            seconds += time.perf_counter() - start
            losses.append(total / n_batches)
            if progress is not None:
                progress(epoch + 1, epochs, losses[-1])
        out = lib.to_numpy(_forward(params, lib.asarray(data.x_test))).astype(np.float64)
    result = _evaluate(task, backend, out, data, losses, seconds)
    result.total_seconds = time.perf_counter() - begin
    return result


def _evaluate(task: str, backend: str, out: np.ndarray, data: _Data, losses: list, seconds: float) -> Result:
    result = Result(task, backend, "", 0.0, losses, seconds)
    if task == "digits":
        result.metric, result.value = "accuracy", float(np.mean(out.argmax(axis=1) == data.y_test))
    elif task == "breast_cancer":
        result.metric, result.value = "accuracy", float(np.mean((out[:, 0] > 0) == (data.y_test > 0.5)))
    else:
        mean = out[:, 0] * data.y_scale + data.y_shift
        baseline = float(np.mean(np.abs(data.y_test - data.y_shift)))
        if task == "diabetes_huber":
            result.metric = "mean abs. error"
            result.value = float(np.mean(np.abs(mean - data.y_test)))
            result.extra = f"mean alone: {baseline:.1f}"
            result.details = {"baseline": baseline}
        else:
            std = np.sqrt(np.logaddexp(0.0, out[:, 1]) + 1e-3) * data.y_scale
            result.metric = "mean abs. error"
            result.value = float(np.mean(np.abs(mean - data.y_test)))
            inside = float(np.mean(np.abs(mean - data.y_test) <= 2 * std))
            result.extra = f"{inside:.0%} within 2 sd"
            result.details = {"baseline": baseline, "within_2sd": inside}
    return result


# -------------------------------------------------------------------------- display


class _Progress:
    """One line on a terminal, rewritten as the task goes: what it is doing before
    training starts (starting the library, loading the data, the first step, which
    compiles), then a bar of the epochs, with a clock that runs on while a step takes
    long. Nothing where the stream is not a terminal."""

    TICK = 0.25  # seconds between redraws of the clock

    def __init__(self, label: str, stream: Any = None, width: int = 24) -> None:
        self.label, self.width = label, width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.text = ""
        self._lock = threading.Lock()
        self._done = threading.Event()
        if self.tty:
            threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while not self._done.wait(self.TICK):
            self._draw()

    def _draw(self) -> None:
        with self._lock:
            if self.tty and self.text and not self._done.is_set():
                elapsed = time.perf_counter() - self.start
                self.stream.write(f"\r\033[K  {self.label:<36} {self.text}  {elapsed:5.1f}s")
                self.stream.flush()

    def stage(self, what: str) -> None:
        self.text = f"{what}..."
        self._draw()

    def __call__(self, epoch: int, epochs: int, loss: float) -> None:
        filled = round(self.width * epoch / epochs)
        bar = "█" * filled + "·" * (self.width - filled)
        self.text = f"{bar} {epoch:>3}/{epochs} epochs  loss {loss:8.4f}"
        self._draw()

    def close(self) -> None:
        with self._lock:
            self._done.set()
            if self.tty:
                self.stream.write("\r\033[K")
                self.stream.flush()


_ROW = "  {:<13} {:<20} {:<39} {:>6} {:>6}"
_TIMES = (
    "train: the training steps, the first one (which compiles, on JAX) included;\n"
    "total: the whole task, from starting the library and loading the data to the result"
)


def _run(task: str, backend: str, epochs: Optional[int], seed: int, stream: Any = None) -> Result:
    bar = _Progress(f"{_TITLE[task]}, {_LOSS_NAME[task]}", stream=stream)
    try:
        result = train(task, backend, epochs=epochs, seed=seed, progress=bar, stage=bar.stage)
    finally:
        bar.close()
    times = (f"{result.seconds:.1f}s", f"{result.total_seconds:.1f}s")
    print(_ROW.format(_TITLE[task], _LOSS_NAME[task], result.summary(), *times), flush=True)
    return result


def plot_curves(results: list[Result], path: Optional[str] = None) -> Any:
    """One figure: the training curve of every task, a line per library.

    Saved to ``path`` (and closed) when given; returned either way.
    """
    import matplotlib.pyplot as plt

    tasks = [t for t in TASKS if any(r.task == t for r in results)]
    cols = 2 if len(tasks) > 2 else len(tasks)
    rows = -(-len(tasks) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    axes = grid.ravel()
    styles = {"torch": ("-", 3.5, 0.45), "jax": ("--", 2.0, 0.9), "mlx": (":", 2.0, 1.0)}
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(axes, tasks):
        for r in results:
            if r.task != task:
                continue
            style, width, alpha = styles.get(r.backend, ("-", 1.5, 1.0))
            epochs = np.arange(1, len(r.losses) + 1)
            ax.plot(epochs, r.losses, style, linewidth=width, alpha=alpha, label=r.backend)
        ax.set_title(f"{_TITLE[task]}\n{_LOSS_NAME[task]}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean training loss")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("anyloss: the same training on every library", fontsize=11)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def main(argv: Optional[list[str]] = None) -> int:
    installed = installed_backends()
    parser = argparse.ArgumentParser(
        prog="python -m anyloss.demo",
        description=textwrap.fill(
            "Train small models with anyloss on data sets that ship with scikit-learn "
            "(no download): handwritten digits (cross_entropy), breast cancer "
            "(binary_cross_entropy) and diabetes progression (huber_loss, gaussian_nll_loss). "
            "The same model, initial weights and batches on every library; only the gradients "
            "come from the library you choose.",
            width=78,
        ),
        epilog=(
            "examples:\n"
            "  python -m anyloss.demo                  # the first installed library\n"
            "  python -m anyloss.demo --backend jax    # JAX\n"
            "  python -m anyloss.demo --all            # every installed library, and a plot\n"
            "  python -m anyloss.demo --task digits --epochs 5\n"
            f"\ninstalled libraries: {', '.join(installed) or 'none'}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--backend", choices=BACKENDS,
        help=f"the library that computes the gradients (default: the first installed, "
        f"{installed[0] if installed else 'none here'})",
    )
    which.add_argument(
        "--all", action="store_true",
        help="run every installed library and save a plot of the training curves, which "
        "should lie on top of each other",
    )
    parser.add_argument(
        "--task", choices=TASKS, action="append",
        help="run only this task (repeat for several; default: all four)",
    )
    parser.add_argument("--epochs", type=int, help="passes over the training data (default: per task)")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights, batches and split (default: 0)")
    parser.add_argument(
        "--plot", default="anyloss-demo.png", metavar="PATH",
        help="where --all saves its plot (default: anyloss-demo.png)",
    )
    args = parser.parse_args(argv)

    if not installed:
        parser.error("none of torch, jax, mlx is installed; install one: pip install torch (or jax, or 'mlx[cpu]')")
    if importlib.util.find_spec("sklearn") is None:
        parser.error("the demo needs scikit-learn for its data: pip install scikit-learn matplotlib")
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.backend and args.backend not in installed:
        parser.error(f"{args.backend} is not installed; installed: {', '.join(installed)}")
    backends = installed if args.all else [args.backend or installed[0]]
    tasks = args.task or list(TASKS)

    start = time.perf_counter()
    results = []
    for backend in backends:
        print(f"anyloss {anyloss.__version__}: training on {backend}, gradients by {_GRADIENT[backend]}")
        print(_ROW.format("data", "loss", "held-out result", "train", "total"), flush=True)
        for task in tasks:
            results.append(_run(task, backend, args.epochs, args.seed))
    print(_TIMES)
    print(f"done in {time.perf_counter() - start:.1f}s")

    if args.all:
        try:
            import matplotlib

            matplotlib.use("Agg")  # a file, never a window
            plot_curves(results, args.plot)
        except ImportError:
            print("install matplotlib to save the plot of the training curves")
        else:
            print(f"training curves saved to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
