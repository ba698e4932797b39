"""The hostile-input corpus (issue 14, finding 16): every case runs as the real `libresh`
command and must be refused with the documented exit code, a message naming the file, field
or option, no traceback, within the time limit and the memory cap (harness.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile import harness, inputs, options, packages
from tests.hostile.harness import Case, Outcome

CORPUS: list[Case] = [*packages.CASES, *inputs.CASES, *options.CASES]
MINIMUM_KINDS = 147  # the kinds of hostile input listed by issue 14, finding 16
WALL_SECONDS = 240  # a guard against a systematic slowdown: ~85 s on two idle cores


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    started = time.monotonic()
    results = harness.run_all(CORPUS, tmp_path_factory.mktemp("hostile"))
    harness.WALL_SECONDS = time.monotonic() - started
    yield results


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_hostile_input_is_refused_cleanly(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.id]
    assert not outcome.problems(), f"{outcome.problems()}\n{harness.describe(outcome)}"


def test_the_corpus_covers_every_kind(outcomes: dict[str, Outcome]) -> None:
    assert len(CORPUS) >= MINIMUM_KINDS
    assert harness.WALL_SECONDS < WALL_SECONDS, f"the corpus took {harness.WALL_SECONDS:.0f} s"


def test_a_harmless_command_passes_the_harness(tmp_path: Path) -> None:
    """The limits leave libresh room to work: under the same cap and clock, `catalog
    validate` of the shipped apps succeeds (so a refusal is the input's doing)."""
    root = Path(__file__).resolve().parents[2]
    argv = (
        "catalog",
        "validate",
        str(root / "apps" / "nextcloud"),
        str(root / "apps" / "vaultwarden"),
    )
    outcome = harness.run(Case("harmless", argv, "is valid", code=0), tmp_path)
    assert outcome.code == 0 and not outcome.missing(), harness.describe(outcome)
