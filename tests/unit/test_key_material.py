"""A kubeconfig's embedded client key does not outlive its loading, and SIGTERM ends libresh
as Ctrl-C does (issue 14, finding 12)."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from libresh_cli.kube.connection import KubeTarget, load_connection

LIBRESH = str(Path(sys.executable).parent / "libresh")


def kubeconfig_with_client_key(folder: Path, server: str) -> tuple[Path, bytes]:
    key, cert = folder / "k.pem", folder / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=t"],
        check=True, capture_output=True,
    )  # fmt: skip
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "t",
        "clusters": [
            {"name": "t", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
        ],
        "users": [
            {
                "name": "t",
                "user": {
                    "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
                    "client-key-data": base64.b64encode(key.read_bytes()).decode(),
                },
            }
        ],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    }
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(data))
    return path, key.read_bytes()


def files_holding(secret: bytes, folder: Path) -> list[Path]:
    found = []
    for path in folder.iterdir():
        try:
            if path.is_file() and secret in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


def test_the_client_key_is_not_left_in_a_temporary_file(tmp_path: Path) -> None:
    kubeconfig, key = kubeconfig_with_client_key(tmp_path, "https://127.0.0.1:1")
    connection = load_connection(KubeTarget(kubeconfig))
    assert connection.ssl_context  # the key is in the SSL context, and only there
    assert files_holding(key, Path(tempfile.gettempdir())) == []
    load_connection(KubeTarget(kubeconfig))  # a second load still works


def test_sigterm_ends_a_waiting_command_like_ctrl_c(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never answers: the command waits
    port = silent.getsockname()[1]
    kubeconfig, key = kubeconfig_with_client_key(tmp_path, f"https://127.0.0.1:{port}")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [LIBRESH, "--kubeconfig", str(kubeconfig), "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    try:
        time.sleep(3)  # loaded, and waiting for the API server
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        silent.close()
    assert process.returncode == 130, err
    assert "Interrupted" in err and "Traceback" not in err
    assert files_holding(key, scratch) == []
