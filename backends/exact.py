"""``exact``: the in-process engine ``sqsnn.neuron.sqs_layer`` (exact single-shot trajectories).

A prepared initial memory (``memory_angles``) runs ``sqsnn.neuron.sqs_step`` from that state instead.
"""

from __future__ import annotations

import numpy as np
import torch

from backends.base import Availability, Capabilities, LayerResult, ProviderState, SubmittedJob
from backends.common import BaseBackend, LayerRequest
from backends.options import ExactOptions
from sqsnn.neuron import SQSParams, SQSState, sqs_layer, sqs_step


class ExactBackend(BaseBackend):
    """Samples the exact model; runs synchronously inside ``submit``."""

    name = "exact"

    def __init__(self, options: ExactOptions | None = None) -> None:
        self.options = options or ExactOptions()
        self._results: dict[str, np.ndarray] = {}

    def neurons_per_circuit(self) -> int:
        return 1 << 30  # no circuits: the whole layer is one computation

    def qubits_per_neuron(self, steps: int) -> int:
        return 0

    def cost_usd(self, tasks: int, shots: int) -> tuple[float | None, str]:
        return 0.0, "in-process engine"

    def capabilities(self) -> Capabilities:
        return Capabilities(
            provider="sqsnn",
            mid_circuit_measurement=True,
            reset=True,
            readable_mid_circuit=True,
            hardware=False,
            noisy=False,
            parameter_batches=True,
            modes=("quantum", "memoryless", "official"),
        )

    def availability(self) -> Availability:
        return Availability(True, "in-process engine")

    def _submit(self, request: LayerRequest) -> SubmittedJob:
        zz, ang, shots, mode, seed = request.z, request.angles, request.shots, request.mode, request.seed
        steps, batch, n = zz.shape
        dtype = getattr(torch, self.options.dtype)
        gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.seed() % 2**62))
        # (T, B, n) -> (T, S, B*n): every (sample, neuron) pair is a neuron with its own angles, so
        # per-sample angles and several shots are one engine call.
        zt = torch.as_tensor(zz, dtype=dtype).reshape(steps, 1, batch * n).expand(steps, shots, batch * n)
        full = np.array(np.broadcast_to(ang if ang.ndim == 3 else ang[:, None, :], (3, batch, n)))
        params = SQSParams(*(torch.as_tensor(full[j].reshape(batch * n), dtype=dtype) for j in range(3)))
        with torch.no_grad():
            if request.memory_angles is None:
                spikes, _ = sqs_layer(zt.contiguous(), params, mode, gen)
            else:  # memory starts in RX(alpha)|0>: step by step from that state
                memory = np.broadcast_to(np.asarray(request.memory_angles, dtype=np.float64), (batch, n))
                alpha = torch.as_tensor(memory.reshape(1, batch * n), dtype=dtype).expand(shots, batch * n)
                state = SQSState(-torch.sin(alpha), torch.cos(alpha), torch.zeros_like(alpha))
                steps_out = []
                for t in range(steps):
                    s_t, _, state = sqs_step(zt[t], state, params, mode, gen)
                    steps_out.append(s_t)
                spikes = torch.stack(steps_out)
        out = spikes.reshape(steps, shots, batch, n).permute(0, 2, 1, 3).to(torch.float64).numpy()
        job = self._submitted(request, job_ids=[], chunks=[(0, n)], layout="none", qubits_per_circuit=0)
        job.job_ids = [job.local_key]
        self._results[job.local_key] = out
        return job

    def poll(self, job: SubmittedJob) -> ProviderState:
        return "done" if job.local_key in self._results else "failed"

    def fetch(self, job: SubmittedJob) -> LayerResult:
        return LayerResult(
            spikes=self._results.pop(job.local_key),
            backend=self.name,
            job_ids=job.job_ids,
            circuits=0,
            jobs=0,
            shots=job.batch * job.shots,
            qubits_per_circuit=0,
        )
