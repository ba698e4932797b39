"""Single sign-on of the catalog's apps (issue 16/17): with the setting single_sign_on on, each
wired app reads the identity provider's values as its NOTES.md says the image does (the client
secret always from the Secret libresh-oidc); with it off (the default) nothing of it is
rendered, so instances installed before are unchanged. Apps that cannot sign in with OIDC say
why in app.yaml, and `catalog show` shows it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.model import SSO_SWITCH
from libresh_cli.apps.render import OIDC_SECRET, generated_secret_keys, render
from libresh_cli.apps.schema import CatalogInvalidError, load_app
from libresh_cli.cli.main import _run
from tests.unit.test_more_apps_templates import container, env, find, pod_of

ISSUER = "https://id.example.org/realms/libresh"
CONNECTION = {
    "issuer": ISSUER,
    "discovery_url": ISSUER + "/.well-known/openid-configuration",
    "client_id": "team",
    "client_secret": "oidc-s3cret-value",
    "scopes": "openid profile email",
    "groups_claim": "groups",
}
SECRET_REF = (OIDC_SECRET, "client_secret")
EXTRA = {
    "synapse": {"domain": "matrix.example.org", "server_name": "example.org"},
}


def render_sso(name: str, single_sign_on: bool, version: str | None = None) -> list[Any]:
    app = load_app(builtin_catalog() / name)
    values = {p.name: p.default for p in app.parameters if not p.secret}
    values |= {"domain": f"{name}.example.org", SSO_SWITCH: single_sign_on}
    values |= EXTRA.get(name, {})
    secrets = {k: "s3cr3t-" + k for k in generated_secret_keys(app)}
    chosen = app.version(version) if version else app.latest
    assert chosen is not None
    oidc = dict(CONNECTION) if single_sign_on else {}
    return render(Instance("team", app, chosen, values, secrets, oidc=oidc))


def all_text(objects: list[Any]) -> str:
    return "\n".join(repr(o) for o in objects)


def app_env(name: str, single_sign_on: bool, workload: str | None = None) -> dict[str, Any]:
    objects = render_sso(name, single_sign_on)
    return env(container(pod_of(objects, workload or name), workload or name))


WIRED = ["gotosocial", "hedgedoc", "paperless", "synapse", "vaultwarden", "vikunja"]
# Pinned versions older than the app's SSO (NOTES.md): the setting renders nothing there.
WITHOUT_SSO = {"vaultwarden": {"1.32.7", "1.33.2", "1.34.1"}}


@pytest.mark.parametrize("name", WIRED)
def test_off_by_default_and_nothing_of_it_rendered_when_off(name: str) -> None:
    app = load_app(builtin_catalog() / name)
    assert app.oidc is not None and app.oidc.optional
    switch = next(p for p in app.parameters if p.name == SSO_SWITCH)
    assert switch.default is False
    for version in app.versions:
        text = all_text(render_sso(name, False, version.version))
        assert OIDC_SECRET not in text and ISSUER not in text and "OIDC" not in text.upper()
        # ...and on, every version that has SSO renders it, the secret never in plain text.
        if version.version in WITHOUT_SSO.get(name, set()):
            continue
        on = render_sso(name, True, version.version)
        assert any(o["kind"] == "Secret" and o["metadata"]["name"] == OIDC_SECRET for o in on)
        plain = all_text([o for o in on if o["kind"] != "Secret"])
        assert ISSUER in plain and CONNECTION["client_secret"] not in plain


def test_gotosocial_reads_gts_oidc_variables() -> None:
    found = app_env("gotosocial", True)
    assert found["GTS_OIDC_ENABLED"] == "true"
    assert found["GTS_OIDC_ISSUER"] == ISSUER
    assert found["GTS_OIDC_CLIENT_ID"] == "team"
    assert found["GTS_OIDC_CLIENT_SECRET"] == SECRET_REF
    # A list: comma-separated in the environment (NOTES.md, "Single sign-on").
    assert found["GTS_OIDC_SCOPES"] == "openid,profile,email"
    assert found["GTS_OIDC_ADMIN_GROUPS"] == "admins"
    app = load_app(builtin_catalog() / "gotosocial")
    assert app.oidc is not None and app.oidc.redirect_paths == ("/auth/callback",)


def test_hedgedoc_reads_cmd_oauth2_variables_with_keycloaks_endpoints() -> None:
    found = app_env("hedgedoc", True)
    assert found["CMD_OAUTH2_AUTHORIZATION_URL"] == ISSUER + "/protocol/openid-connect/auth"
    assert found["CMD_OAUTH2_TOKEN_URL"] == ISSUER + "/protocol/openid-connect/token"
    assert found["CMD_OAUTH2_USER_PROFILE_URL"] == ISSUER + "/protocol/openid-connect/userinfo"
    assert found["CMD_OAUTH2_CLIENT_ID"] == "team"
    assert found["CMD_OAUTH2_CLIENT_SECRET"] == SECRET_REF
    assert found["CMD_OAUTH2_SCOPE"] == "openid profile email"
    assert found["CMD_OAUTH2_USER_PROFILE_ID_ATTR"] == "sub"
    assert found["CMD_OAUTH2_USER_PROFILE_USERNAME_ATTR"] == "preferred_username"
    assert found["CMD_OAUTH2_USER_PROFILE_EMAIL_ATTR"] == "email"
    app = load_app(builtin_catalog() / "hedgedoc")
    assert app.oidc is not None and app.oidc.redirect_paths == ("/auth/oauth2/callback",)


def test_synapse_has_one_oidc_provider_with_the_secret_from_a_file() -> None:
    objects = render_sso("synapse", True)
    config = yaml.safe_load(find(objects, "ConfigMap", "synapse-config")["data"]["homeserver.yaml"])
    (provider,) = config["oidc_providers"]
    assert provider["issuer"] == ISSUER and provider["client_id"] == "team"
    assert provider["client_secret_path"] == "/oidc/client_secret"
    assert "client_secret" not in provider
    assert provider["scopes"] == ["openid", "profile", "email"]
    mapping = provider["user_mapping_provider"]["config"]
    assert mapping["localpart_template"] == "{{ user.preferred_username }}"
    pod = pod_of(objects, "synapse")
    volume = next(v for v in pod["volumes"] if v["name"] == "oidc")
    assert volume["secret"] == {
        "secretName": OIDC_SECRET, "items": [{"key": "client_secret", "path": "client_secret"}]
    }  # fmt: skip
    mount = next(m for m in container(pod, "synapse")["volumeMounts"] if m["name"] == "oidc")
    assert mount["mountPath"] == "/oidc"
    off = render_sso("synapse", False)
    config = yaml.safe_load(find(off, "ConfigMap", "synapse-config")["data"]["homeserver.yaml"])
    assert "oidc_providers" not in config


def test_vikunja_has_one_openid_provider_keyed_libresh() -> None:
    found = app_env("vikunja", True)
    prefix = "VIKUNJA_AUTH_OPENID_PROVIDERS_LIBRESH_"
    assert found["VIKUNJA_AUTH_OPENID_ENABLED"] == "true"
    assert found[prefix + "AUTHURL"] == ISSUER
    assert found[prefix + "CLIENTID"] == "team"
    assert found[prefix + "CLIENTSECRET"] == SECRET_REF
    assert found[prefix + "SCOPE"] == "openid profile email"
    # Vikunja splits names at '_': the provider's own keys must have none.
    assert all("_" not in name[len(prefix) :] for name in found if name.startswith(prefix))
    app = load_app(builtin_catalog() / "vikunja")
    assert app.oidc is not None and app.oidc.redirect_paths == ("/auth/openid/libresh",)


@pytest.mark.parametrize("version", ["2.20.15", "3.0.5"])
def test_paperless_uses_allauths_openid_connect_with_the_secret_expanded_at_start(
    version: str,
) -> None:
    objects = render_sso("paperless", True, version)
    paperless = container(pod_of(objects, "paperless"), "paperless")
    names = [e["name"] for e in paperless["env"]]
    found = env(paperless)
    assert found["PAPERLESS_APPS"] == "allauth.socialaccount.providers.openid_connect"
    assert found["LIBRESH_OIDC_CLIENT_SECRET"] == SECRET_REF
    # Kubernetes expands $(VAR) only from variables listed before it.
    assert names.index("LIBRESH_OIDC_CLIENT_SECRET") < names.index(
        "PAPERLESS_SOCIALACCOUNT_PROVIDERS"
    )
    providers = json.loads(found["PAPERLESS_SOCIALACCOUNT_PROVIDERS"])
    (entry,) = providers["openid_connect"]["APPS"]
    assert entry["provider_id"] == "libresh" and entry["client_id"] == "team"
    assert entry["secret"] == "$(LIBRESH_OIDC_CLIENT_SECRET)"
    assert entry["settings"] == {"server_url": CONNECTION["discovery_url"]}
    assert found["PAPERLESS_SOCIAL_AUTO_SIGNUP"] == "true"


def test_vaultwarden_reads_sso_variables_from_1_35_and_older_versions_render_none() -> None:
    found = app_env("vaultwarden", True)
    assert found["SSO_ENABLED"] == "true"
    assert found["SSO_AUTHORITY"] == ISSUER
    assert found["SSO_CLIENT_ID"] == "team"
    assert found["SSO_CLIENT_SECRET"] == SECRET_REF
    assert found["SSO_SCOPES"] == "profile email"
    old = render_sso("vaultwarden", True, "1.34.1")
    assert not any(
        n.startswith("SSO_") for n in env(container(pod_of(old, "vaultwarden"), "vaultwarden"))
    )


@pytest.mark.parametrize(
    ("name", "supported", "note_says"),
    [
        ("element", False, "homeserver"),
        ("collabora", False, "no accounts"),
        ("listmonk", False, "database"),
        ("vaultwarden", True, "1.35"),
        ("gotosocial", True, ""),
    ],
)
def test_catalog_show_says_whether_and_why(
    name: str, supported: bool, note_says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["catalog", "show", name, "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["single_sign_on"] == ("optional" if supported else "no")
    note = shown["single_sign_on_note"]
    assert note_says in note and (note_says or note == "")
    assert _run(["catalog", "show", name]) == 0
    table = capsys.readouterr().out
    assert ("single sign-on  optional" if supported else "single sign-on  no") in table
    if note_says:
        assert note_says in table


def test_every_catalog_app_either_signs_in_or_says_why_not() -> None:
    for folder in sorted(builtin_catalog().iterdir()):
        if not (folder / "app.yaml").is_file():
            continue
        app = load_app(folder)
        assert app.oidc is not None or app.sso_note, f"{app.name}: no requires.oidc, no sso_note"


def test_sso_note_must_be_text(tmp_path: Path) -> None:
    target = tmp_path / "element"
    shutil.copytree(builtin_catalog() / "element", target)
    text = (target / "app.yaml").read_text()
    (target / "app.yaml").write_text(text.replace("sso_note: Element", "sso_note: [Element"))
    text = (target / "app.yaml").read_text()
    (target / "app.yaml").write_text(text.replace("in Synapse.\n", "in Synapse.]\n", 1))
    with pytest.raises(CatalogInvalidError, match="sso_note"):
        load_app(target)
