"""Hostile values files, cluster files (with their SSH keys and API tokens) and kubeconfigs
for the corpus. None of them needs a cluster: values are checked against the
app before libresh connects, and a kubeconfig's server is a port nobody listens on (the
documented "cannot reach", exit 3) when the case is about reaching it."""

from __future__ import annotations

from typing import Any

import yaml

from libresh_cli.errors import ExitCode
from tests.hostile.harness import Case
from tests.hostile.packages import TEMPLATE, app_yaml
from tests.unit.test_yaml_bounds import HOSTILE

NOWHERE = {"PATH": "/nonexistent", "KUBECONFIG": None}  # nothing may reach ssh or a cluster
SECRET = "hunter2-secret"

# -- values files: an app of every parameter type, in a catalog of the case's own ----------

TYPED_APP = app_yaml(
    name="typed",
    parameters=[
        {"name": "domain", "type": "domain", "prompt": "Domain"},
        {"name": "size", "type": "integer", "prompt": "Size", "min": 1, "max": 10, "default": 1},
        {"name": "flag", "type": "boolean", "prompt": "Flag", "default": False},
        {"name": "code", "type": "string", "prompt": "Code", "pattern": "[a-z]+", "default": "a"},
        {"name": "mail", "type": "email", "prompt": "Mail", "default": "a@example.org"},
        {"name": "token", "type": "password", "prompt": "Token", "pattern": "[a-z]{20,}"},
    ],
)
TYPED = {"catalog/typed/app.yaml": TYPED_APP, "catalog/typed/templates/a.yaml": TEMPLATE}
INSTALL = ("--catalog", "{tmp}/catalog", "install", "typed")


def values(case_id: str, names: str, text: str | bytes, *extra: str, **fields: Any) -> Case:
    """`install typed -f values.yaml`; `fields` are expected in the message too."""
    return Case(
        f"values: {case_id}",
        (*INSTALL, "-f", "{tmp}/values.yaml", *extra),
        names,
        {**TYPED, "values.yaml": text},
        NOWHERE,
        also=tuple(fields.values()),
        absent=(SECRET,),
    )


def given(case_id: str, names: str, **data: Any) -> Case:
    text = yaml.safe_dump({"domain": "c.example.org", **data})
    return values(
        f"{case_id} {names.partition(': ')[2][:40]}", f"{{tmp}}/values.yaml, field {names}", text
    )


VALUES = [
    values("not YAML", "{tmp}/values.yaml, line 2", "domain: [\n"),
    values("a list", "{tmp}/values.yaml must be a mapping", "- domain\n"),
    values("unknown parameter", "typed has no parameter 'colour'", "colour: red\n"),
    given("size", "size: 'abc' is not valid for size: expected a whole number", size="abc"),
    given("size", "size: 99 is not valid for size: the largest allowed is 10", size=99),
    given("flag", "flag: 'maybe' is not valid for flag", flag="maybe"),
    given(
        "code",
        "code: 'ABC' is not valid for code: it must look like a (it must match [a-z]+)",
        code="ABC",
    ),
    given("code", "code: ['a'] is not valid for code: expected text", code=["a"]),
    given("code", "code: {'a': 1} is not valid for code: expected text", code={"a": 1}),
    given("mail", "mail: 'nobody' is not valid for mail", mail="nobody"),
    given("domain", "domain: 'not a domain' is not valid", domain="not a domain"),
    given("domain", "domain: None is not valid", domain=None),
    given("token", "token: the value is not valid for token: it must match", token=SECRET),
    given("token", "token: the value is not valid for token: expected text", token=[SECRET]),
    values(
        "a secret on the command line",
        "--set token: token is a secret",
        "domain: c.example.org\n",
        "--set",
        f"token={SECRET}",
    ),
    values("--set without =", "--set 'size' is not KEY=VALUE", "{}\n", "--set", "size"),
    values("--set of nothing", "--set '=1' is not KEY=VALUE", "{}\n", "--set", "=1"),
    values("--set unknown", "--set colour: typed has no parameter", "{}\n", "--set", "colour=red"),
    values("--domain bad", "--domain 'a b' is not a domain", "{}\n", "--domain", "a b"),
    Case(
        "values: file missing",
        (*INSTALL, "-f", "{tmp}/nothing.yaml"),
        "Cannot read the values file {tmp}/nothing.yaml",
        TYPED,
        NOWHERE,
    ),
    Case(
        "values: a folder",
        (*INSTALL, "-f", "{tmp}/catalog"),
        "the values file {tmp}/catalog: it is not a regular file",
        TYPED,
        NOWHERE,
    ),
    Case(
        "values: a named pipe",
        (*INSTALL, "-f", "{tmp}/values.yaml"),
        "the values file {tmp}/values.yaml: it is not a regular file",
        TYPED,
        NOWHERE,
        fifos=("values.yaml",),
    ),
    *(values(kind, "{tmp}/values.yaml", content) for kind, content in HOSTILE.items()),
    Case(
        "values: app not in the catalog",
        ("install", "nosuch"),
        "No app named 'nosuch'",
        env=NOWHERE,
        code=4,
    ),
]

