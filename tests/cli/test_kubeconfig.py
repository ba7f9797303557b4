"""kubeconfig files: every master listed for our clients, one current server for kubectl."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from controlplane.kubeconfig import KubeconfigError, load_kubeconfig, write_kubeconfig

SERVERS = ["http://127.0.0.1:25101", "http://127.0.0.1:25102", "http://127.0.0.1:25103"]


def test_round_trip_lists_every_master_current_first(tmp_path) -> None:
    path = write_kubeconfig(tmp_path / "kubeconfig", SERVERS, token="s3cret", ca_data=b"PEM")
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the admin token
    config = load_kubeconfig(path)
    assert config.servers == tuple(SERVERS)
    assert config.token == "s3cret"
    assert config.ca_data == b"PEM"
    assert config.namespace == "default"
    # The per-master contexts put their own master first and still know the others.
    other = load_kubeconfig(path, context="edgeplane-m3")
    assert other.servers[0] == SERVERS[2]
    assert set(other.servers) == set(SERVERS)


@pytest.mark.kubectl
def test_kubectl_accepts_the_file_and_uses_the_first_master(tmp_path) -> None:
    path = write_kubeconfig(tmp_path / "kubeconfig", SERVERS, token="s3cret")
    out = subprocess.run(
        [shutil.which("kubectl") or "kubectl", "--kubeconfig", str(path), "config", "view",
         "--minify", "-o", "json"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    view = json.loads(out.stdout)
    assert view["clusters"][0]["cluster"]["server"] == SERVERS[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2", "not valid YAML"),
        ("- a list", "not a kubeconfig"),
        ("apiVersion: v1\nkind: Config\n", "no current-context"),
        ("current-context: x\ncontexts: []\n", "no context named 'x'"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path, text: str, expected: str) -> None:
    path = tmp_path / "kc"
    path.write_text(text)
    with pytest.raises(KubeconfigError, match=expected):
        load_kubeconfig(path)


def test_missing_file_points_at_the_flag(tmp_path) -> None:
    with pytest.raises(KubeconfigError, match="--kubeconfig"):
        load_kubeconfig(tmp_path / "absent")
