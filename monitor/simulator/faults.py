"""Fault injection for the simulator: throttling, server errors, latency, unauthorized.

Rules are per operation (botocore operation name) or global, fire for the next N calls or with a
probability, and can be changed while the server runs. A seeded random keeps runs repeatable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from monitor.simulator.fleet import ApiError

_SERVER_STATUSES = (500, 503)


class Throttled(ApiError):
    code = "LimitExceededException"


class Unauthorized(ApiError):
    code = "UnauthorizedException"


class InternalFailure(ApiError):
    code = "InternalFailureException"


class DependentServiceFailure(ApiError):
    code = "DependentServiceFailureException"


@dataclass
class _Rule:
    kind: str  # "throttle" | "error" | "unauthorized" | "latency"
    op: str | None
    remaining: int | None
    probability: float
    status: int = 500
    seconds: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """What to do with one request: wait `delay` seconds, then answer `error` if set."""

    delay: float = 0.0
    error: ApiError | None = None


class Faults:
    """Mutable set of fault rules consulted once per request."""

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[_Rule] = []
        self._rng = random.Random(seed)

    def throttle(
        self, op: str | None = None, *, times: int | None = None, probability: float = 1.0
    ) -> None:
        """Answer 429 LimitExceededException. With neither `times` nor `probability` < 1,
        every matching call is throttled until `clear()`."""
        self._add(_Rule("throttle", op, times, probability))

    def error(
        self,
        op: str | None = None,
        *,
        status: int = 500,
        times: int | None = None,
        probability: float = 1.0,
    ) -> None:
        """Answer 500 InternalFailureException or 503 DependentServiceFailureException."""
        if status not in _SERVER_STATUSES:
            raise ValueError(f"status must be one of {_SERVER_STATUSES}")
        self._add(_Rule("error", op, times, probability, status=status))

    def unauthorized(
        self, op: str | None = None, *, times: int | None = None, probability: float = 1.0
    ) -> None:
        """Answer 401 UnauthorizedException, as for expired or revoked credentials."""
        self._add(_Rule("unauthorized", op, times, probability))

    def latency(
        self,
        seconds: float,
        op: str | None = None,
        *,
        times: int | None = None,
        probability: float = 1.0,
    ) -> None:
        """Delay matching answers by `seconds` (they still succeed unless another rule fires)."""
        self._add(_Rule("latency", op, times, probability, seconds=seconds))

    def _add(self, rule: _Rule) -> None:
        if rule.remaining is not None and rule.remaining < 1:
            raise ValueError("times must be at least 1 (or None for 'until cleared')")
        if not 0.0 < rule.probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        self._rules.append(rule)

    def clear(self, op: str | None = None) -> None:
        """Drop every rule, or only those targeting `op`."""
        self._rules = [r for r in self._rules if op is not None and r.op != op]

    def check(self, op: str) -> Verdict:
        """Consult the rules for one call of `op`; counted rules are used up as they fire."""
        delay = 0.0
        error: ApiError | None = None
        for rule in list(self._rules):
            if rule.op not in (None, op) or (error is not None and rule.kind != "latency"):
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
            if rule.kind == "latency":
                delay += rule.seconds
            elif rule.kind == "throttle":
                error = Throttled("Rate exceeded")
            elif rule.kind == "unauthorized":
                error = Unauthorized("The security token included in the request is invalid.")
            elif rule.status == 503:
                error = DependentServiceFailure("A dependent service failed to respond.")
            else:
                error = InternalFailure("We encountered an internal error. Please try again.")
        return Verdict(delay, error)