# -- cluster files ---------------------------------------------------------------------------

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDbC6wL9t1jXx2wUqTqQv0ZzY3Q7q2m0sQ2lJ9Y9y0cF x\n"
CLUSTER: dict[str, Any] = {
    "name": "coop",
    "locations": ["fsn1"],
    "ssh_key": "{tmp}/id.pub",
    "servers": {"type": "cx22", "count": 3},
    "allowed_networks": {"ssh": ["203.0.113.7/32"], "api": ["203.0.113.7/32"]},
}
CREATE = ("cluster", "create", "-f", "{tmp}/cluster.yaml")
NO_TOKEN = {**NOWHERE, "HCLOUD_TOKEN": None}


def cluster(case_id: str, names: str, text: str | bytes | None = None, **changes: Any) -> Case:
    """`cluster create` of CLUSTER with fields changed (None removes one)."""
    data = {k: v for k, v in {**CLUSTER, **changes}.items() if v is not None}
    content = yaml.safe_dump(data) if text is None else text
    files = {"cluster.yaml": content, "id.pub": PUBLIC_KEY}
    return Case(f"cluster file: {case_id}", CREATE, names, files, NO_TOKEN, also=("cluster.yaml",))


def key(case_id: str, names: str, content: str | bytes, **kw: Any) -> Case:
    case = cluster(f"ssh key {case_id}", names)
    return Case(case.id, case.argv, names, {**case.files, "id.pub": content}, case.env, **kw)


def token(case_id: str, names: str, content: str | bytes, mode: int = 0o600, **env: str) -> Case:
    case = cluster(f"token {case_id}", names)
    files = {**case.files, "token": content}
    argv = (*CREATE, "--token-file", "{tmp}/token")
    return Case(case.id, argv, names, files, {**NO_TOKEN, **env}, modes={"token": mode})


