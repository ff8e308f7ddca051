"""Circuit breaker for one cache cluster or one origin: pure state, the caller passes the
time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CircuitBreaker:
    """closed -> (``failures_to_open`` consecutive failures) -> open -> (``open_seconds``) ->
    half-open: one trial call; success closes, failure opens again."""

    failures_to_open: int
    open_seconds: float
    failures: int = 0
    opened_at: float | None = None
    trial_running: bool = False
    last_error: str = ""

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return "closed"
        if now - self.opened_at < self.open_seconds:
            return "open"
        return "half-open"

    def allow(self, now: float) -> str:
        """Whether a call may go through: "" (no), "closed" (a call while closed) or "trial"
        (the one call of the half-open state).  Truthy when it may; a caller whose call ends
        without a verdict passes it to ``abandon``."""
        st = self.state(now)
        if st == "closed":
            return "closed"
        if st == "open" or self.trial_running:
            return ""
        self.trial_running = True
        return "trial"

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_running = False
        self.last_error = ""

    def failure(self, now: float, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if self.trial_running or self.failures >= self.failures_to_open:
            self.opened_at = now
        self.trial_running = False

    def abandon(self, ticket: str = "trial") -> None:
        """A call allowed by ``allow`` (which gave ``ticket``) ended without a verdict
        (cancelled): if it was the half-open trial, another may run.  A call let through while
        the circuit was closed leaves alone a trial that started since."""
        if ticket == "trial":
            self.trial_running = False
