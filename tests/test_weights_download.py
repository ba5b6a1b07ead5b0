"""Issue 23: `v2v weights download` (progress, sha256, a clear offline error) against a local HTTP server,
`weights list` statuses, and the LPIPS heads taken from an installed lpips package."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from v2vcli.errors import WeightsError
from v2vcli.hookspecs import hookimpl
from v2vcli.weights import WeightsEntry, cache_dir

CONTENT = bytes(range(256)) * 9000  # 2.3 MB: several 1 MiB blocks
DIGEST = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "net.pth").write_bytes(CONTENT)
    (root / "other.pth").write_bytes(CONTENT[:-1] + b"x")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def entries(server: str, register_plugin: Any) -> None:
    port = _closed_port()

    class Plugin:
        __name__ = "dl_weights"

        @hookimpl
        def v2v_register_weights(self, register: Any) -> None:
            register(WeightsEntry("net", "net.pth", sha256=DIGEST, url=f"{server}/net.pth"))
            register(WeightsEntry("tampered", "tampered.pth", sha256=DIGEST, url=f"{server}/other.pth"))
            register(WeightsEntry("gone", "gone.pth", sha256=DIGEST, url=f"{server}/missing.pth"))
            register(WeightsEntry("offline", "offline.pth", sha256=DIGEST, url=f"http://127.0.0.1:{port}/x.pth"))
            register(WeightsEntry("loose", "loose.pth", url=f"{server}/net.pth"))  # no pinned hash

    register_plugin(Plugin())


def test_download_verifies_and_keeps_a_good_copy(cli: Any, entries: None) -> None:
    res = cli("weights", "download", "net", "loose")
    assert res.exit_code == 0, res.output
    assert f"downloaded net: {cache_dir() / 'net.pth'}" in res.output
    assert (cache_dir() / "net.pth").read_bytes() == CONTENT
    assert (cache_dir() / "net.pth").stat().st_mode & 0o777 == 0o666 & ~_umask()
    again = cli("weights", "download", "net")
    assert again.exit_code == 0 and "already there net" in again.output
    rows = {r["name"]: r for r in json.loads(cli("weights", "list", "--json").output)}
    assert rows["net"]["status"] == "verified" and rows["loose"]["status"] == "unverified"
    assert rows["gone"]["status"] == "missing"
    (cache_dir() / "net.pth").write_bytes(b"broken")
    assert {r["name"]: r for r in json.loads(cli("weights", "list", "--json").output)}["net"]["status"] == \
        "bad sha256"
    fixed = cli("weights", "download", "net")  # a bad copy is replaced
    assert fixed.exit_code == 0 and "downloaded net" in fixed.output
    assert (cache_dir() / "net.pth").read_bytes() == CONTENT


def _umask() -> int:
    from v2vcli.io.files import current_umask

    return current_umask()


def test_download_errors_are_one_clear_line(cli: Any, entries: None) -> None:
    res = cli("weights", "download", "tampered")
    assert res.exit_code == 1 and "truncated or a different file" in res.output
    assert not (cache_dir() / "tampered.pth").exists()
    assert not [p for p in cache_dir().iterdir() if p.name.startswith(".download-")]
    res = cli("weights", "download", "gone")
    assert res.exit_code == 1 and "HTTP 404" in res.output
    res = cli("weights", "download", "offline")
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error: cannot reach 127.0.0.1:") and "seems offline" in line and "offline.pth" in line
    assert cli("weights", "download").exit_code == 1
    assert "not both" in cli("weights", "download", "net", "--all").output
    assert "did you mean 'net'" in cli("weights", "download", "nett").output


def test_download_all_takes_every_entry_with_an_address(entries: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from v2vcli import weights as w

    fetched: list[str] = []
    monkeypatch.setattr(w, "download_weights", lambda name, force=False: (fetched.append(name), (Path(name), True))[1])
    from typer.testing import CliRunner

    from v2vcli.cli import build_app

    res = CliRunner().invoke(build_app(), ["weights", "download", "--all"])
    assert res.exit_code == 0, res.output
    assert {"net", "loose", "inception_fid", "vgg16", "lpips_vgg"} <= set(fetched)


def test_lpips_heads_from_the_installed_lpips_package(tmp_path: Path) -> None:
    pytest.importorskip("lpips")
    from v2vcli.weights import bundled_path, resolve_weights, weights_entries

    entry = weights_entries()["lpips_vgg"]
    path = resolve_weights("lpips_vgg", allow_download=False)
    assert path == bundled_path(entry) and path.parts[-3:] == ("weights", "v0.1", "vgg.pth")
    assert "site-packages" in str(path) or "lpips" in str(path)
    # a package copy with another hash is not used
    from dataclasses import replace

    assert bundled_path(replace(entry, sha256="0" * 64)) is None
    # a file in the cache still comes first
    cached = cache_dir() / entry.filename
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(path.read_bytes())
    assert resolve_weights("lpips_vgg", allow_download=False) == cached
