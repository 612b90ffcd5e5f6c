"""Memory and time of a job, estimated before it runs: refused when too large, inference chunked to fit.

Inference cost model (per chunk of B samples, T steps, layer sizes ``[D, n_1, ..., n_L]``):

* memory: ``B * T * max(n_l) * bytes_per_unit`` above the worker's baseline (layers run one after another;
  a circuit backend holds every bound circuit and its measurement records of the widest layer at once);
* time: ``B * T * sum(n_l) * seconds_per_unit`` plus ``seconds_per_chunk``.

The coefficients were measured with ``run_network`` on a 64-H-10 network with direct synapses (H = 8, 32;
T = 50, 200, 400; B = 16, 64) on the shared 2-core machine: ``aer`` grew 6.3-8.4 KiB and 30-46 us per
sample, step and neuron, ``exact`` 0.17 KiB and 4 us; the constants below round up. The other circuit
backends (``aer-noisy``, ``ibm-local``, ``braket-local``) use the circuit constants, which under-estimate
their time (noise and mid-circuit branching are slower): ``Settings.max_job_seconds`` is a floor check.
At T = 800 and 256 samples of a 10-wide layer the model gives 16 GiB, the size that got workers killed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from workers.settings import Settings

MAX_CHUNK = 256  # samples per chunk (and per streamed "spikes" event) when memory allows
BASE_BYTES = 256 << 20  # transpiled circuits, simulator state and result buffers of a chunk


@dataclass(frozen=True)
class CostModel:
    """Per-sample, per-step, per-neuron coefficients of one backend family."""

    bytes_per_unit: float
    seconds_per_unit: float
    seconds_per_chunk: float


EXACT = CostModel(bytes_per_unit=256.0, seconds_per_unit=5e-6, seconds_per_chunk=0.05)
CIRCUIT = CostModel(bytes_per_unit=8192.0, seconds_per_unit=5e-5, seconds_per_chunk=2.0)


class WorkTooLarge(ValueError):
    """The job cannot fit the configured limits; the message names the limit and what it would need, ``field``
    the part of the job specification to change (``("encoder", "T")`` for memory, ``("inputs",)`` for time)."""

    def __init__(self, field: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class InferencePlan:
    """How a job runs: ``chunks`` chunks of at most ``chunk`` samples; estimated peak memory (bytes above the
    worker's baseline) and total time (seconds)."""

    samples: int
    chunk: int
    chunks: int
    peak_bytes: float
    seconds: float


def cost_model(backend: str) -> CostModel:
    """The cost model of backend ``name`` (in-process engine or circuits)."""
    return EXACT if backend == "exact" else CIRCUIT


def plan_inference(sizes: list[int], steps: int, samples: int, backend: str, settings: Settings) -> InferencePlan:
    """Chunk ``samples`` so one chunk fits ``Settings.job_memory_bytes``; refuse (:class:`WorkTooLarge`)
    when one sample does not fit or the whole job would exceed ``Settings.max_job_seconds``."""
    model = cost_model(backend)
    per_sample = steps * max(sizes[1:]) * model.bytes_per_unit
    room = settings.job_memory_bytes - BASE_BYTES
    fits = int(room // per_sample) if room > 0 else 0
    if fits < 1:
        need = BASE_BYTES + per_sample
        raise WorkTooLarge(
            ("encoder", "T"),
            f"one sample at T={steps} on {backend} needs about {need / 2**30:.2f} GiB, more than the job memory "
            f"limit SQSNN_JOB_MEMORY_BYTES={settings.job_memory_bytes}; lower encoder.T or the layer widths",
        )
    chunk = min(MAX_CHUNK, fits, samples)
    chunks = -(-samples // chunk)
    seconds = samples * steps * sum(sizes[1:]) * model.seconds_per_unit + chunks * model.seconds_per_chunk
    if seconds > settings.max_job_seconds:
        raise WorkTooLarge(
            ("inputs",),
            f"{samples} samples at T={steps} on {backend} would take about {seconds:.0f} s, more than the job time "
            f"limit SQSNN_MAX_JOB_SECONDS={settings.max_job_seconds:.0f}; submit fewer samples per job",
        )
    return InferencePlan(samples, chunk, chunks, BASE_BYTES + chunk * per_sample, seconds)


TRAIN_BASE_BYTES = 512 << 20  # the worker's engine: torch, compiled kernels, the dataset's buffers
TRAIN_BYTES_PER_UNIT = 64.0  # per sample, step and neuron of a batch (currents, spikes, probabilities, memory)
TRAIN_BYTES_PER_INPUT = 16.0  # per sample, step and input channel (spikes and their event lists)
TRAIN_BYTES_PER_PARAMETER = 32.0  # float64 value, gradient and Adam's two moments
TRAIN_SECONDS_PER_SYNAPSE = 2e-10  # per sample, step and synapse: forward and backward products
TRAIN_SECONDS_PER_UNIT = 2e-7  # per sample, step and neuron: the neuron kernels and per-step work


@dataclass(frozen=True)
class TrainingPlan:
    """Estimated peak memory (bytes, baseline included) and compute time (seconds) of a training job."""

    peak_bytes: float
    seconds: float


def plan_training(
    sizes: list[int],
    steps: int,
    batch: int,
    n_train: int,
    epochs: int,
    runs: int,
    settings: Settings,
    evaluated: int = 0,
) -> TrainingPlan:
    """Memory and compute time of training a network of layer ``sizes`` (``[D, n_1, ..., n_L]``) for ``epochs``
    epochs on ``n_train`` samples in batches of ``batch`` at ``steps`` time steps, ``runs`` forward runs per
    sample (the local rule's ``samples``; 1 for BPTT), evaluating ``evaluated`` samples after every epoch (the
    held-out split times ``training.eval_runs``); :class:`WorkTooLarge` naming ``training.batch_size`` when a
    batch does not fit ``Settings.job_memory_bytes`` and ``training.epochs`` when the job would exceed
    ``Settings.max_job_seconds``. An evaluated sample is counted at a training sample's rate: an upper bound
    for a forward pass alone.

    Cost model, measured on the engine's BPTT step (float64, one thread, load ~3; 784-H-10 with H = 100-4000,
    batch 32-256, T = 5-200): resident memory 475-1,180 MiB, within ``TRAIN_BASE_BYTES`` + parameters x 32 +
    batch x T x (64 per neuron + 16 per input), which over-estimates them by 1.15-1.25x (tests); CPU time
    1.1-1.6e-10 s per
    sample, step and synapse where the synapses dominate. The time counts the worker's own compute only: on a
    circuit backend the simulator or the provider adds to it, so there it is a floor.
    """
    units = sum(sizes[1:])
    synapses = sum(a * b for a, b in itertools.pairwise(sizes))
    parameters = synapses + 3 * units
    per_batch = batch * steps * (units * TRAIN_BYTES_PER_UNIT + sizes[0] * TRAIN_BYTES_PER_INPUT)
    peak = TRAIN_BASE_BYTES + parameters * TRAIN_BYTES_PER_PARAMETER + per_batch
    if peak > settings.job_memory_bytes:
        raise WorkTooLarge(
            ("training", "batch_size"),
            f"a batch of {batch} at T={steps} on a {'-'.join(map(str, sizes))} network needs about "
            f"{peak / 2**30:.2f} GiB, more than the job memory limit SQSNN_JOB_MEMORY_BYTES="
            f"{settings.job_memory_bytes}; lower training.batch_size, encoder.T or the layer widths",
        )
    per_run = steps * (synapses * TRAIN_SECONDS_PER_SYNAPSE + units * TRAIN_SECONDS_PER_UNIT)
    seconds = epochs * (n_train * runs + evaluated) * per_run
    if seconds > settings.max_job_seconds:
        raise WorkTooLarge(
            ("training", "epochs"),
            f"{epochs} epochs of {n_train} samples at T={steps} on a {'-'.join(map(str, sizes))} network would "
            f"take about {seconds:.0f} s, more than the job time limit SQSNN_MAX_JOB_SECONDS="
            f"{settings.max_job_seconds:.0f}; lower training.epochs, training.eval_runs, dataset.limit_train or the "
            "layer widths",
        )
    return TrainingPlan(peak, seconds)
