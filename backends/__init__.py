"""backends: SQS layers as circuits with mid-circuit measurement and reset, run single-shot anywhere.

Modules:

* :mod:`backends.compiler` — a chunk of N = N_M = 1 neurons over T steps -> one parameterised Qiskit
  circuit (neighbouring (memory, I/O) qubit pairs, measure + reset per step, one classical register,
  every angle a parameter so a batch -- or a set of shifted variants -- is one parameter array); the
  deferred-measurement layout; the decoder of result bits into ``(T, B, S, n)`` spikes.
* :mod:`backends.qasm` — OpenQASM 3 exports (simulator form via ``qasm3.dumps(includes=[])``; native form
  with Braket built-in gate names and ``input float`` angles).
* :mod:`backends.base` — the one interface (:class:`~backends.base.Backend`: ``capabilities``,
  ``availability``, ``estimate``, ``submit`` / ``poll`` / ``fetch``, ``run_layer``), results, the job-state
  mapping and errors; :mod:`backends.common` — shared checks.
* Backends: :mod:`backends.exact` (``exact``), :mod:`backends.aer` (``aer``, ``aer-noisy:<fake>``),
  :mod:`backends.ibm` (``ibm:<backend>``, ``ibm-local:<fake>``), :mod:`backends.braket`
  (``braket-local:sv|dm``, ``braket:<arn>``); :mod:`backends.calibration` — layout from error rates and
  the calibration snapshot kept with each hardware result.
* :mod:`backends.registry` — names -> backends, option models (:mod:`backends.options`), fallback policy.
* :mod:`backends.execute` — a whole network layer by layer; :mod:`backends.estimate` and
  :mod:`backends.prices` — resources, cost, budgets; :mod:`backends.cli` — ``sqsnn estimate``.
* :mod:`backends.shift` — shot-based probabilities for the local rule's estimators, one submission per call.
* :mod:`backends.training` — the local rule with the backend in the loop (forward spikes and probabilities
  measured there), its training estimate and the test accuracy on the backend; :mod:`backends.meter` — the
  running spend of a long run, charged against its budget before every submission.

Quick use::

    from backends.execute import run_network
    from backends.options import RunPolicy
    run = run_network(net, x, "ibm:ibm_torino", policy=RunPolicy(fallback="aer"))
    run.predictions, run.fallback, run.layers[0].calibration
"""
