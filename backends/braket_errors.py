"""Braket / boto3 failures -> sqsnn errors, with redacted messages.

* Throttling (429), service faults (5xx), quota of concurrent tasks, dropped or timed-out connections and a
  result not yet in S3 (``NoSuchKey``) -> :class:`ProviderError` ``retryable=True``.
* Wrong or expired credentials, access denied, invalid requests, unknown ARNs, a retired device, a task
  FAILED or CANCELLED -> :class:`ProviderError` ``retryable=False``.
* A device OFFLINE (``DeviceOfflineException``) or no credentials configured -> :class:`BackendUnavailable`
  (the run policy's fallback applies).

Every message passes through :func:`backends.redact.redact` (no secret, no AWS account id).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from backends.base import BackendRefused, BackendUnavailable, ProviderError
from backends.redact import redact

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "SlowDown",
        "InternalServiceException",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceQuotaExceededException",
        "NoSuchKey",
    }
)
UNAVAILABLE_CODES = frozenset({"DeviceOfflineException"})
CREDENTIALS_HINT = (
    "configure AWS credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or ~/.aws) "
    "with Braket permissions"
)


def translate(exc: Exception, what: str) -> ProviderError | BackendUnavailable:
    """The sqsnn error for ``exc`` raised while doing ``what`` (e.g. ``"CreateQuantumTask"``)."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, NoCredentialsError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = redact(f"Braket {what} failed: {code}: {error.get('Message', '')}")
        if code in UNAVAILABLE_CODES:
            return BackendUnavailable(text)
        if code in ("UnrecognizedClientException", "ExpiredTokenException", "InvalidClientTokenId"):
            text += f"; {CREDENTIALS_HINT}"
        return ProviderError(text, retryable=code in RETRYABLE_CODES or status == 429 or status >= 500)
    if isinstance(exc, NoCredentialsError):
        return BackendUnavailable(f"Braket {what}: no AWS credentials found; {CREDENTIALS_HINT}")
    text = redact(f"Braket {what} failed: {type(exc).__name__}: {exc}")
    return ProviderError(text, retryable=isinstance(exc, ConnectionError | HTTPClientError))


@contextmanager
def provider_call(what: str) -> Iterator[None]:
    """Run SDK calls, re-raising any failure as :func:`translate` maps it (sqsnn's own errors pass)."""
    try:
        yield
    except (ProviderError, BackendUnavailable, BackendRefused):
        raise
    except Exception as exc:
        raise translate(exc, what) from None
