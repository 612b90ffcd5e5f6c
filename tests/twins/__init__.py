"""Provider twins: loopback HTTP servers that speak the IBM Quantum Runtime and Amazon Braket APIs and run
circuits on local simulators, so the unmodified provider clients can be tested end to end."""
