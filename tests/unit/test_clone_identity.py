"""restore --as of an app whose identity cannot change (an immutable parameter: GoToSocial's
domain, Synapse's server_name): a copy beside the running source is refused with why and what
to do; with the source gone from this cluster (uninstalled, or another cluster's backup) the
copy keeps the domain its data was made with."""

from __future__ import annotations

import re

import pytest

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.schema import load_app
from libresh_cli.backup.service import _params_for_copy, refuse_second_identity
from libresh_cli.errors import BadInputError

SOCIAL = {"domain": "social.example.org", "registration_open": False, "storage_size": "10Gi"}
MATRIX = {"domain": "matrix.example.org", "server_name": "example.org"}


def test_a_gotosocial_copy_beside_its_source_is_refused_saying_it_can_only_replace_it() -> None:
    app = load_app(builtin_catalog() / "gotosocial")
    with pytest.raises(BadInputError) as refused:
        refuse_second_identity(app, "social", SOCIAL)
    message, hint = str(refused.value), refused.value.hint or ""
    assert "domain 'social.example.org'" in message
    assert "A gotosocial backup can only replace the original." in message
    assert "libresh restore social" in hint and "libresh uninstall social" in hint


def test_a_synapse_copy_is_refused_for_its_server_name() -> None:
    app = load_app(builtin_catalog() / "synapse")
    with pytest.raises(BadInputError, match=re.escape("server_name 'example.org'")):
        refuse_second_identity(app, "chat", MATRIX)


def test_apps_without_a_fixed_identity_may_be_copied() -> None:
    app = load_app(builtin_catalog() / "hedgedoc")
    refuse_second_identity(app, "notes", {"domain": "notes.example.org"})


def test_with_the_source_gone_the_copy_keeps_its_domain() -> None:
    app = load_app(builtin_catalog() / "gotosocial")
    assert _params_for_copy(app, "social", SOCIAL, None)["domain"] == "social.example.org"
    same = _params_for_copy(app, "social", SOCIAL, "social.example.org")
    assert same["domain"] == "social.example.org"
    kept = re.escape("keeps its domain 'social.example.org'")
    with pytest.raises(BadInputError, match=kept) as refused:
        _params_for_copy(app, "social", SOCIAL, "other.example.org")
    assert "Leave out --domain" in (refused.value.hint or "")
    # Apps whose domain may change still need one of their own for the copy.
    notes = load_app(builtin_catalog() / "hedgedoc")
    with pytest.raises(BadInputError, match="needs its own domain"):
        _params_for_copy(notes, "notes", {"domain": "notes.example.org"}, None)
