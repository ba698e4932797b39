"""Hostile options, SSH identities and environments for the corpus: names with a newline,
`../` or nothing; bad domains, emails, k3s versions, cron expressions, paths and addresses;
an empty PATH, no HOME. Each is refused before libresh connects anywhere."""

from __future__ import annotations

from typing import Any

from libresh_cli.errors import ExitCode
from tests.hostile.harness import Case
from tests.hostile.inputs import NOWHERE, PUBLIC_KEY, SECRET


def option(case_id: str, argv: tuple[str, ...], names: str, code: int = 2, **kw: Any) -> Case:
    return Case(f"option: {case_id}", argv, names, code=code, **{"env": NOWHERE, **kw})


# -- SSH identities, options and the environment ---------------------------------------------

SSH = ("bootstrap", "ssh", "root@203.0.113.10")
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
LOCAL = ("bootstrap", "local")
S3 = ("backup", "storage", "set", "--s3-endpoint")
S3_KEYS = ("--bucket", "b", "--access-key-id", "k", "--secret-key-file", "{tmp}/key")


def identity(case_id: str, names: str, content: str | bytes | None, mode: int = 0o600) -> Case:
    files = {} if content is None else {"id": content}
    modes = {} if content is None else {"id": mode}
    argv = (*SSH, "-i", "{tmp}/id", "--dry-run")
    return Case(f"ssh identity: {case_id}", argv, names, files, NOWHERE, modes=modes)