CLUSTER_FILES = [
    cluster("not YAML", "{tmp}/cluster.yaml, line 2", "name: [\n"),
    cluster("a list", "{tmp}/cluster.yaml must be a mapping", "- coop\n"),
    cluster("empty", "{tmp}/cluster.yaml must be a mapping", ""),
    cluster("unknown field", "colour: unknown field", colour="red"),
    cluster("name a number", "name: 5 is not a cluster name", name=5),
    cluster("name in capitals", "name: 'Coop' is not a cluster name", name="Coop"),
    cluster("name missing", "name: None is not a cluster name", name=None),
    cluster("provider aws", "provider: 'aws' is not supported", provider="aws"),
    cluster("locations empty", "locations: give one or more", locations=[]),
    cluster("locations numbers", "locations: give one or more", locations=[1]),
    cluster("location and locations", "location: give either", location="fsn1"),
    cluster("ssh_key missing", "ssh_key: give the path", ssh_key=None),
    cluster(
        "ssh_key nowhere", "ssh_key: cannot read {tmp}/nothing.pub", ssh_key="{tmp}/nothing.pub"
    ),
    cluster("servers a string", "servers: give type and count", servers="cx22"),
    cluster("servers 11", "servers.count: 11 is not a number", servers={"type": "cx", "count": 11}),
    cluster("servers count text", "servers.count: '3'", servers={"type": "cx22", "count": "3"}),
    cluster("servers no type", "servers.type: give a Hetzner server type", servers={"count": 3}),
    cluster(
        "servers unknown",
        "servers.size: unknown field",
        servers={"count": 3, "type": "c", "size": 1},
    ),
    cluster(
        "agents negative", "agents.count: -1 is not a number", agents={"type": "c", "count": -1}
    ),
    cluster("networks missing", "allowed_networks: give the networks", allowed_networks=None),
    cluster(
        "network garbage",
        "allowed_networks.ssh[0]: 'x'",
        allowed_networks={"ssh": ["x"], "api": ["10.0.0.0/8"]},
    ),
    cluster(
        "network host bits",
        "allowed_networks.api[0]",
        allowed_networks={"ssh": ["10.0.0.0/8"], "api": ["10.0.0.1/8"]},
    ),
    cluster(
        "networks unknown",
        "allowed_networks.web: unknown",
        allowed_networks={"ssh": ["10.0.0.0/8"], "api": ["10.0.0.0/8"], "web": []},
    ),
    cluster(
        "private network public",
        "private_network: 8.8.8.0/24 must be a private",
        private_network="8.8.8.0/24",
    ),
    cluster(
        "private network garbage", "private_network: 'x' is not a network", private_network="x"
    ),
    cluster(
        "private network a /30",
        "private_network: 10.0.0.0/30 must be",
        private_network="10.0.0.0/30",
    ),
    cluster("k3s version short", "k3s_version: '1.34' is not a k3s release", k3s_version="1.34"),
    cluster("k3s version a number", "k3s_version: 1.34 is not a k3s release", k3s_version=1.34),
    cluster("image a number", "image: give an image name", image=5),
    cluster("email a number", "email: give the Let's Encrypt contact", email=5),
    cluster("email nobody", "email: 'nobody' is not an email address", email="nobody"),
    Case(
        "cluster file: missing",
        CREATE,
        "Cannot read the cluster file {tmp}/cluster.yaml",
        env=NO_TOKEN,
    ),
    Case(
        "cluster file: a named pipe",
        CREATE,
        "{tmp}/cluster.yaml: it is not a regular file",
        env=NO_TOKEN,
        fifos=("cluster.yaml",),
    ),
    *(cluster(kind, "{tmp}/cluster.yaml", content) for kind, content in HOSTILE.items()),
    key("not UTF-8", "ssh_key: the SSH public key {tmp}/id.pub", b"ssh-ed25519 \xff\xfe\n"),
    key(
        "a private key",
        "ssh_key: {tmp}/id.pub is not an OpenSSH public key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    ),
    key("empty", "ssh_key: {tmp}/id.pub is not an OpenSSH public key", ""),
    Case(
        "cluster file: ssh key a named pipe",
        CREATE,
        "ssh_key: the SSH public key {tmp}/id.pub: it is not a regular file",
        {"cluster.yaml": yaml.safe_dump(CLUSTER)},
        NO_TOKEN,
        fifos=("id.pub",),
    ),
    token(
        "readable by others", "--token-file {tmp}/token can be read by other users", "a" * 64, 0o644
    ),
    token(
        "not a token", "The Hetzner Cloud API token in the file {tmp}/token is not a token", "abc\n"
    ),
    token("not UTF-8", "--token-file {tmp}/token", b"\xff" * 64),
    Case(
        "cluster file: token a folder",
        (*CREATE, "--token-file", "{tmp}/catalog"),
        "--token-file {tmp}/catalog",
        {"cluster.yaml": yaml.safe_dump(CLUSTER), "id.pub": PUBLIC_KEY, "catalog/x": "x"},
        NO_TOKEN,
    ),
    Case(
        "cluster file: token variable not a token",
        CREATE,
        "token in the environment variable HCLOUD_TOKEN is not a token",
        {"cluster.yaml": yaml.safe_dump(CLUSTER), "id.pub": PUBLIC_KEY},
        {**NOWHERE, "HCLOUD_TOKEN": SECRET},
        absent=(SECRET,),
    ),
]

# -- kubeconfigs -----------------------------------------------------------------------------

CLOSED_PORT = "https://127.0.0.1:9"  # discard: nobody listens there
KUBECONFIG: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "lab",
    "clusters": [{"name": "lab", "cluster": {"server": CLOSED_PORT}}],
    "users": [{"name": "lab", "user": {"token": SECRET}}],
    "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
}
LIST = ("--kubeconfig", "{tmp}/kubeconfig", "list")


def kubeconfig(
    case_id: str,
    names: str,
    text: str | bytes | None = None,
    code: int = 2,
    top: dict[str, Any] | None = None,
    **changes: Any,
) -> Case:
    """`list` with KUBECONFIG's fields changed (None removes one; `top` for names that are
    not identifiers)."""
    data = {k: v for k, v in {**KUBECONFIG, **changes, **(top or {})}.items() if v is not None}
    content = yaml.safe_dump(data) if text is None else text
    return Case(
        f"kubeconfig: {case_id}",
        LIST,
        names,
        {"kubeconfig": content},
        NOWHERE,
        code=code,
        absent=(SECRET,),
    )


def cluster_entry(**fields: Any) -> list[dict[str, Any]]:
    return [{"name": "lab", "cluster": {"server": CLOSED_PORT, **fields}}]


def user_entry(**fields: Any) -> list[dict[str, Any]]:
    return [{"name": "lab", "user": fields}]


