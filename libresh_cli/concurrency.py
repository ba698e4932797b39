"""Work done at the same time, every failure reported: nothing is left half-made by an early
exit, and one error names each step that failed (DESIGN.md: "concurrent work reports every
failure, not the first")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from libresh_cli.errors import ExitCode, LibreshError

T = TypeVar("T")


def run_concurrently(
    jobs: Mapping[str, Callable[[], T]], workers: int | None = None
) -> dict[str, T]:
    """Run every job; when some fail, the others still finish (nothing is left half-made by
    an early exit), then one error names every failure."""
    if not jobs:
        return {}
    results: dict[str, T] = {}
    failures: list[tuple[str, BaseException]] = []
    with ThreadPoolExecutor(max_workers=workers or len(jobs)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except Exception as error:  # noqa: BLE001 - gathered, then raised below
                failures.append((name, error))
    if failures:
        raise _combined(failures)
    return results


def _combined(failures: list[tuple[str, BaseException]]) -> BaseException:
    if len(failures) == 1:
        return failures[0][1]
    first = failures[0][1]
    lines = "\n".join(f"- {name}: {error}" for name, error in failures)
    combined = LibreshError(
        f"{len(failures)} steps failed:\n{lines}",
        hint=first.hint if isinstance(first, LibreshError) else None,
    )
    # The first failure's exit code (e.g. 3 for a lost connection) stands for them all.
    combined.exit_code = first.exit_code if isinstance(first, LibreshError) else ExitCode.FAILURE
    return combined
