"""When a request to the Kubernetes API is worth sending again, and after how long.

An upgrade's hook can run for half an hour; k3s restarting its API server in that time (an
upgrade of k3s itself, a node reboot, etcd electing a new leader) must not fail the step, nor
the rollback after it. So a request is sent again, with a growing pause, when the server says
it is busy or briefly broken (429, 500, 502, 503, 504) or the connection fails, within a
bounded total time:

- only requests that may safely run twice are repeated after the server could have acted on
  them: GET, HEAD, PUT, DELETE and PATCH (libresh's PATCHes are server-side applies and scale
  changes, which give the same result twice); a POST is sent again only when it cannot have
  arrived (the connection was refused or never opened) or the server turned it away (429);
- a 429's Retry-After is followed, up to a cap;
- until the server has answered this client once, a failed connection is reported at once: it
  is far more often a wrong address or a stopped cluster than a restart, and people should not
  wait two minutes to learn that.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})
BUSY = 429
BRIEFLY_BROKEN = frozenset({500, 502, 503, 504})
# The request never reached the server: safe to send again whatever its method.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    budget: float = 120.0  # seconds from the first failure to the last attempt
    first_pause: float = 0.5
    max_pause: float = 8.0
    max_retry_after: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def schedule(self, *, answered: bool) -> Attempts:
        return Attempts(self, answered)


NO_RETRY = RetryPolicy(budget=0.0)


class Attempts:
    """The retries of one request: each failure asks for the pause before the next attempt,
    None when there is to be none."""

    def __init__(self, policy: RetryPolicy, answered: bool) -> None:
        self.policy = policy
        self.answered = answered
        self.deadline: float | None = None
        self.pause = policy.first_pause

    def after_transport_error(self, method: str, error: httpx.TransportError) -> float | None:
        if not self.answered:
            return None
        if not (method in IDEMPOTENT or isinstance(error, NOT_SENT)):
            return None
        return self._next()

    def after_status(self, method: str, response: httpx.Response) -> float | None:
        status = response.status_code
        if status == BUSY:
            return self._next(_retry_after(response, self.policy.max_retry_after))
        if status in BRIEFLY_BROKEN and method in IDEMPOTENT:
            return self._next()
        return None

    def _next(self, wanted: float | None = None) -> float | None:
        now = self.policy.clock()
        if self.deadline is None:
            self.deadline = now + self.policy.budget
        left = self.deadline - now
        if left <= 0:
            return None
        # Jitter, so that several clients stopped by one restart do not return together.
        pause = wanted if wanted is not None else self.pause * random.uniform(0.8, 1.2)  # noqa: S311
        self.pause = min(self.pause * 2, self.policy.max_pause)
        return min(pause, left)


def _retry_after(response: httpx.Response, cap: float) -> float | None:
    """Retry-After in seconds (the API server sends whole seconds), None if absent or odd."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, min(seconds, cap))
