"""What a Braket device-properties document says (``AwsDevice.properties`` / ``LocalSimulator.properties`` as
JSON): capabilities for sqsnn, program-set limits, execution windows; and a task's queue position."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backends.base import BackendRefused, Capabilities, QueueInfo
from backends.redact import redact

OPENQASM_ACTION = "braket.ir.openqasm.program"
PROGRAM_SET_ACTION = "braket.ir.openqasm.program_set"
REQUIRED_GATES = ("rx", "rz", "h", "cnot")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class ProgramSetLimits:
    """A device's ``braket.ir.openqasm.program_set`` limits: executables per task, shots per task in all."""

    max_executables: int
    max_total_shots: int
    min_total_shots: int = 0

    def executables_per_task(self, shots: int) -> int:
        """Most executables of ``shots`` shots each that one program set may hold."""
        per_task = min(self.max_executables, self.max_total_shots // shots)
        if per_task < 1:
            raise BackendRefused(
                f"shots per sample {shots} exceed the device's program-set maximum of {self.max_total_shots} shots"
            )
        return per_task


# Assumed by estimates of a device whose properties cannot be read (no credentials yet), and said so in the
# price note: Braket announced program sets of up to 100 executables; 200,000 shots is the local simulator's.
DOCUMENTED_PROGRAM_SET_LIMITS = ProgramSetLimits(max_executables=100, max_total_shots=200_000)


def device_capabilities(props: Mapping[str, Any], *, hardware: bool) -> Capabilities:
    """Capabilities from a Braket device-properties document (``device.properties`` as JSON)."""
    action = props.get("action", {}).get(OPENQASM_ACTION)
    if action is None:
        raise BackendRefused("device does not accept OpenQASM 3 programs (no braket.ir.openqasm.program action)")
    ops = {str(o).lower() for o in action.get("supportedOperations", [])}
    missing = [g for g in REQUIRED_GATES if g not in ops]
    if missing:
        raise BackendRefused(f"device gate set lacks {missing} needed by the SQS program")
    lo, hi = props["service"]["shotsRange"]
    reset = "reset" in ops or not hardware  # the local simulators run reset without listing it
    return Capabilities(
        provider="braket",
        mid_circuit_measurement=reset,
        reset=reset,
        readable_mid_circuit=not hardware,
        hardware=hardware,
        noisy=hardware,
        parameter_batches=program_set_limits(props) is not None,
        modes=("quantum", "memoryless") if reset else ("quantum",),
        max_qubits=int(props["paradigm"]["qubitCount"]),
        min_shots=max(int(lo), 1),
        max_shots=int(hi),
    )


def program_set_limits(props: Mapping[str, Any]) -> ProgramSetLimits | None:
    """The device's program-set limits, or None when it does not list the program-set action."""
    action = props.get("action", {}).get(PROGRAM_SET_ACTION)
    if action is None:
        return None
    return ProgramSetLimits(
        int(action["maximumExecutables"]), int(action["maximumTotalShots"]), int(action.get("minimumTotalShots") or 0)
    )


def queue_position(info: Mapping[str, Any]) -> QueueInfo:
    """:class:`QueueInfo` from GetQuantumTask's ``queueInfo`` (Braket counts from 1; ours from 0)."""
    raw = str(info.get("position", "None"))
    position = int(raw) - 1 if raw.isdigit() else (2000 if raw.startswith(">") else None)
    text = f"Braket {info.get('queuePriority', 'Normal')} queue position {raw}"
    if info.get("message"):
        text += f": {info['message']}"
    return QueueInfo(position=position, message=redact(text))


def in_execution_window(windows: list[Mapping[str, Any]], now: datetime) -> bool:
    """Whether ``now`` (UTC) falls inside one of the device's execution windows."""
    if not windows:
        return True
    day, clock = _DAYS[now.weekday()], now.strftime("%H:%M:%S")
    for w in windows:
        days = str(w.get("executionDay", "Everyday"))
        if days == "Everyday" or days == day or (days == "Weekdays" and now.weekday() < 5):
            pass
        elif not (days == "Weekend" and now.weekday() >= 5):
            continue
        start, end = str(w["windowStartHour"]), str(w["windowEndHour"])
        if (start <= clock < end) if start <= end else (clock >= start or clock < end):
            return True
    return False
