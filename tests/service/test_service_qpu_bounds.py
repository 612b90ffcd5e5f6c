"""Bounded work: inference memory and time estimated before a job runs, chunked or refused naming the limit,
and the memory model checked against a measured aer run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from workers.bounds import BASE_BYTES, CIRCUIT, EXACT, MAX_CHUNK, WorkTooLarge, plan_inference
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
    import resource, sys, torch
    from backends.execute import run_network
    from sqsnn.network import NetworkConfig, SQSNetwork
    net = SQSNetwork(NetworkConfig(sizes=[64, 8, 10], direct=True, seed=0))
    x = lambda b: (torch.rand(40, b, 64, generator=torch.Generator().manual_seed(0)) < 0.3).double()
    run_network(net, x(1), "aer", seed=1)  # imports, transpilation: the worker's baseline
    run_network(net, x(int(sys.argv[1])), "aer", seed=1)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """
)


def _peak_bytes(batch: int) -> int:
    """Peak resident memory of a fresh process that ran one warm-up sample, then ``batch`` samples."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(batch)], capture_output=True, text=True, timeout=300, check=True
    )  # fmt: skip
    return int(out.stdout.split()[-1])


def test_the_memory_model_bounds_a_measured_aer_chunk() -> None:
    # two fresh processes: the difference of their peaks is what 95 more samples of T = 40 cost
    measured = _peak_bytes(96) - _peak_bytes(1)
    estimate = 95 * 40 * 10 * CIRCUIT.bytes_per_unit
    assert 0 < measured <= estimate, (measured, estimate)
    assert estimate <= 4 * measured  # and not a gross over-estimate
    plan = plan_inference([64, 8, 10], 40, 96, "aer", _settings())
    assert plan.chunks == 1 and plan.peak_bytes >= measured + BASE_BYTES
