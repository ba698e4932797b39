"""The README's test command is the whole setup (tests/system.py): what it says and does when
the machine lacks a Debian package or Go."""

from __future__ import annotations

import os
import shutil

import pytest

from tests import system


def test_as_another_user_it_says_the_one_line_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "PACKAGES", {"restic": lambda: True, "frobnicate": lambda: False})
    monkeypatch.setattr(system, "go_problem", lambda: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert system.prepare() == (
        "The tests need Debian packages that are missing; run: "
        "sudo apt-get install -y -qq frobnicate"
    )


def test_a_machine_with_everything_needs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "PACKAGES", {"restic": lambda: True})
    monkeypatch.setattr(system, "go_problem", lambda: None)
    assert system.prepare() is None


def test_without_go_it_says_where_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert system.go_problem() == (
        "Go 1.24+ is needed to build the lab's control plane: https://go.dev/dl/"
    )


def test_every_package_the_real_parts_need_is_listed() -> None:
    """This machine has them all (CI installs them through this list)."""
    assert system.missing_packages() == []
    assert {"postgresql", "restic", "busybox", "openssh-server", "containerd", "runc"} <= set(
        system.PACKAGES
    )
