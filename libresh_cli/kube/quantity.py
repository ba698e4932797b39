"""Kubernetes quantities ("64Mi", "1.5Gi", "100m"), read by the kubernetes client's parser."""

from __future__ import annotations

from decimal import Decimal

from kubernetes.utils import parse_quantity


def quantity(text: str | int | float) -> Decimal:
    """The value of a quantity; 0 for one that cannot be read (as a missing request)."""
    try:
        return Decimal(parse_quantity(text))  # type: ignore[no-untyped-call]
    except ValueError:
        return Decimal(0)