IDENTITIES = [
    identity("missing", "--identity {tmp}/id", None),
    identity(
        "readable by others", "--identity {tmp}/id can be read by other users", PRIVATE_KEY, 0o644
    ),
    identity("not UTF-8", "--identity {tmp}/id is not a private key", b"\xff\xfe" * 64),
    identity("a public key", "--identity {tmp}/id is not a private key", PUBLIC_KEY),
    identity("empty", "--identity {tmp}/id is not a private key", ""),
]
OPTIONS = [
    option("name with a newline", ("install", "demo", "--name", "nc2\n"), "--name 'nc2\\n'"),
    option("name ../", ("install", "demo", "--name", "../x"), "--name '../x'"),
    option("name empty", ("install", "demo", "--name", ""), "--name ''"),
    option("name too long", ("install", "demo", "--name", "a" * 64), "--name 'aaaa"),
    option(
        "name reserved",
        ("install", "demo", "--name", "kube-system"),
        "--name 'kube-system' is reserved",
    ),
    option("name in capitals", ("install", "demo", "--name", "Cloud"), "--name 'Cloud'"),
    option("name an option", ("install", "demo", "--name", "-x"), "--name '-x'"),
    option("domain empty", ("install", "demo", "--domain", ""), "--domain ''"),
    option(
        "domain too long", ("install", "demo", "--domain", "a" * 300 + ".org"), "--domain 'aaaa"
    ),
    option(
        "domain a URL",
        ("install", "demo", "--domain", "https://c.example.org"),
        "--domain 'https://",
    ),
    option("output xml", ("-o", "xml", "catalog", "list"), "'xml' is not one of"),
    option("unknown option", ("install", "demo", "--colour", "red"), "--colour"),
    option(
        "catalog missing",
        ("--catalog", "/nonexistent", "catalog", "list"),
        "The catalog /nonexistent is not a directory",
    ),
    option(
        "catalog variable missing",
        ("catalog", "list"),
        "The catalog /nonexistent is not a directory",
        env={**NOWHERE, "LIBRESH_CATALOG_PATH": "/nonexistent"},
    ),
    option(
        "validate nothing there",
        ("catalog", "validate", "/nonexistent"),
        "/nonexistent has no app.yaml",
    ),
    option("email garbage", ("infra", "install", "--email", "nobody"), "--email 'nobody'"),
    option("email empty", ("infra", "install", "--email", ""), "--email ''"),
    option("profile unknown", ("infra", "install", "--profile", "huge"), "Unknown profile 'huge'"),
    option(
        "profile a path",
        ("infra", "install", "--profile", "../../../../etc/x"),
        "Unknown profile '../",
    ),
    option("k3s version short", (*LOCAL, "--k3s-version", "1.34"), "--k3s-version"),
    option(
        "k3s version garbage", (*LOCAL, "--k3s-version", "v1.34.4+k3s1; rm -rf /"), "--k3s-version"
    ),
    option("k3s channel garbage", (*LOCAL, "--k3s-channel", "a b"), "--k3s-channel"),
    option(
        "version and channel",
        (*LOCAL, "--k3s-version", "v1.34.4+k3s1", "--k3s-channel", "stable"),
        "--k3s-version and --k3s-channel",
    ),
    option("context empty", (*LOCAL, "--context", ""), "--context ''"),
    option("context ../../x", (*LOCAL, "--context", "../../x"), "--context '../../x'"),
    option("context too long", (*LOCAL, "--context", "a" * 300), "--context 'aaaa"),
    option("address garbage", (*LOCAL, "--address", "a b"), "--address 'a b'"),
    option("address empty", (*LOCAL, "--address", ""), "--address ''"),
    option(
        "address with a port",
        (*LOCAL, "--address", "203.0.113.10:6443"),
        "--address '203.0.113.10:6443'",
    ),
    option("node name garbage", (*LOCAL, "--node-name", "A_B"), "--node-name"),
    option("storage path relative", (*LOCAL, "--storage-path", "data"), "--storage-path"),
    option("storage path with a newline", (*LOCAL, "--storage-path", "/a\nb"), "--storage-path"),
    option(
        "install script missing",
        (*LOCAL, "--install-script", "/nonexistent"),
        "--install-script /nonexistent",
    ),
    option(
        "airgap and script",
        (*LOCAL, "--airgap", "/tmp", "--install-script", "/tmp"),
        "--install-script and --airgap",
    ),
    option(
        "kubeconfig a folder",
        (*LOCAL, "--kubeconfig", "{tmp}/home", "--merge", "--context", "x"),
        "{tmp}/home",
    ),
    option(
        "ssh destination an option",
        ("bootstrap", "ssh", "-oProxyCommand=touch /tmp/x"),
        "ProxyCommand",
    ),
    option("ssh destination empty", ("bootstrap", "ssh", " "), "' ' is not a destination"),
    option("ssh context ../", (*SSH, "--context", "../../x"), "--context '../../x'"),
    option("lab name ../", ("lab", "up", "--name", "../x"), "--name"),
    option("lab nodes 0", ("lab", "up", "--nodes", "0"), "--nodes"),
    option("lab nodes huge", ("lab", "up", "--nodes", "100000"), "--nodes"),
    option("lab api port 0", ("lab", "up", "--api-port", "0"), "--api-port"),
    option("lab api port huge", ("lab", "up", "--api-port", "70000"), "--api-port"),
    option(
        "cluster upgrade version",
        ("cluster", "upgrade", "--k3s-version", "latest"),
        "--k3s-version 'latest' is not a k3s version",
    ),
    option(
        "cluster scale negative", ("cluster", "scale", "-f", "x.yaml", "--agents", "-1"), "--agents"
    ),
    option(
        "backup storage relative path",
        ("backup", "storage", "set", "--path", "data", "--node", "n1"),
        "--path",
    ),
    Case(
        "option: backup storage ftp",
        (*S3, "ftp://x", *S3_KEYS),
        "--s3-endpoint",
        {"key": SECRET},
        NOWHERE,
        modes={"key": 0o600},
        absent=(SECRET,),
    ),
    option(
        "backup storage no node",
        ("backup", "storage", "set", "--path", "/srv"),
        "--path needs --node",
    ),
    option(
        "backup schedule cron",
        ("backup", "schedule", "cloud", "--cron", "every night"),
        "--cron 'every night'",
    ),
    option(
        "backup schedule keep negative",
        ("backup", "schedule", "cloud", "--cron", "@daily", "--keep-daily", "-1"),
        "--keep-daily",
    ),
    option(
        "restore domain without as",
        ("restore", "cloud", "--domain", "c.example.org"),
        "--domain goes with --as",
    ),
    option("restore as ../", ("restore", "cloud", "--as", "../x"), "--as '../x'"),
    option("services unknown", ("services", "set", "mysql"), "'mysql' is not one of"),
    option(
        "services port huge",
        (
            "services",
            "set",
            "redis",
            "--provider",
            "external",
            "--host",
            "db.example.org",
            "--port",
            "99999",
        ),
        "--port 99999",
    ),
    option(
        "services host garbage",
        ("services", "set", "redis", "--provider", "external", "--host", "a b"),
        "--host",
    ),
    Case(
        "option: secret key file not UTF-8",
        (*S3, "https://s3.example.org", *S3_KEYS),
        "--secret-key-file {tmp}/key",
        {"key": b"\xff\xfe" * 8},
        NOWHERE,
        modes={"key": 0o600},
    ),
    Case(
        "option: secret key file a named pipe",
        (*S3, "https://s3.example.org", *S3_KEYS),
        "--secret-key-file {tmp}/key",
        env=NOWHERE,
        fifos=("key",),
    ),
]
HOME = "{tmp}/home"
ENVIRONMENT = [
    Case(
        "environment: empty PATH",
        (*LOCAL, "--dry-run"),
        "PATH",
        env={"PATH": ""},
        code=ExitCode.PREREQUISITE_MISSING,
    ),
    Case(
        "environment: HOME unset",
        ("list",),
        "No kubeconfig to use",
        env={"HOME": None, "KUBECONFIG": None},
        code=ExitCode.NOT_FOUND,  # the missing kubeconfig, as without HOME's (issue 20, 10)
    ),
    Case(
        "environment: state folder a file",
        ("lab", "status"),
        "No lab named 'default'",
        {"not-a-folder": "x"},
        {"XDG_STATE_HOME": "{tmp}/not-a-folder", "PATH": "/nonexistent"},
        code=ExitCode.NOT_FOUND,
    ),
    Case(
        "environment: KUBECONFIG empty",
        ("list",),
        "No kubeconfig to use",
        env={"KUBECONFIG": "", "PATH": "/nonexistent"},
        code=ExitCode.NOT_FOUND,
    ),
    Case(
        "environment: catalog path of colons",
        ("catalog", "show", "nosuch"),
        "No app named 'nosuch'",
        env={"LIBRESH_CATALOG_PATH": ":::", "PATH": "/nonexistent"},
        code=ExitCode.NOT_FOUND,
    ),
    Case(
        "environment: SSH config unreadable",
        (*SSH, "--dry-run"),
        "{tmp}/nothing",
        env={"LIBRESH_SSH_CONFIG": "{tmp}/nothing"},
    ),
]
CASES = [*IDENTITIES, *OPTIONS, *ENVIRONMENT]
