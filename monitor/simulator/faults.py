"""Fault injection for the simulator: throttling, quotas, server errors, latency, unauthorized.

Rules are per operation (botocore operation name) or global, fire for the next N calls or with a
probability, and can be changed while the server runs. A seeded random keeps runs repeatable;
every error answered is counted, so a benchmark can report how often it was throttled.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
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
    kind: str  # "throttle" | "quota" | "error" | "unauthorized" | "latency"
    op: str | None
    remaining: int | None
    probability: float
    status: int = 500
    seconds: float = 0.0
    # A quota's token bucket: `rate` tokens a second, at most `burst`, refilled when consulted.
    rate: float = 0.0
    burst: float = 0.0
    tokens: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """What to do with one request: wait `delay` seconds, then answer `error` if set."""

    delay: float = 0.0
    error: ApiError | None = None


class Faults:
    """Mutable set of fault rules consulted once per request."""

    def __init__(self, seed: int = 0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rules: list[_Rule] = []
        self._rng = random.Random(seed)
        self._clock = clock
        # Errors answered because of a rule, by (operation, error code).
        self.errors: Counter[tuple[str, str]] = Counter()

    def throttle(
        self, op: str | None = None, *, times: int | None = None, probability: float = 1.0
    ) -> None:
        """Answer 429 LimitExceededException. With neither `times` nor `probability` < 1,
        every matching call is throttled until `clear()`."""
        self._add(_Rule("throttle", op, times, probability))

    def quota(self, rate: float, *, burst: float | None = None, op: str | None = None) -> None:
        """Enforce an API quota until `clear()`: a token bucket of `rate` calls a second, holding
        at most `burst` (default: `rate`, at least 1), shared by every matching call. A call finding
        no token answers 429 LimitExceededException and takes none, as AWS's own limits do."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        size = burst if burst is not None else max(1.0, rate)
        if size < 1:
            raise ValueError("burst must be at least 1")
        rule = _Rule("quota", op, None, 1.0, rate=rate, burst=size, tokens=size)
        rule.updated = self._clock()
        self._add(rule)

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
            elif rule.kind == "quota":
                error = self._take_token(rule)
            elif rule.kind == "unauthorized":
                error = Unauthorized("The security token included in the request is invalid.")
            elif rule.status == 503:
                error = DependentServiceFailure("A dependent service failed to respond.")
            else:
                error = InternalFailure("We encountered an internal error. Please try again.")
        if error is not None:
            self.errors[op, error.code] += 1
        return Verdict(delay, error)

    def _take_token(self, rule: _Rule) -> ApiError | None:
        now = self._clock()
        rule.tokens = min(rule.burst, rule.tokens + (now - rule.updated) * rule.rate)
        rule.updated = now
        if rule.tokens < 1.0:
            return Throttled("Rate exceeded")
        rule.tokens -= 1.0
        return None

    @property
    def throttled(self) -> int:
        """Calls answered 429 so far, by any rule."""
        return sum(n for (_, code), n in self.errors.items() if code == Throttled.code)
