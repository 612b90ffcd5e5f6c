"""Baseline spiking models compared with SQSNNs in the same harness.

* :mod:`sqsnn.baselines.lif` — classical leaky integrate-and-fire SNN (surrogate-gradient BPTT), with a
  helper that picks the hidden width matching an SQSNN's trainable-parameter count.
* :mod:`sqsnn.baselines.qlif` — the quantum LIF neuron of Brand & Petruccione (npj Quantum Inf. 2024).

Both follow the model contract of ``docs/architecture.md``: ``forward(x (T, B, D), generator) ->
NetworkOutput``, ``predict(out) -> (B,)``, ``num_parameters() -> int``, and train with
:func:`sqsnn.training.bptt.train`. Each is a thin ``nn.Module`` over a pure step function.
"""

from sqsnn.baselines.lif import LIFConfig, LIFNetwork, LIFParams, LIFState, lif_step, matched_hidden_sizes
from sqsnn.baselines.qlif import QLIFConfig, QLIFNetwork, QLIFParams, QLIFState, qlif_step

__all__ = [
    "LIFConfig",
    "LIFNetwork",
    "LIFParams",
    "LIFState",
    "QLIFConfig",
    "QLIFNetwork",
    "QLIFParams",
    "QLIFState",
    "lif_step",
    "matched_hidden_sizes",
    "qlif_step",
]
