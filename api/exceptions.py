"""Errors raised by the API's services and auth; api/errors.py gives each its status and code."""

from annotation.exceptions import DocketError


class KeyInvalid(DocketError):
    """The presented key is unknown, malformed, revoked or expired (the caller is told which, never the owner)."""


class ScopeMissing(DocketError):
    """The key authenticates, but was not given the scope this operation needs."""


class TooLarge(DocketError):
    """A request asks for more items than one call may carry."""

    def __init__(self, message: str, *, limit: int, received: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.received = received


class Conflict(DocketError):
    """The request contradicts the current state (a duplicate, a revoked key revoked again)."""


class ModelNotReady(DocketError):
    """No model version can answer this project's predictions yet."""


class IdempotencyMismatch(DocketError):
    """An `Idempotency-Key` or `submission_id` used before, now with another request: refused, never replayed."""


class RequestInProgress(DocketError):
    """The first request with this `Idempotency-Key` is still running; retry after a moment to get its answer."""

    retry_after = 1


class UnknownLabels(DocketError):
    """Labels that are not current labels of the project; `valid` lists the keys that are."""

    def __init__(self, message: str, *, unknown: list[str], valid: list[str]) -> None:
        super().__init__(message)
        self.unknown = unknown
        self.valid = valid
