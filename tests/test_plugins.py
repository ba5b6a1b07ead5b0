"""Plugin manager, registry facade and `v2v plugins`: hooks, duplicates, blocking, tracing."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from v2vcli.errors import PluginError
from v2vcli.extractor import Extractor
from v2vcli.flow import FlowEstimator
from v2vcli.hookspecs import hookimpl
from v2vcli.plugins import get_plugin_manager
from v2vcli.registry import Registry
from v2vcli.weights import WeightsEntry


class Gray(Extractor):
    kind, backend, outputs = "gray", "luma", ("gray",)

    def process(self, frame: Any, index: int) -> dict[str, Any]:
        return {"gray": frame.mean(axis=2).astype("uint8")}


class ZeroFlow(FlowEstimator):
    name = "zero"

    def backward(self, cur: Any, prev: Any) -> Any:
        import numpy as np

        return np.zeros(cur.shape[:2] + (2,), np.float32)


class SamplePlugin:
    __name__ = "sample"
    events: list[tuple[str, Any]] = []

    @hookimpl
    def v2v_register_extractors(self, register: Any) -> None:
        register("gray", "luma", Gray)

    @hookimpl
    def v2v_register_models(self, register: Any) -> None:
        register("sample_model", dict)

    @hookimpl
    def v2v_register_metrics(self, register: Any) -> None:
        register("sample_metric", dict)

    @hookimpl
    def v2v_register_flow_estimators(self, register: Any) -> None:
        register("zero", ZeroFlow)

    @hookimpl
    def v2v_register_weights(self, register: Any) -> None:
        register(WeightsEntry("sample_net", "sample.pth", sha256="00" * 32))

    @hookimpl
    def v2v_open_video(self, path: str) -> Any:
        return ("sample-reader", path) if path.endswith(".sample") else None

    @hookimpl
    def v2v_on_log(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        self.events.append(("log", (stage, step, metrics)))

    @hookimpl
    def v2v_on_checkpoint(self, path: str, step: int) -> None:
        self.events.append(("checkpoint", (path, step)))

    @hookimpl
    def v2v_register_commands(self, app: Any) -> None:
        @app.command()
        def sample_hello(name: str = "world") -> None:
            """Say hello (sample plugin)."""
            import typer

            typer.echo(f"hello {name}")


def test_every_registration_hook_through_the_registry(register_plugin: Any) -> None:
    registry = register_plugin(SamplePlugin())
    assert registry.extractors()["gray/luma"].plugin == "sample"
    assert registry.get_extractor("gray") is Gray
    assert registry.get_model("sample_model") is dict
    assert registry.get_metric("sample-metric") is dict  # CLI spelling accepted
    assert registry.get_flow_estimator("zero") is ZeroFlow
    assert registry.weights()["sample_net"].obj.filename == "sample.pth"
    assert registry.weights()["vgg19"].plugin == "core"


def test_open_video_and_events(register_plugin: Any) -> None:
    registry = register_plugin(SamplePlugin())
    SamplePlugin.events.clear()
    assert registry.open_video("x.sample") == ("sample-reader", "x.sample")
    registry.on_log("train", 3, {"loss": 1.0})
    registry.on_checkpoint("/tmp/ckpt", 3)
    assert ("log", ("train", 3, {"loss": 1.0})) in SamplePlugin.events
    assert ("checkpoint", ("/tmp/ckpt", 3)) in SamplePlugin.events


def test_register_commands_through_cli(register_plugin: Any, cli: Any) -> None:
    register_plugin(SamplePlugin())
    result = cli("sample-hello", "--name", "v2v")
    assert result.exit_code == 0, result.output
    assert "hello v2v" in result.output


def test_unknown_names_suggest_closest(register_plugin: Any) -> None:
    registry = register_plugin(SamplePlugin())
    with pytest.raises(PluginError, match="did you mean 'gray'"):
        registry.get_extractor("grey")
    with pytest.raises(PluginError, match="did you mean 'sample_model'"):
        registry.get_model("sample_modle")


def test_duplicate_registration_names_both_plugins(register_plugin: Any) -> None:
    class Other:
        __name__ = "other"

        @hookimpl
        def v2v_register_extractors(self, register: Any) -> None:
            register("gray", "luma", Gray)

    registry = register_plugin(SamplePlugin(), Other())
    with pytest.raises(PluginError) as info:
        registry.extractors()
    assert "'sample'" in str(info.value) and "'other'" in str(info.value)


def test_unknown_hook_is_rejected() -> None:
    class Typo:
        __name__ = "typo"

        @hookimpl
        def v2v_register_extractor(self, register: Any) -> None:  # missing "s"
            pass

    with pytest.raises(PluginError, match="v2v_register_extractor"):
        get_plugin_manager([Typo()])


def test_disable_plugins_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("V2V_DISABLE_PLUGINS", "core")
    registry = Registry(get_plugin_manager())
    assert "vgg19" not in registry.weights()
    monkeypatch.setenv("V2V_DISABLE_PLUGINS", "sample")
    registry = Registry(get_plugin_manager([SamplePlugin()]))
    assert "gray/luma" not in registry.extractors()


def test_trace_plugins_env(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("V2V_TRACE_PLUGINS", "1")
    registry = Registry(get_plugin_manager([SamplePlugin()]))
    registry.extractors()
    registry.open_video("a.sample")
    err = capsys.readouterr().err
    assert "v2v_register_extractors" in err and "v2v_open_video" in err


def test_plugins_json_lists_hooks_versions_and_registrations(register_plugin: Any, cli: Any) -> None:
    register_plugin(SamplePlugin())
    result = cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    info = {p["name"]: p for p in json.loads(result.output)}
    assert info["core"]["version"]  # installed distribution version
    assert "v2v_register_weights" in info["core"]["hooks"]
    assert info["sample"]["registered"]["extractors"] == ["gray/luma"]
    assert "v2v_open_video" in info["sample"]["hooks"]


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys; from v2vcli.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'cv2', 'mediapipe') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY=\n" in out.stdout or out.stdout.strip().endswith("HEAVY="), out.stdout + out.stderr
    assert "Usage" in out.stdout
