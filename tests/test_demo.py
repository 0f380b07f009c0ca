"""The demo trains real models on every library and reaches good held-out results."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from anyloss import demo

# Fewer epochs than the demo's defaults keep the suite fast; the thresholds
# below hold with a clear margin at these settings.
EPOCHS = {"digits": 6, "breast_cancer": 6, "diabetes_huber": 10, "diabetes_gaussian": 10}


@pytest.fixture(scope="module")
def results():
    """Every task on every library, trained once for the whole module."""
    out = {}
    for backend in demo.BACKENDS:
        for task in demo.TASKS:
            out[task, backend] = demo.train(task, backend, epochs=EPOCHS[task], seed=0)
    return out


def test_every_library_is_installed():
    assert demo.installed_backends() == list(demo.BACKENDS)


@pytest.mark.parametrize("backend", demo.BACKENDS)
def test_digits_accuracy(results, backend):
    r = results["digits", backend]
    assert r.metric == "accuracy"
    assert r.value > 0.9
    assert len(r.losses) == EPOCHS["digits"]
    assert r.losses[-1] < 0.5 * r.losses[0]


@pytest.mark.parametrize("backend", demo.BACKENDS)
def test_breast_cancer_accuracy(results, backend):
    # About 63% of the tumours are benign: a constant guess scores 0.63.
    assert results["breast_cancer", backend].value > 0.9


@pytest.mark.parametrize("backend", demo.BACKENDS)
@pytest.mark.parametrize("task", ["diabetes_huber", "diabetes_gaussian"])
def test_diabetes_beats_the_mean(results, backend, task):
    data = demo.load_data(task, seed=0)
    baseline = np.mean(np.abs(data.y_test - data.y_test.mean()))
    r = results[task, backend]
    assert np.isfinite(r.losses).all()
    assert r.value < 0.8 * baseline  # well below the error of predicting the mean


@pytest.mark.parametrize("backend", demo.BACKENDS)
def test_gaussian_variances_are_calibrated(results, backend):
    """About 95% of a Gaussian lies within 2 standard deviations: the predicted
    variances must be neither far too small nor far too large."""
    within = results["diabetes_gaussian", backend].details["within_2sd"]
    assert 0.8 <= within <= 1.0


@pytest.mark.parametrize("task", demo.TASKS)
def test_curves_agree_across_libraries(results, task):
    """Same weights, same batches: the libraries draw the same training curve."""
    reference = np.array(results[task, "torch"].losses)
    for backend in ("jax", "mlx"):
        np.testing.assert_allclose(results[task, backend].losses, reference, rtol=2e-3, atol=2e-4)


def test_split_is_disjoint_and_complete():
    data = demo.load_data("digits", seed=0)
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.x_train.dtype == np.float32
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)


def test_main_runs_and_saves_plot(tmp_path, capsys):
    plot = tmp_path / "curves.png"
    assert demo.main(["--all", "--task", "breast_cancer", "--epochs", "2", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    for backend in demo.BACKENDS:
        assert f"training on {backend}" in out
    assert "accuracy" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_time_columns_say_what_they_measure(capsys):
    assert demo.main(["--backend", "torch", "--task", "breast_cancer", "--epochs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "held-out result" in line)
    assert header.split()[-2:] == ["train", "total"]
    row = next(line for line in lines if "binary_cross_entropy" in line)
    train, total = (float(cell.rstrip("s")) for cell in row.split()[-2:])
    assert 0 <= train <= total
    assert any(line.startswith("train: the training steps") for line in lines)
    assert any(line.startswith("total: the whole task") for line in lines)
    assert max(len(line) for line in lines) <= 90


@pytest.mark.parametrize("backend", demo.BACKENDS)
def test_train_reports_each_stage_before_the_first_epoch(backend):
    events = []
    result = demo.train(
        "breast_cancer", backend, epochs=2,
        stage=lambda what: events.append(what), progress=lambda *args: events.append(args[:2]),
    )
    first_step = demo.get_backend(backend).first_step
    assert events == [f"starting {backend}", "loading the data", first_step, (1, 2), (2, 2)]
    if backend == "jax":
        assert "compiling" in first_step
    assert 0 < result.seconds <= result.total_seconds


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_shows_the_stage_then_the_epochs_then_clears():
    screen = _Terminal()
    bar = demo._Progress("digits, cross_entropy", stream=screen)
    bar.stage("loading the data")
    assert "digits, cross_entropy" in screen.getvalue()
    assert "loading the data..." in screen.getvalue()
    bar(3, 10, 0.25)
    assert "3/10 epochs" in screen.getvalue().rsplit("\r", 1)[-1]
    bar.close()
    assert screen.getvalue().endswith("\r\033[K")
    written = len(screen.getvalue())
    time.sleep(3 * demo._Progress.TICK)
    assert len(screen.getvalue()) == written  # the clock stops with the task


def test_progress_writes_nothing_where_there_is_no_terminal():
    stream = io.StringIO()
    bar = demo._Progress("digits, cross_entropy", stream=stream)
    bar.stage("loading the data")
    bar(1, 2, 0.5)
    bar.close()
    assert stream.getvalue() == ""


def test_main_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as info:
        demo.main(["--backend", "tensorflow"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        demo.main(["--epochs", "0"])
    assert "--epochs must be at least 1" in capsys.readouterr().err


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        demo.train("mnist", "torch")


def test_train_leaves_torch_threads_alone():
    import torch

    before = torch.get_num_threads()
    demo.train("breast_cancer", "torch", epochs=1)
    assert torch.get_num_threads() == before
