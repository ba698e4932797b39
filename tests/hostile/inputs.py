"""Hostile values files, cluster files, kubeconfigs, SSH keys, options and environments."""

from __future__ import annotations

from tests.hostile.harness import Case

CASES: list[Case] = []
