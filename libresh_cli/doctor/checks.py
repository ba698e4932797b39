"""The result of one check, and of all of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

CLUSTER = "cluster"


class Status(StrEnum):
    ok = "ok"
    warn = "warn"  # worth knowing, nothing broken yet: does not change the exit code
    problem = "problem"  # something is broken or about to be: exit code 1
    unchecked = "not checked"  # the check could not run; the detail says why


@dataclass(frozen=True)
class Check:
    check: str  # a short id, e.g. "dns", "backup"; what --ignore names
    subject: str  # "cluster", "node NAME", or an instance's name
    status: Status
    detail: str
    fix: str | None = None  # what to do, for anything but ok

    def to_dict(self, ignored: bool = False) -> dict[str, Any]:
        return {
            "check": self.check,
            "subject": self.subject,
            "status": str(self.status),
            "detail": self.detail,
            "fix": self.fix,
            "ignored": ignored,
        }


def ok(check: str, subject: str, detail: str) -> Check:
    return Check(check, subject, Status.ok, detail)


def warn(check: str, subject: str, detail: str, fix: str) -> Check:
    return Check(check, subject, Status.warn, detail, fix)


def problem(check: str, subject: str, detail: str, fix: str) -> Check:
    return Check(check, subject, Status.problem, detail, fix)


def unchecked(check: str, subject: str, why: str, fix: str | None = None) -> Check:
    """The check could not run: `why` says why (the status already says "not checked")."""
    return Check(check, subject, Status.unchecked, why, fix)


@dataclass
class Report:
    checks: list[Check]
    ignore: frozenset[str] = field(default_factory=frozenset)

    def counted(self) -> Iterable[Check]:
        return (c for c in self.checks if c.check not in self.ignore)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.counted() if c.status is status)

    @property
    def healthy(self) -> bool:
        """True when no check (but those ignored) found a problem: exit code 0."""
        return self.count(Status.problem) == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "problems": self.count(Status.problem),
            "warnings": self.count(Status.warn),
            "not_checked": self.count(Status.unchecked),
            "checks": [c.to_dict(c.check in self.ignore) for c in self.checks],
        }
