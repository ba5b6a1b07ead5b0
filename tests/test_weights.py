"""Weights registry: lookup order, sha256 verification, offline errors, `v2v weights` commands."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from v2vcli.errors import WeightsError
from v2vcli.hookspecs import hookimpl
from v2vcli.weights import WeightsEntry, cache_dir, resolve_weights, torch_hub_dir

CONTENT = b"tiny weights made by the test" * 10
DIGEST = hashlib.sha256(CONTENT).hexdigest()


class TinyWeights:
    __name__ = "tiny_weights"

    @hookimpl
    def v2v_register_weights(self, register: Any) -> None:
        register(WeightsEntry("tiny", "tiny-net.pth", sha256=DIGEST, url="https://example.invalid/tiny-net.pth"))
        register(WeightsEntry("tinyprefix", "tiny-prefix.pth", sha256_prefix=DIGEST[:8]))


@pytest.fixture
def tiny(register_plugin: Any) -> None:
    register_plugin(TinyWeights())


def test_lookup_order_explicit_cache_hub(tmp_path: Path, tiny: None) -> None:
    hub = torch_hub_dir() / "tiny-net.pth"
    hub.parent.mkdir(parents=True)
    hub.write_bytes(CONTENT)
    assert resolve_weights("tiny") == hub
    cached = cache_dir() / "tiny-net.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(CONTENT)
    assert resolve_weights("tiny") == cached  # v2v cache before torch hub
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(CONTENT)
    assert resolve_weights("tiny", explicit) == explicit


def test_wrong_hash_and_truncation(tmp_path: Path, tiny: None) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(CONTENT[:-5])
    with pytest.raises(WeightsError, match="truncated or a different file"):
        resolve_weights("tiny", bad)
    prefix_ok = tmp_path / "p.pth"
    prefix_ok.write_bytes(CONTENT)
    assert resolve_weights("tinyprefix", prefix_ok) == prefix_ok


def test_missing_is_offline_error_with_instructions(tiny: None) -> None:
    with pytest.raises(WeightsError) as info:
        resolve_weights("tiny")
    msg = str(info.value)
    assert "tiny-net.pth" in msg and "https://example.invalid/tiny-net.pth" in msg and str(cache_dir()) in msg


def test_download_only_when_allowed(tiny: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import urllib.request

    calls = []

    def fake_urlopen(url: str, timeout: float) -> Any:
        calls.append(url)
        return io.BytesIO(CONTENT)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(WeightsError):
        resolve_weights("tiny")
    assert calls == []
    monkeypatch.setenv("V2V_ALLOW_DOWNLOAD", "1")
    path = resolve_weights("tiny")
    assert calls == ["https://example.invalid/tiny-net.pth"] and path.read_bytes() == CONTENT
    assert not [p for p in os.listdir(path.parent) if p.startswith(".download-")]


def test_unknown_name(tiny: None) -> None:
    with pytest.raises(WeightsError, match="did you mean 'tiny'"):
        resolve_weights("tinyy")


def test_weights_cli(tmp_path: Path, tiny: None, cli: Any) -> None:
    result = cli("weights", "list", "--json")
    assert result.exit_code == 0
    assert {"inception_fid", "vgg19", "vgg16", "raft_large", "raft_small", "tiny"} <= {
        row["name"] for row in __import__("json").loads(result.output)}
    result = cli("weights", "path", "tiny")
    assert result.exit_code == 1 and result.output.startswith("Error: weights 'tiny'")
    good = tmp_path / "t.pth"
    good.write_bytes(CONTENT)
    result = cli("weights", "verify", "tiny", "--path", good)
    assert result.exit_code == 0 and DIGEST in result.output
    good.write_bytes(CONTENT + b"x")
    result = cli("weights", "verify", "tiny", "--path", good)
    assert result.exit_code == 1 and "Error:" in result.output


def test_version_and_help(cli: Any) -> None:
    result = cli("version", "--json")
    assert result.exit_code == 0 and '"v2v"' in result.output
    result = cli("--help")
    assert result.exit_code == 0 and "weights" in result.output
    result = cli("no-such-command")
    assert result.exit_code == 2