WHICH = "kubeconfig {tmp}/kubeconfig"
KUBECONFIGS = [
    kubeconfig("not YAML", "{tmp}/kubeconfig, line 2", "clusters: [\n"),
    kubeconfig("a list", WHICH, "- a\n"),
    kubeconfig("a string", WHICH, "hello\n"),
    kubeconfig("empty", WHICH, ""),
    kubeconfig("clusters a string", WHICH, clusters="lab"),
    kubeconfig("contexts a string", WHICH, contexts="lab"),
    kubeconfig("users a list of strings", WHICH, users=["lab"]),
    kubeconfig("cluster a string", WHICH, clusters=[{"name": "lab", "cluster": "x"}]),
    kubeconfig("context a list", WHICH, contexts=[{"name": "lab", "context": []}]),
    kubeconfig("no current context", WHICH, top={"current-context": None}),
    kubeconfig("current context unknown", WHICH, top={"current-context": "nope"}),
    kubeconfig(
        "context names a missing cluster",
        WHICH,
        contexts=[{"name": "lab", "context": {"cluster": "x", "user": "lab"}}],
    ),
    kubeconfig("server missing", WHICH, clusters=[{"name": "lab", "cluster": {}}]),
    kubeconfig(
        "server not a URL", WHICH, clusters=[{"name": "lab", "cluster": {"server": "not a url"}}]
    ),
    kubeconfig("server a number", WHICH, clusters=[{"name": "lab", "cluster": {"server": 5}}]),
    kubeconfig(
        "CA data not base64", WHICH, clusters=cluster_entry(**{"certificate-authority-data": "!!!"})
    ),
    kubeconfig(
        "CA data not a certificate",
        WHICH,
        clusters=cluster_entry(**{"certificate-authority-data": "aGVsbG8="}),
    ),
    kubeconfig(
        "CA file missing",
        WHICH,
        clusters=cluster_entry(**{"certificate-authority": "/nonexistent/ca.crt"}),
    ),
    kubeconfig(
        "client key not base64",
        WHICH,
        users=user_entry(**{"client-certificate-data": "!!!", "client-key-data": "!!!"}),
    ),
    kubeconfig(
        "client key not a key",
        WHICH,
        users=user_entry(**{"client-certificate-data": "aGVsbG8=", "client-key-data": "aGVsbG8="}),
    ),
    kubeconfig("token file missing", WHICH, users=user_entry(tokenFile="/nonexistent/token")),
    kubeconfig("token a list", WHICH, users=user_entry(token=[SECRET])),
    kubeconfig(
        "exec command missing",
        "127.0.0.1:9",
        code=ExitCode.UNREACHABLE,
        users=user_entry(
            exec={"apiVersion": "client.authentication.k8s.io/v1", "command": "/nonexistent/plugin"}
        ),
    ),
    kubeconfig("exec a string", WHICH, users=user_entry(exec="x")),
    kubeconfig("server nobody listens on", "127.0.0.1:9", code=ExitCode.UNREACHABLE),
    *(kubeconfig(kind, "{tmp}/kubeconfig", content) for kind, content in HOSTILE.items()),
    Case(
        "kubeconfig: missing",
        LIST,
        "The kubeconfig {tmp}/kubeconfig does not exist",
        env=NOWHERE,
        code=ExitCode.NOT_FOUND,
    ),
    # However the missing kubeconfig is named, one message and one exit code (issue 20, 10).
    Case(
        "kubeconfig: KUBECONFIG names a missing file",
        ("list",),
        "KUBECONFIG names {tmp}/nope, and no such file exists",
        env={**NOWHERE, "KUBECONFIG": "{tmp}/nope"},
        code=ExitCode.NOT_FOUND,
    ),
    Case(
        "kubeconfig: none at all",
        ("list",),
        "there is no ~/.kube/config and KUBECONFIG is not set",
        env=NOWHERE,
        code=ExitCode.NOT_FOUND,
    ),
    Case(
        "kubeconfig: a named pipe",
        LIST,
        "{tmp}/kubeconfig",
        env=NOWHERE,
        fifos=("kubeconfig",),
        code=ExitCode.NOT_FOUND,
    ),
    Case(
        "kubeconfig: an unknown --context",
        ("--kubeconfig", "{tmp}/kubeconfig", "--context", "../../x", "list"),
        "The context '../../x' is not in kubeconfig {tmp}/kubeconfig",
        {"kubeconfig": yaml.safe_dump(KUBECONFIG)},
        NOWHERE,
    ),
    Case(
        "kubeconfig: a bad file in KUBECONFIG",
        ("list",),
        "{tmp}/bad.yaml",
        {"good.yaml": yaml.safe_dump(KUBECONFIG), "bad.yaml": "- a\n"},
        {"PATH": "/nonexistent", "KUBECONFIG": "{tmp}/good.yaml:{tmp}/bad.yaml"},
    ),
]

CASES = [*VALUES, *CLUSTER_FILES, *KUBECONFIGS]
