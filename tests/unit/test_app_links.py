"""Apps that use other apps (app.yaml `uses`, libresh_cli/apps/links.py) and the catalog's
list and search (libresh_cli/apps/catalog_search.py), without a cluster: the schema, the
choice of an instance, what each side renders, and what `catalog list` shows."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

from libresh_cli.apps import links
from libresh_cli.apps.catalog import builtin_catalog
from libresh_cli.apps.catalog_search import (
    entry_of,
    memory_requested,
    quantity_bytes,
    search,
    supports_sso,
)
from libresh_cli.apps.instance import Instance
from libresh_cli.apps.model import Parameter
from libresh_cli.apps.record import InstanceRecord, Status
from libresh_cli.apps.render import generated_secret_keys, render
from libresh_cli.apps.schema import CatalogInvalidError, load_app
from libresh_cli.cli.main import _run
from libresh_cli.errors import BadInputError, ConflictError, NotFoundError

CATALOG = builtin_catalog()


def record(name: str, app: str, domain: str, uses: dict[str, str] | None = None) -> InstanceRecord:
    return InstanceRecord(
        name, app, "1.0.0", {"domain": domain}, [], [], Status.INSTALLED, uses=uses or {}
    )


class RecordsOnly:
    """A stand-in for libresh's KubeClient adapter that answers the one call links.py makes
    to find instances: the list of record ConfigMaps."""

    def __init__(self, *records: InstanceRecord) -> None:
        self.records = records

    def list(self, api_version: str, kind: str, label_selector: str = "") -> list[Any]:
        assert (api_version, kind) == ("v1", "ConfigMap") and "record" in label_selector
        return [r.to_configmap() for r in self.records]


def RecordsOnlyKube(*records: InstanceRecord) -> Any:
    """A RecordsOnly typed as Any: it stands where links.py expects the KubeClient."""
    return RecordsOnly(*records)


def write_app(folder: Path, extra: str) -> Path:
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "x.yaml").write_text("")
    (folder / "app.yaml").write_text(
        f"schema_version: 1\nname: {folder.name}\ndescription: d\n"
        "versions:\n  - {version: 1.0.0, image: example.org/d:1.0.0}\n" + extra
    )
    return folder


# -- the schema ----------------------------------------------------------------------------


def test_nextcloud_uses_an_optional_office_server_filled_by_collabora() -> None:
    nextcloud = load_app(CATALOG / "nextcloud")
    assert [(u.role, u.apps, u.optional) for u in nextcloud.uses] == [
        ("office", ("collabora",), True)
    ]
    assert load_app(CATALOG / "collabora").uses == ()


def test_a_wrong_uses_is_reported_field_by_field(tmp_path: Path) -> None:
    folder = write_app(
        tmp_path / "bad",
        "uses:\n  Office: {apps: [collabora]}\n  files: {apps: []}\n"
        "  chat: {apps: [Bad_Name], optional: maybe, extra: 1}\n  mail: {}\n",
    )
    with pytest.raises(CatalogInvalidError) as caught:
        load_app(folder)
    text = str(caught.value)
    assert "uses.Office: 'Office' is not a role name" in text
    assert "uses.files.apps: at least one app is needed" in text
    assert "uses.chat.apps[0]: 'Bad_Name' is not an app name" in text
    assert "uses.chat.optional: expected true or false" in text
    assert "uses.chat.extra: unknown field" in text
    assert "uses.mail.apps: missing (required)" in text
    assert "apps/README.md#apps-that-use-other-apps" in text


def test_category_is_one_lowercase_word_and_other_when_absent(tmp_path: Path) -> None:
    assert load_app(write_app(tmp_path / "plain", "")).category == "other"
    with pytest.raises(CatalogInvalidError, match=r"category: 'Office Suite' is not one lowercase"):
        load_app(write_app(tmp_path / "spaced", "category: Office Suite\n"))


def test_every_shipped_app_has_a_category() -> None:
    for app_file in sorted(CATALOG.glob("*/app.yaml")):
        assert load_app(app_file.parent).category != "other", app_file


# -- choosing the instance -----------------------------------------------------------------


NEXTCLOUD = load_app(CATALOG / "nextcloud")


def choose(kube: Any, given: dict[str, str] | None = None, **kwargs: Any) -> dict[str, str]:
    return links.choose_uses(
        kube, NEXTCLOUD, "cloud", given or {}, kwargs.pop("kept", {}), **kwargs
    )


def test_the_only_collabora_is_chosen_and_another_app_is_not() -> None:
    kube = RecordsOnlyKube(
        record("office", "collabora", "o.example.org"), record("pw", "vaultwarden", "p.example.org")
    )
    assert choose(kube, ask=None) == {"office": "office"}


def test_several_are_asked_about_at_a_terminal_and_refused_without_one() -> None:
    kube = RecordsOnlyKube(
        record("office1", "collabora", "o1.example.org"),
        record("office2", "collabora", "o2.example.org"),
    )
    asked: list[Parameter] = []

    def ask(parameter: Parameter) -> str:
        asked.append(parameter)
        return "office2"

    assert choose(kube, ask=ask) == {"office": "office2"}
    assert asked[0].pattern == "office1|office2" and "office1, office2" in asked[0].prompt
    with pytest.raises(ConflictError, match="office1, office2") as caught:
        choose(kube, ask=None)
    assert "--use office=office1" in (caught.value.hint or "")
    # The choice kept in the record is taken again without asking.
    assert choose(kube, ask=None, kept={"office": "office1"}) == {"office": "office1"}


def test_none_installed_leaves_the_optional_role_empty_and_says_how_to_add_one() -> None:
    warnings: list[str] = []
    assert choose(RecordsOnlyKube(), ask=None, warnings=warnings) == {}
    assert "libresh install collabora --domain" in warnings[0]
    assert "--use office=INSTANCE" in warnings[0]
    required = dataclasses.replace(
        NEXTCLOUD, uses=(dataclasses.replace(NEXTCLOUD.uses[0], optional=False),)
    )
    with pytest.raises(NotFoundError, match="none is installed") as caught:
        links.choose_uses(RecordsOnlyKube(), required, "cloud", {}, {}, None)
    assert "libresh install collabora" in (caught.value.hint or "")


def test_a_given_instance_is_checked() -> None:
    kube = RecordsOnlyKube(
        record("office", "collabora", "o.example.org"), record("pw", "vaultwarden", "p.example.org")
    )
    assert choose(kube, {"office": "office"}, ask=None) == {"office": "office"}
    assert choose(kube, {"office": "none"}, ask=None) == {}
    with pytest.raises(NotFoundError, match="no installed instance is named nope"):
        choose(kube, {"office": "nope"}, ask=None)
    with pytest.raises(BadInputError, match="pw is vaultwarden, and office needs collabora"):
        choose(kube, {"office": "pw"}, ask=None)
    with pytest.raises(BadInputError, match="has no role 'chat'"):
        choose(kube, {"chat": "office"}, ask=None)


def test_use_options_are_role_equals_instance() -> None:
    assert links.parse_use_options(["office=office1", "x="]) == {"office": "office1", "x": ""}
    with pytest.raises(BadInputError, match="not ROLE=INSTANCE"):
        links.parse_use_options(["office1"])


def test_uninstalled_instances_neither_are_chosen_nor_count_as_users() -> None:
    gone = record("old-office", "collabora", "x.example.org")
    gone.status = Status.UNINSTALLED
    gone_user = record("old-cloud", "nextcloud", "y.example.org", {"office": "office"})
    gone_user.status = Status.UNINSTALLED
    kube = RecordsOnlyKube(gone, gone_user, record("office", "collabora", "o.example.org"))
    assert choose(kube, ask=None) == {"office": "office"}
    links.check_not_used(kube, "office")  # the uninstalled user does not hold it
    users = RecordsOnlyKube(
        record("office", "collabora", "o.example.org"),
        record("cloud", "nextcloud", "c.example.org", {"office": "office"}),
    )
    with pytest.raises(
        ConflictError, match=r"office is used by cloud \(nextcloud, as its office\)"
    ):
        links.check_not_used(users, "office")


# -- what each side renders ----------------------------------------------------------------


COLLABORA = load_app(CATALOG / "collabora")
COLLABORA_PARAMS = {
    "domain": "office.example.org",
    "admin_user": "admin",
    "dictionaries": "en_US fr_FR",
    "extra_hosts": "",
}


def collabora_env(links_context: dict[str, Any], **params: Any) -> dict[str, Any]:
    instance = Instance(
        "office",
        COLLABORA,
        COLLABORA.latest,
        {**COLLABORA_PARAMS, **params},
        {"admin_password": "x" * 32},
        links=links_context,
    )
    deployment = next(o for o in render(instance) if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_collabora_allows_the_domains_of_its_users_and_nothing_without_them() -> None:
    records = {
        r.name: r
        for r in (
            record("office", "collabora", "office.example.org"),
            record("cloud", "nextcloud", "cloud.example.org", {"office": "office"}),
            record("copy", "nextcloud", "copy.example.org", {"office": "office"}),
        )
    }
    context = links.links_from(records, "office", {})
    env = collabora_env(context, extra_hosts="https://ext.example.org:443")
    assert [env[f"aliasgroup{i}"] for i in (1, 2, 3)] == [
        "https://cloud.example.org:443",
        "https://copy.example.org:443",
        "https://ext.example.org:443",
    ]
    # Never "first" mode (the first host to ask is trusted): a host that cannot exist.
    alone = collabora_env({})
    assert alone["aliasgroup1"] == "https://no-wopi-host.invalid:443"
    assert "aliasgroup2" not in alone
    assert "--o:ssl.termination=true" in alone["extra_params"]
    assert "--o:security.capabilities=false" in alone["extra_params"]
    assert alone["server_name"] == "office.example.org"
    assert alone["password"] == {
        "secretKeyRef": {"name": "libresh-credentials", "key": "admin_password"}
    }


def test_collabora_runs_without_any_capability_and_keeps_nothing() -> None:
    objects = render(
        Instance("office", COLLABORA, COLLABORA.latest, COLLABORA_PARAMS, {"admin_password": "x"})
    )
    kinds = {o["kind"] for o in objects}
    assert "PersistentVolumeClaim" not in kinds and "StatefulSet" not in kinds
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsUser"] == 1001 and pod["securityContext"]["runAsNonRoot"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/hosting/discovery"
    assert COLLABORA.backup_volumes == () and COLLABORA.backup_databases == ()


def test_nextcloud_gets_the_office_url_and_runs_the_office_link_step() -> None:
    params = {
        "domain": "cloud.example.org",
        "admin_user": "admin",
        "max_upload_size": "1G",
        "storage_size": "1Gi",
    }
    secrets = {
        "admin_password": "x",
        "postgres_password": "x",
        "postgres_superuser_password": "x",
        "redis_password": "x",
    }

    def office_url(context: dict[str, Any]) -> str:
        instance = Instance("cloud", NEXTCLOUD, NEXTCLOUD.latest, params, secrets, links=context)
        deployment = next(
            o
            for o in render(instance)
            if o["kind"] == "Deployment" and o["metadata"]["name"] == "nextcloud"
        )
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        return str(next(e["value"] for e in env if e["name"] == "LIBRESH_OFFICE_URL"))

    used = {
        "uses": {
            "office": {
                "instance": "office",
                "app": "collabora",
                "domain": "office.example.org",
                "url": "https://office.example.org",
            }
        }
    }
    assert office_url(used) == "https://office.example.org"
    assert office_url({}) == ""
    for phase in ("post_install", "post_change", "post_upgrade", "post_restore"):
        assert NEXTCLOUD.hooks[phase][-1].name == "office-link", phase


# -- catalog list and search ---------------------------------------------------------------


def test_memory_is_what_the_running_containers_request() -> None:
    assert quantity_bytes("512Mi") == 512 * 1024**2 and quantity_bytes("1G") == 10**9
    assert quantity_bytes("nonsense") == 0
    sample: list[dict[str, Any]] = [
        {"kind": "Deployment", "spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"resources": {"requests": {"memory": "100Mi"}}}, {"resources": {}}]}}}},
        {"kind": "StatefulSet", "spec": {"template": {"spec": {
            "initContainers": [{"resources": {"requests": {"memory": "1Gi"}}}],
            "containers": [{"resources": {"requests": {"memory": "28Mi"}}}]}}}},
        {"kind": "CronJob", "spec": {}},
    ]  # fmt: skip
    assert memory_requested(sample) == 228 * 1024**2
    # Nextcloud's own containers and its embedded PostgreSQL and Redis.
    secrets = {key: "x" for key in generated_secret_keys(NEXTCLOUD)}
    params: dict[str, Any] = {
        "domain": "a.example.org",
        "admin_user": "a",
        "max_upload_size": "1G",
        "storage_size": "1Gi",
    }
    objects = render(Instance("n", NEXTCLOUD, NEXTCLOUD.latest, params, secrets))
    assert {
        o["metadata"]["name"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")
    } == {
        "nextcloud",
        "postgres",
        "redis",
    }
    assert entry_of(NEXTCLOUD).memory_bytes == memory_requested(objects) > 512 * 1024**2


def test_search_finds_by_name_description_or_category() -> None:
    entries = [entry_of(load_app(CATALOG / n)) for n in ("nextcloud", "collabora", "vaultwarden")]
    assert [e.name for e in search(entries, "OFFICE")] == ["collabora"]
    assert [e.name for e in search(entries, "password")] == ["vaultwarden"]
    assert [e.name for e in search(entries, "files")] == ["nextcloud"]
    assert search(entries, "spreadsheet-of-doom") == []


def test_sso_is_read_from_requires_oidc(tmp_path: Path) -> None:
    # listmonk: an app without requires.oidc (its app.yaml sso_note says why).
    folder = tmp_path / "listmonk"
    shutil.copytree(CATALOG / "listmonk", folder)
    app = load_app(folder)
    assert supports_sso(app) is False
    (folder / "app.yaml").write_text(
        (folder / "app.yaml").read_text().replace("requires:\n", "requires:\n  oidc: {}\n")
    )
    assert supports_sso(app) is True


def test_catalog_search_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert _run(["catalog", "search", "office", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["collabora"]
    assert rows[0]["category"] == "office" and rows[0]["memory_request"] == "512Mi"
    assert rows[0]["sso"] is False
    assert _run(["catalog", "search", "zzz-nothing"]) == 0
    assert "No app matches 'zzz-nothing'" in capsys.readouterr().out


def test_catalog_show_names_the_category_and_the_roles(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert _run(["catalog", "show", "nextcloud", "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["category"] == "files"
    assert shown["uses"] == {"office": {"apps": ["collabora"], "optional": True}}
