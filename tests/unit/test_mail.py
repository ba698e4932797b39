"""The SMTP relay's pure parts: what `mail set` refuses (naming the option), what a stored
Secret is read back as, the test message, and what apps that require mail are given
(the Secret libresh-mail, Nextcloud's and Vaultwarden's variables as their images read them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.render import generated_secret_keys, render, template_context
from libresh_cli.apps.schema import load_app
from libresh_cli.errors import BadInputError
from libresh_cli.mail.relay import CONNECTION_KEYS, Relay, check, split_address
from libresh_cli.mail.send import probe_message
from tests.unit.test_more_apps_templates import container, env, find, pod_of

GOOD = Relay("smtp.example.org", 587, "starttls", "cloud@example.org", "cloud", "pw")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"host": "smtp example.org"}, "--host 'smtp example.org'"),
        ({"host": "SMTP.example.org"}, "--host"),  # apps compare host names as given
        ({"host": "-smtp.example.org"}, "--host"),
        ({"host": "smtp.example.org\nX: y"}, "--host"),
        ({"port": 0}, "--port 0"),
        ({"port": 65536}, "--port 65536"),
        ({"tls": "ssl"}, "--tls 'ssl'"),
        ({"from_address": "cloud"}, "--from 'cloud'"),
        ({"from_address": "Cloud <cloud@example.org>"}, "--from"),
        ({"from_address": "cloud@localhost"}, "--from"),  # no domain of two labels
        ({"from_address": "cloud@example.org\r\nBcc: x@example.org"}, "--from"),
        ({"user": "a\nb"}, "--user"),
        ({"password": ""}, "--user 'cloud' needs a password"),
        ({"user": ""}, "A password without --user"),
        ({"password": "pw\r\nRSET"}, "one line"),
    ],
)
def test_a_bad_value_is_refused_naming_its_option(changes: dict[str, Any], named: str) -> None:
    fields = {
        "host": GOOD.host,
        "port": GOOD.port,
        "tls": GOOD.tls,
        "from_address": GOOD.from_address,
        "user": GOOD.user,
        "password": GOOD.password,
        **changes,
    }
    with pytest.raises(BadInputError) as error:
        check(Relay(**fields))
    assert named in error.value.message


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "smtp", "mail-1.relay.example.org"])
def test_hosts_and_addresses_that_are_accepted(host: str) -> None:
    relay = Relay(host, 25, "none", "no-reply+cloud@mail.example.org")
    assert check(relay) is relay  # no login: neither user nor password


def test_a_stored_relay_reads_back_as_it_was_set_and_a_hand_edited_one_is_checked() -> None:
    values = GOOD.connection_values()
    assert tuple(values) == CONNECTION_KEYS
    assert Relay.from_values(values) == GOOD
    with pytest.raises(BadInputError, match="lacks password"):
        Relay.from_values({k: v for k, v in values.items() if k != "password"})
    with pytest.raises(BadInputError, match="--tls"):
        Relay.from_values({**values, "tls": "maybe"})
    with pytest.raises(BadInputError, match="not a number"):
        Relay.from_values({**values, "port": "587\n"})


def test_what_show_prints_has_no_password() -> None:
    shown = GOOD.public()
    assert shown["password"] == "(set)" and "pw" not in shown.values()
    assert "pw" not in repr(GOOD)


def test_the_test_message_is_from_the_relay_address_to_the_recipient() -> None:
    message = probe_message("cloud@example.org", "me@example.net")
    assert (message["From"], message["To"]) == ("cloud@example.org", "me@example.net")
    assert message["Message-ID"].endswith("@example.org>")
    assert split_address("a.b+c@mail.example.org") == ("a.b+c", "mail.example.org")


# -- what apps are given ----------------------------------------------------------------------


def _render(app_name: str, relay: Relay | None) -> list[Any]:
    app = load_app(builtin_catalog() / app_name)
    params = {p.name: p.default for p in app.parameters if not p.secret}
    params["domain"] = f"{app_name}.example.org"
    secrets = {key: "s3cr3t" for key in generated_secret_keys(app)}
    mail = relay.connection_values() if relay else {}
    return render(Instance(app_name, app, app.latest, params, secrets, mail=mail))


def _secret_names(objects: list[Any]) -> set[str]:
    return {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}


def test_an_app_that_requires_mail_gets_the_secret_of_the_documented_shape() -> None:
    import base64

    objects = _render("vaultwarden", GOOD)
    secret = find(objects, "Secret", "libresh-mail")
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert values == {
        "host": "smtp.example.org",
        "port": "587",
        "tls": "starttls",
        "user": "cloud",
        "password": "pw",
        "from": "cloud@example.org",
    }
    assert secret["metadata"]["namespace"] == "vaultwarden"


def test_vaultwarden_reads_the_relay_as_its_config_rs_expects() -> None:
    vaultwarden = env(container(pod_of(_render("vaultwarden", GOOD), "vaultwarden"), "vaultwarden"))
    assert {k: v for k, v in vaultwarden.items() if k.startswith("SMTP_")} == {
        "SMTP_HOST": "smtp.example.org",
        "SMTP_PORT": "587",
        "SMTP_SECURITY": "starttls",
        "SMTP_FROM": "cloud@example.org",
        "SMTP_USERNAME": "cloud",
        "SMTP_PASSWORD": ("libresh-mail", "password"),
    }
    implicit = Relay("smtp.example.org", 465, "tls", "cloud@example.org", "cloud", "pw")
    pod = pod_of(_render("vaultwarden", implicit), "vaultwarden")
    assert env(container(pod, "vaultwarden"))["SMTP_SECURITY"] == "force_tls"
    no_login = Relay("10.0.0.25", 25, "none", "cloud@example.org")
    got = env(container(pod_of(_render("vaultwarden", no_login), "vaultwarden"), "vaultwarden"))
    assert got["SMTP_SECURITY"] == "off"
    assert "SMTP_USERNAME" not in got and "SMTP_PASSWORD" not in got  # both or neither


def _nextcloud_env(relay: Relay | None) -> dict[str, Any]:
    objects = _render("nextcloud", relay)
    return env(container(pod_of(objects, "nextcloud"), "nextcloud"))


def test_nextcloud_reads_the_relay_as_its_smtp_config_php_expects() -> None:
    nextcloud = _nextcloud_env(GOOD)
    mail = {k: v for k, v in nextcloud.items() if k.startswith(("SMTP_", "MAIL_"))}
    assert mail == {
        "SMTP_HOST": "smtp.example.org",
        "SMTP_PORT": "587",
        "SMTP_SECURE": "tls",  # STARTTLS, in nextcloud/docker's README
        "SMTP_AUTHTYPE": "LOGIN",
        "SMTP_NAME": "cloud",
        "SMTP_PASSWORD": ("libresh-mail", "password"),
        "MAIL_FROM_ADDRESS": "cloud",  # the local part
        "MAIL_DOMAIN": "example.org",
    }
    implicit = Relay("smtp.example.org", 465, "tls", "cloud@example.org", "cloud", "pw")
    assert _nextcloud_env(implicit)["SMTP_SECURE"] == "ssl"
    plain = _nextcloud_env(Relay("10.0.0.25", 25, "none", "cloud@example.org"))
    assert plain["SMTP_SECURE"] == "" and "SMTP_NAME" not in plain


def test_the_cron_job_sends_with_the_same_relay_as_the_web_pod() -> None:
    objects = _render("nextcloud", GOOD)
    cron = find(objects, "CronJob", "nextcloud-cron")["spec"]["jobTemplate"]["spec"]["template"]
    cron_env = env(cron["spec"]["containers"][0])
    assert cron_env["SMTP_HOST"] == "smtp.example.org"
    assert cron_env["SMTP_PASSWORD"] == ("libresh-mail", "password")


@pytest.mark.parametrize("app_name", ["nextcloud", "vaultwarden"])
def test_without_a_relay_the_app_runs_with_mail_off(app_name: str) -> None:
    objects = _render(app_name, None)
    assert "libresh-mail" not in _secret_names(objects)
    names = {
        e["name"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    }
    assert not {n for n in names if n.startswith(("SMTP_", "MAIL_"))}


def test_the_context_has_the_relay_without_its_password() -> None:
    app = load_app(builtin_catalog() / "vaultwarden")
    instance = Instance("vw", app, app.latest, {"domain": "vw.example.org"}, {}, mail={})
    assert template_context(instance)["mail"] == {"enabled": False}
    with_relay = Instance(
        "vw", app, app.latest, {"domain": "vw.example.org"}, {}, mail=GOOD.connection_values()
    )
    context = template_context(with_relay)["mail"]
    assert context["enabled"] is True and context["port"] == 587
    assert "pw" not in context.values() and "password" not in context


def test_an_app_that_does_not_require_mail_gets_none(tmp_path: Path) -> None:
    """The relay is handed only to the apps that ask for it (HedgeDoc does not)."""
    app = load_app(builtin_catalog() / "hedgedoc")
    assert not app.requires_mail
    params = {p.name: p.default for p in app.parameters if not p.secret}
    params["domain"] = "pad.example.org"
    secrets = {key: "s3cr3t" for key in generated_secret_keys(app)}
    instance = Instance("pad", app, app.latest, params, secrets, mail=GOOD.connection_values())
    assert "libresh-mail" not in _secret_names(render(instance))
    assert template_context(instance)["mail"] == {"enabled": False}


def test_requires_takes_mail_and_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    from libresh_cli.apps.schema import CatalogInvalidError

    source = builtin_catalog() / "vaultwarden"
    copy = tmp_path / "vaultwarden"
    copy.mkdir()
    (copy / "templates").mkdir()
    for template in (source / "templates").glob("*.yaml"):
        (copy / "templates" / template.name).write_text(template.read_text())
    text = (source / "app.yaml").read_text()
    assert "requires:\n  mail: {}\n" in text
    (copy / "app.yaml").write_text(text)
    assert load_app(copy).requires_mail
    (copy / "app.yaml").write_text(text.replace("  mail: {}\n", "  smtp: {}\n"))
    with pytest.raises(CatalogInvalidError, match="requires"):
        load_app(copy)
