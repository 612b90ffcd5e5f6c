"""The event-driven synapses' threshold: the operator's setting, the measurement and its cache."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sqsnn import event_threshold, synapses


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No operator setting, an empty cache directory and no answer remembered by this process."""
    monkeypatch.delenv(event_threshold.VARIABLE, raising=False)
    monkeypatch.setenv(event_threshold.CACHE_VARIABLE, str(tmp_path))
    monkeypatch.setattr(event_threshold, "_known", {})
    return tmp_path / event_threshold.CACHE_FILE


def test_the_operators_setting_wins_and_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_threshold.VARIABLE, "0.2")
    assert event_threshold.event_density(torch.float64) == 0.2
    assert event_threshold.event_density(torch.float32) == 0.2
    sparse = torch.zeros(8, 50, dtype=torch.float64)
    sparse[:, :5] = 1  # density 0.1: event-driven under 0.2, dense under 0.05
    weight = torch.randn(3, 50, dtype=torch.float64)
    assert "EventLinear" in type(synapses.linear(sparse, weight.requires_grad_()).grad_fn).__name__
    monkeypatch.setenv(event_threshold.VARIABLE, "0.05")
    assert "EventLinear" not in type(synapses.linear(sparse, weight).grad_fn).__name__
    for bad in ("fast", "1.5", "-0.1", "nan"):
        monkeypatch.setenv(event_threshold.VARIABLE, bad)
        with pytest.raises(ValueError, match=event_threshold.VARIABLE):
            event_threshold.event_density(torch.float64)


def test_the_crossing_is_the_last_density_of_an_unbroken_run_of_event_driven_wins() -> None:
    grid = (0.1, 0.2, 0.3, 0.4)
    assert event_threshold.crossing(10.0, [1.0, 2.0, 12.0, 3.0], grid) == 0.2  # 0.4's win comes after a loss
    assert event_threshold.crossing(10.0, [10.0, 2.0, 3.0, 4.0], grid) == 0.0  # a tie is not a win
    assert event_threshold.crossing(10.0, [1.0, 2.0, 3.0, 4.0], grid) == 0.4
    assert event_threshold.crossing(10.0, [1.0, 11.0], grid[:2]) == 0.1  # the measurement stops at a loss


def test_measured_on_this_machine_event_driven_wins_when_sparse_and_loses_when_full() -> None:
    # 784 -> 1000 on 1,280 rows: at 1 % ones the gather reads 1 % of the weight rows per output row, while
    # BLAS does the full product (~30x more work); with every input active it does the same sums unblocked.
    assert event_threshold.measure(torch.float64, densities=(0.01,)) == 0.01
    assert event_threshold.measure(torch.float32, densities=(1.0,)) == 0.0


def test_the_measurement_is_kept_per_machine_and_read_back(fresh: Path) -> None:
    measured = event_threshold.event_density(torch.float32)
    assert measured in (0.0, *event_threshold.DENSITIES)
    entries = json.loads(fresh.read_text())
    key = event_threshold.signature(torch.float32)
    assert entries == {key: measured}
    assert "float32" in key and f"threads {torch.get_num_threads()}" in key
    # A later process reads the file instead of measuring again: a value no measurement gives proves it.
    fresh.write_text(json.dumps({key: 0.37}))
    event_threshold._known.clear()
    assert event_threshold.event_density(torch.float32) == 0.37
    assert event_threshold.event_density(torch.int64) == 0.0  # no event-driven kernel for other dtypes


def test_the_first_product_of_a_process_may_come_without_autograd(fresh: Path) -> None:
    x = (torch.rand(4, 30, generator=torch.Generator().manual_seed(0)) < 0.1).double()
    weight = torch.randn(5, 30, dtype=torch.float64)
    with torch.inference_mode():  # evaluation, or the local rule's recorded forward pass (no_grad)
        z = synapses.linear(x, weight)
    assert torch.allclose(z, x @ weight.T, rtol=1e-12, atol=1e-12)
    assert fresh.is_file()  # the threshold was measured on the way


def test_a_process_waits_for_the_one_measuring_and_reads_its_answer(fresh: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        key = event_threshold.signature(torch.float32)  # the child's: OMP_NUM_THREADS=1 below
    finally:
        torch.set_num_threads(threads)
    lock = fresh.with_name(f".{fresh.name}.lock").open("a")
    fcntl.flock(lock, fcntl.LOCK_EX)  # this test plays the process that is measuring
    code = (
        "import torch; from sqsnn import event_threshold as e; print('ready', flush=True); "
        "print(e.event_density(torch.float32))"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(1)  # the child is at the lock (its cache was empty)
        assert child.poll() is None, "the child did not wait for the lock"
        fresh.write_text(json.dumps({key: 0.37}))  # the measuring process's answer (no measurement gives 0.37)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    out, _ = child.communicate(timeout=120)
    assert float(out) == 0.37  # read, not measured


def test_an_unreadable_cache_is_measured_again_and_replaced(fresh: Path) -> None:
    fresh.write_text("not json")
    measured = event_threshold.event_density(torch.float64)
    assert json.loads(fresh.read_text()) == {event_threshold.signature(torch.float64): measured}
