"""The operator's error model: every failure of a reconcile is either permanent or temporary,
and neither is only in a log.

* permanent - the spec cannot be carried out (it slipped past admission, or a rendered child
  is refused by the apiserver): Ready=False and Degraded=True with the field path, a Warning
  Event, and no retry until the object changes (its generation);
* temporary - the API answered 409/429/5xx, the network failed, or anything unexpected: the
  work queue retries with capped exponential backoff, and from the RETRIES_BEFORE_REPORT-th
  failure in a row the object's status says so (condition ReconcileFailed) until a reconcile
  succeeds again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydantic import ValidationError

from aerocdn.api import InputError
from aerocdn.api.common import camel_path
from aerocdn.controller.kube import KubeError

RETRIES_BEFORE_REPORT = 3


class FailureReason(enum.Enum):
    """Reasons of the conditions and Events a failure writes."""

    INVALID_SPEC = "InvalidSpec"
    SECRET_INVALID = "SecretInvalid"
    CHILD_REFUSED = "ChildRefused"
    API_CONFLICT = "APIConflict"
    API_UNAVAILABLE = "APIUnavailable"
    API_FORBIDDEN = "APIForbidden"
    INTERNAL = "InternalError"


@dataclass
class PermanentError(Exception):
    reason: FailureReason
    field: str  # spec.cachePolicy.cacheKey.queryParams[0], or "" when not one field
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def classify(exc: BaseException) -> PermanentError | FailureReason:
    """A PermanentError for failures retrying cannot fix; else the temporary reason."""
    if isinstance(exc, PermanentError):
        return exc
    if isinstance(exc, InputError):
        first = exc.problems[0] if exc.problems else None
        return PermanentError(FailureReason.INVALID_SPEC, first.field if first else "",
                              "; ".join(f"{p.field}: {p.message}" for p in exc.problems))
    if isinstance(exc, ValidationError):
        # a model built from the spec (edge config, routing facts) refused a value the API
        # models admitted: name the spec field it came from
        errors = exc.errors(include_url=False)
        fields = [camel_path(("spec", *err["loc"])) for err in errors]
        return PermanentError(
            FailureReason.INVALID_SPEC, fields[0] if fields else "",
            "; ".join(f"{f}: {e['msg']}" for f, e in zip(fields, errors, strict=True)))
    if isinstance(exc, KubeError):
        if exc.status in (400, 422):
            return PermanentError(FailureReason.CHILD_REFUSED, "",
                                  f"the apiserver refused a child object: {exc}")
        if exc.status == 409:
            return FailureReason.API_CONFLICT
        if exc.status in (401, 403):
            return FailureReason.API_FORBIDDEN
        return FailureReason.API_UNAVAILABLE
    if isinstance(exc, OSError | TimeoutError):
        return FailureReason.API_UNAVAILABLE
    return FailureReason.INTERNAL
