"""Redaction of provider messages before they reach a database row, a log line or an API response.

Removes the values of credential environment variables (IBM API key and instance CRN, AWS keys and session
token), AWS account ids (the 12-digit field of an ARN, e.g. ``arn:aws:braket:us-east-1:123456789012:...``) and
IBM Cloud resource names (``crn:v1:...``, which name the account and the Quantum instance).
"""

from __future__ import annotations

import os
import re

SECRET_ENV = (
    "QISKIT_IBM_TOKEN",
    "QISKIT_IBM_INSTANCE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
_ARN_ACCOUNT = re.compile(r"(arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:)(\d{12})(:)")
_CRN = re.compile(r"crn:v1:[^\s'\"]+")
_BEARER = re.compile(r"(?i)(bearer\s+|apikey\s+)[A-Za-z0-9._~+/=-]{8,}")


def redact(message: str) -> str:
    """``message`` with credential values, bearer tokens, ARN account ids and CRNs replaced by ``***``."""
    for var in SECRET_ENV:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            message = message.replace(value, "***")
    message = _BEARER.sub(r"\1***", message)
    message = _CRN.sub("crn:***", message)
    return _ARN_ACCOUNT.sub(r"\1***\3", message)
