"""Dask: losses build lazy graphs, and those graphs run on a distributed cluster.

Values on Dask arrays are checked with every other library in
``test_libraries.py``; this module checks what is particular to Dask: a call
computes nothing (not even for argument checks), chunking along any axis
gives the same value, and the graph runs on ``dask.distributed`` workers.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import anyloss
from test_libraries import CASES, CASE_IDS, REDUCTIONS, assert_close

da = pytest.importorskip("dask.array")


class Counter:
    """Counts how many chunks of an array have been computed."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, block: np.ndarray) -> np.ndarray:
        if block.size:  # Dask also calls it on empty arrays to infer metadata
            with self._lock:
                self.calls += 1
        return block


def counted(a: np.ndarray, counter: Counter):
    """``a`` as a chunked Dask array whose chunks call ``counter`` when computed."""
    chunks = tuple(max(1, (n + 1) // 2) for n in a.shape) or ()
    return da.from_array(a, chunks=chunks).map_blocks(counter, dtype=a.dtype, meta=np.empty((0,) * a.ndim, a.dtype))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_calls_stay_lazy(case):
    """No loss computes a chunk until ``.compute()``: argument checks that
    need values (class indices in range, probabilities in [0, 1]) are not
    run on lazy arrays."""
    counter = Counter()
    arrays = case.arrays()
    inputs = {k: counted(v, counter) for k, v in arrays.items()}
    for reduction in REDUCTIONS:
        counter.calls = 0
        result = case.func(**inputs, **case.params, reduction=reduction)
        assert isinstance(result, da.Array)
        assert counter.calls == 0, f"{case.loss} computed {counter.calls} chunks while building its graph"
        assert_close(np.asarray(result.compute()), case.expected(arrays, reduction), "float64")
        assert counter.calls > 0


@pytest.mark.parametrize("chunks", [(64, 300), (1000, 7), (300, 70)])
def test_cross_entropy_any_chunking(chunks):
    """Chunks across the class axis (the reductions cross chunk boundaries) or
    across examples give the same value as NumPy."""
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=4.0, size=(1000, 300))
    targets = rng.integers(0, 300, size=1000)
    x = da.from_array(logits, chunks=chunks)
    t = da.from_array(targets, chunks=chunks[0])
    for kwargs in ({}, {"label_smoothing": 0.1}):
        got = anyloss.cross_entropy(x, t, reduction="mean", **kwargs).compute()
        want = anyloss.cross_entropy(logits, targets, reduction="mean", **kwargs)
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_runs_on_a_local_distributed_cluster():
    """Every loss over chunked arrays on a two-worker ``dask.distributed``
    cluster (loopback only, stopped at the end) equals NumPy."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    ) as cluster, distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        rng = np.random.default_rng(11)
        logits = rng.normal(size=(4000, 40))
        targets = rng.integers(0, 40, size=4000)
        lazy = anyloss.cross_entropy(
            da.from_array(logits, chunks=(500, 20)), da.from_array(targets, chunks=500), reduction="sum"
        )
        np.testing.assert_allclose(
            client.compute(lazy).result(), anyloss.cross_entropy(logits, targets, reduction="sum"), rtol=1e-12
        )
        for case in CASES:
            arrays = case.arrays()
            inputs = {k: da.from_array(v, chunks=tuple(max(1, (n + 1) // 2) for n in v.shape)) for k, v in arrays.items()}
            lazy = case.func(**inputs, **case.params, reduction="none")
            got = client.compute(lazy).result()
            assert_close(np.asarray(got), case.func(**arrays, **case.params, reduction="none"), "float64")
