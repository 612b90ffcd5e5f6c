"""Bounded work: inference and training memory and time estimated before a job runs, chunked or refused naming
the limit, and both memory models checked against measured runs (an aer chunk, BPTT training steps)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workers.bounds import (
    BASE_BYTES,
    CIRCUIT,
    EXACT,
    MAX_CHUNK,
    TRAIN_BASE_BYTES,
    WorkTooLarge,
    plan_inference,
    plan_training,
)
from workers.settings import Settings

GiB = 2**30


def _settings(**kw) -> Settings:
    return Settings(environment="test", secret_key="k", **kw)  # type: ignore[arg-type]


def test_the_issue_case_is_chunked_to_fit_the_memory_limit() -> None:
    # aer at T = 800 on 256 samples drove workers to 11.7 and 14.5 GB; with a 4 GiB limit it runs in chunks
    plan = plan_inference([64, 10, 10], 800, 256, "aer", _settings(job_memory_bytes=4 * GiB))
    per_sample = 800 * 10 * CIRCUIT.bytes_per_unit
    assert plan.chunk == int((4 * GiB - BASE_BYTES) // per_sample) == 61
    assert plan.chunks == 5 and plan.chunk * plan.chunks >= 256 > plan.chunk * (plan.chunks - 1)
    assert plan.peak_bytes <= 4 * GiB
    unchunked = BASE_BYTES + 256 * per_sample
    assert 14 * GiB < unchunked < 17 * GiB  # the size that got workers killed
    assert plan.seconds == pytest.approx(256 * 800 * 20 * CIRCUIT.seconds_per_unit + 5 * CIRCUIT.seconds_per_chunk)


def test_small_jobs_run_in_one_chunk_of_at_most_max_chunk() -> None:
    assert plan_inference([64, 6, 10], 4, 100, "exact", _settings()).chunks == 1
    plan = plan_inference([64, 6, 10], 4, 1000, "exact", _settings())
    assert (plan.chunk, plan.chunks) == (MAX_CHUNK, 4)
    assert plan.seconds == pytest.approx(1000 * 4 * 16 * EXACT.seconds_per_unit + 4 * EXACT.seconds_per_chunk)


def test_a_sample_larger_than_the_memory_limit_is_refused_naming_it() -> None:
    with pytest.raises(WorkTooLarge, match="SQSNN_JOB_MEMORY_BYTES=269484032"):
        plan_inference([784, 1000, 10], 1000, 1, "aer", _settings(job_memory_bytes=BASE_BYTES + (1 << 20)))


def test_a_job_longer_than_the_time_limit_is_refused_naming_it() -> None:
    with pytest.raises(WorkTooLarge, match="SQSNN_MAX_JOB_SECONDS=60"):
        plan_inference([64, 100, 10], 1000, 10_000, "aer", _settings(max_job_seconds=60))


PROBE = textwrap.dedent(
    """
    import sys, torch
    from backends.execute import run_network
    from sqsnn.network import NetworkConfig, SQSNetwork
    net = SQSNetwork(NetworkConfig(sizes=[64, 8, 10], direct=True, seed=0))
    x = lambda b: (torch.rand(40, b, 64, generator=torch.Generator().manual_seed(0)) < 0.3).double()
    run_network(net, x(1), "aer", seed=1)  # imports, transpilation: the worker's baseline
    print("warm", flush=True)
    sys.stdin.readline()
    run_network(net, x(int(sys.argv[1])), "aer", seed=1)
    """
)


def _rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    rss = [int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")]
    return rss[0] if rss else 0  # an exited (zombie) process has none


def _growth_bytes(batch: int) -> int:
    """How far a warmed-up process's resident memory rises above its baseline while it runs ``batch``
    samples (sampled every 10 ms from outside, so a GIL-holding simulator cannot hide it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PROBE, str(batch)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "warm"
    base = _rss(proc.pid)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    peak = base
    while proc.poll() is None:
        peak = max(peak, _rss(proc.pid))
        time.sleep(0.01)
    assert proc.returncode == 0
    return peak - base


def test_the_memory_model_bounds_a_measured_aer_chunk() -> None:
    measured = _growth_bytes(96)
    estimate = 96 * 40 * 10 * CIRCUIT.bytes_per_unit
    assert 0 < measured <= estimate, (measured, estimate)
    assert estimate <= 4 * measured  # and not a gross over-estimate
    plan = plan_inference([64, 8, 10], 40, 96, "aer", _settings())
    assert plan.chunks == 1 and plan.peak_bytes >= measured + BASE_BYTES


TRAIN_PROBE = textwrap.dedent(
    """
    import sys, torch
    from sqsnn.network import NetworkConfig, SQSNetwork
    from sqsnn.training.bptt import TrainConfig, batch_loss
    from sqsnn import kernels
    kernels.keep_freed_memory()  # as the trainer does
    torch.set_num_threads(1)
    hidden, batch, steps = (int(a) for a in sys.argv[1:4])
    net = SQSNetwork(NetworkConfig(sizes=[784, hidden, 10], seed=0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(steps, batch, 784, generator=gen) < 0.15).double()
    y = torch.randint(0, 10, (batch,), generator=gen)
    for _ in range(2):
        loss = batch_loss(net(x, gen), y, TrainConfig())
        opt.zero_grad()
        loss.backward()
        opt.step()
    # VmHWM: this program's own peak (ru_maxrss would carry the forking parent's size across exec)
    status = open("/proc/self/status").read().splitlines()
    print(next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")))
    """
)


@pytest.mark.parametrize(("hidden", "batch", "steps"), [(1000, 256, 5), (2000, 64, 50), (100, 256, 200)])
def test_the_training_memory_model_bounds_measured_bptt_steps(hidden, batch, steps) -> None:
    """Peak resident memory of a process that runs two BPTT steps (imports and kernels included) against the
    plan's peak: never above it, and not a gross over-estimate."""
    run = subprocess.run([sys.executable, "-c", TRAIN_PROBE, str(hidden), str(batch), str(steps)],
                         capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    measured = int(run.stdout.split()[-1])
    plan = plan_training([784, hidden, 10], steps, batch, 1, 1, 1, _settings())
    assert measured <= plan.peak_bytes <= 2.5 * measured, (measured, plan.peak_bytes)


def test_training_that_does_not_fit_is_refused_naming_the_field_and_the_limit() -> None:
    small = _settings(job_memory_bytes=TRAIN_BASE_BYTES + (64 << 20), max_job_seconds=60)
    # 784-1000-10: 25 MB of parameters and moments, 4 MB per 32-sample batch at T = 5: fits
    plan = plan_training([784, 1000, 10], 5, 32, 100, 1, 1, small)
    assert plan.peak_bytes <= small.job_memory_bytes and 0 < plan.seconds < 60
    with pytest.raises(WorkTooLarge, match="SQSNN_JOB_MEMORY_BYTES=") as err:
        plan_training([784, 1000, 10], 50, 256, 100, 1, 1, small)  # a 256-sample batch at T = 50: ~840 MB
    assert err.value.field == ("training", "batch_size")
    with pytest.raises(WorkTooLarge, match="SQSNN_MAX_JOB_SECONDS=60") as err:
        plan_training([784, 1000, 10], 5, 32, 60_000, 20, 1, small)  # 20 epochs of full MNIST
    assert err.value.field == ("training", "epochs")
    # the local rule's forward runs per sample multiply its time
    one, eight = (plan_training([784, 100, 10], 5, 32, 1000, 1, runs, small).seconds for runs in (1, 8))
    assert eight == pytest.approx(8 * one)
    # so do the evaluated samples (held-out split x eval_runs), at a training sample's rate
    evaluated = plan_training([784, 100, 10], 5, 32, 1000, 1, 1, small, evaluated=250 * 10).seconds
    assert evaluated == pytest.approx(3.5 * one)
