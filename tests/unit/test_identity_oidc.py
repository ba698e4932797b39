"""`requires: oidc` in app.yaml: what is accepted, what the instance is given, and the
checks that stop an install before the identity provider is asked anything."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.apps.instance import Instance
from libresh_cli.apps.model import ALLOWED_GROUPS, SSO_SWITCH
from libresh_cli.apps.params import GivenValues, check_given
from libresh_cli.apps.render import OIDC_SECRET, render, template_context
from libresh_cli.apps.schema import CatalogInvalidError, load_app
from libresh_cli.apps.sso import client_spec
from libresh_cli.errors import BadInputError
from libresh_cli.identity.directory import check_email, check_group_name, check_username

WIKI = Path(__file__).resolve().parents[1] / "fixtures" / "sso-catalog" / "wiki"
CONNECTION = {
    "issuer": "https://id.example.org/realms/libresh",
    "discovery_url": "https://id.example.org/realms/libresh/.well-known/openid-configuration",
    "client_id": "wiki",
    "client_secret": "s3cret-value",
    "scopes": "openid profile email",
    "groups_claim": "groups",
}


def copy_wiki(tmp_path: Path, requires: str) -> Path:
    target = tmp_path / "wiki"
    shutil.copytree(WIKI, target)
    text = (target / "app.yaml").read_text()
    start = text.index("requires:")
    end = text.index("health:")
    (target / "app.yaml").write_text(text[:start] + requires + "\n" + text[end:])
    return target


def test_the_requirement_is_read_with_its_defaults_and_adds_allowed_groups(tmp_path: Path) -> None:
    app = load_app(copy_wiki(tmp_path, "requires:\n  oidc:\n    redirect_paths: [/cb]\n"))
    assert app.oidc is not None
    assert app.oidc.redirect_paths == ("/cb",)
    assert app.oidc.scopes == ("openid",) and app.oidc.groups_claim == "groups"
    allowed = app.parameter(ALLOWED_GROUPS)
    assert allowed is not None and allowed.default == "admins,members"
    assert app.requires == ()  # not a backing service with a provider of servers


@pytest.mark.parametrize(
    ("requires", "problem"),
    [
        ("  oidc: {}", "requires.oidc.redirect_paths: list at least one path"),
        ("  oidc: {redirect_paths: [cb]}", "'cb' is not a path starting with /"),
        ("  oidc: {redirect_paths: [/cb], scopes: [profile]}", "must include openid"),
        ("  oidc: {redirect_paths: [/cb], groups_claim: 'Bad Claim'}", "is not a claim name"),
        ("  oidc: {redirect_paths: [/cb], client: x}", "requires.oidc.client"),
    ],
)
def test_a_wrong_requirement_names_its_field(tmp_path: Path, requires: str, problem: str) -> None:
    with pytest.raises(CatalogInvalidError) as raised:
        load_app(copy_wiki(tmp_path, f"requires:\n{requires}\n"))
    assert problem in str(raised.value)


def test_the_instance_gets_the_connection_secret_and_templates_no_client_secret() -> None:
    app = load_app(WIKI)
    instance = Instance("wiki", app, app.latest, {"domain": "wiki.example.org"}, oidc=CONNECTION)
    secrets = {o["metadata"]["name"]: o for o in render(instance) if o["kind"] == "Secret"}
    data = {k: base64.b64decode(v).decode() for k, v in secrets[OIDC_SECRET]["data"].items()}
    assert data == CONNECTION
    context = template_context(instance)["oidc"]
    assert context["enabled"] is True and context["secret"] == OIDC_SECRET
    assert context["client_id"] == "wiki" and "s3cret-value" not in str(context)
    deployment = next(o for o in render(instance) if o["kind"] == "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OIDC_ISSUER"]["value"] == CONNECTION["issuer"]
    assert env["OIDC_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == OIDC_SECRET


def test_the_client_follows_the_domain_and_the_allowed_groups() -> None:
    app = load_app(WIKI)
    spec = client_spec(app, "wiki", {"domain": "wiki.example.org", ALLOWED_GROUPS: "a,b-c"})
    assert spec.redirect_uris == ["https://wiki.example.org/oauth/callback"]
    assert spec.allowed_groups == ("a", "b-c") and spec.flow_alias == "libresh-wiki"


def test_an_app_without_a_domain_or_without_oidc_is_refused_before_the_provider() -> None:
    app = load_app(WIKI)
    with pytest.raises(BadInputError, match="--domain"):
        client_spec(app, "wiki", {})
    demo = load_app(Path(__file__).resolve().parents[1] / "fixtures" / "catalog" / "demo")
    with pytest.raises(BadInputError, match="does not support single sign-on"):
        client_spec(demo, "demo", {"domain": "demo.example.org"})


@pytest.mark.parametrize("setting", [SSO_SWITCH, ALLOWED_GROUPS])
def test_single_sign_on_asked_of_an_app_that_cannot_says_why(setting: str) -> None:
    """Collabora has no accounts: --set single_sign_on=true is refused before anything, with
    the app's own reason (app.yaml sso_note), not a bare "no parameter"."""
    collabora = load_app(Path(__file__).resolve().parents[2] / "apps" / "collabora")
    given = GivenValues()
    given.add(setting, "true", f"--set {setting}")
    with pytest.raises(BadInputError) as refused:
        check_given(collabora, given)
    message = str(refused.value)
    assert f"--set {setting}: collabora does not sign in with the identity provider" in message
    assert collabora.sso_note and collabora.sso_note in message
    assert "catalog show collabora" in (refused.value.hint or "")


@pytest.mark.parametrize("name", ["Ada", "-ada", "a b", "", "x" * 65])
def test_user_names_apps_accept(name: str) -> None:
    with pytest.raises(BadInputError, match="User name"):
        check_username(name)


@pytest.mark.parametrize("email", ["ada", "ada@", "@example.org", "ada@example", "a da@x.org"])
def test_emails_are_checked(email: str) -> None:
    with pytest.raises(BadInputError, match="--email"):
        check_email(email)
    assert check_email("ada.l@mail.example.org") == "ada.l@mail.example.org"


def test_group_names_are_checked() -> None:
    with pytest.raises(BadInputError, match="Group name"):
        check_group_name("Admins!")
    assert check_group_name("editors_2") == "editors_2"


def nextcloud(single_sign_on: bool) -> list[dict[str, Any]]:
    app = load_app(Path(__file__).resolve().parents[2] / "apps" / "nextcloud")
    params = {p.name: p.default for p in app.parameters if p.default is not None and not p.secret}
    params |= {"domain": "cloud.example.org", SSO_SWITCH: single_sign_on}
    secrets = {"admin_password": "a" * 24, "postgres_password": "p", "redis_password": "r"}
    oidc = {**CONNECTION, "client_id": "cloud"} if single_sign_on else {}
    return render(Instance("cloud", app, app.latest, params, secrets, oidc=oidc))


def test_nextcloud_without_single_sign_on_renders_as_before() -> None:
    objects = nextcloud(False)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("ConfigMap", "nextcloud-sso") not in names and ("Secret", OIDC_SECRET) not in names
    web = next(
        o for o in objects if o["metadata"]["name"] == "nextcloud" and o["kind"] == "Deployment"
    )
    env = {e["name"] for e in web["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not {name for name in env if "OIDC" in name}


def test_nextcloud_with_single_sign_on_configures_user_oidc_at_every_start() -> None:
    objects = nextcloud(True)
    web = next(
        o for o in objects if o["metadata"]["name"] == "nextcloud" and o["kind"] == "Deployment"
    )
    pod = web["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["LIBRESH_OIDC_DISCOVERY_URL"]["value"] == CONNECTION["discovery_url"]
    assert env["LIBRESH_OIDC_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": OIDC_SECRET, "key": "client_secret"
    }  # fmt: skip
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["libresh-sso"] == "/docker-entrypoint-hooks.d/before-starting"
    script = next(o for o in objects if o["metadata"]["name"] == "nextcloud-sso")["data"]
    text = script["50-libresh-sso.sh"]
    assert "--clientsecret-env=LIBRESH_OIDC_CLIENT_SECRET" in text
    assert CONNECTION["client_secret"] not in text and text.rstrip().endswith("exit 0")
