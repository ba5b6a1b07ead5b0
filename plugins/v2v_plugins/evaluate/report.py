"""``v2v eval all``: every registered metric whose inputs and weights are available, in one report.

:func:`evaluate_all` runs the metrics one after another (a metric whose weights are not found, or whose inputs do
not fit, e.g. pose_consistency without conditioning pose, is *skipped* with the reason; an unexpected exception is
recorded as *failed* and the others still run) and writes into OUT:

* ``report.json``: per metric the full :meth:`MetricResult.to_dict` (value, per sequence, per frame, protocol,
  weights with sha256, versions, warnings), plus what was skipped or failed and why, the inputs, device, options,
  library versions and every weights file used with its hash;
* ``report.md``: the same in readable form (summary table, protocols, weights, versions, skipped metrics);
* PNG plots (matplotlib, when installed): ``warp_error_per_frame.png`` (per sequence),
  ``seg_per_class_iou.png``, ``pose_pck_per_frame.png``, and with ``horizons=True`` ``per_horizon.png``: the mean over
  sequences of each per-frame metric against the frame index (the prediction horizon when the fake is a
  prediction from ``v2v predict``).

Options reach individual metrics as ``{"seg_consistency": {"backend": "dataset:GT"}}`` (``--set
seg_consistency.backend=dataset:GT`` on the command line).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from v2vcli.errors import ConfigError, V2VError, WeightsError, did_you_mean
from v2vcli.io.files import atomic_path, write_bytes_atomic, write_json
from v2vcli.io.inputs import resolve_input
from v2vcli.metric import compute_metric
from v2vcli.registry import get_registry
from v2vcli.runtime import device_name, json_safe, library_versions
from v2vcli.weights import resolve_weights, weights_entries

__all__ = ["evaluate_all", "weights_available", "write_markdown", "write_plots", "REPORT_FILES"]

log = logging.getLogger(__name__)

REPORT_FILES = ("report.json", "report.md")
# Per-frame metrics whose curve against the frame index is meaningful as a prediction horizon.
HORIZON_METRICS = ("psnr", "ssim", "lpips", "warp_error", "pose_consistency", "seg_consistency")


def weights_available(names: Sequence[str], explicit: Mapping[str, str]) -> str | None:
    """None when every weights name is given or found locally (no download), else the reason."""
    for name in names:
        if name in explicit:
            continue
        try:
            resolve_weights(name, allow_download=False, verify=False)
        except WeightsError as exc:
            return f"weights '{name}' not available ({exc})"
    return None


def evaluate_all(real: str | Path, fake: str | Path, out: str | Path, *, metrics: Sequence[str] | None = None,
                 skip: Sequence[str] = (), options: Mapping[str, Mapping[str, Any]] | None = None,
                 weights: Mapping[str, str] | None = None, verify_weights: bool = True, device: str = "auto",
                 horizons: bool = False, plots: bool = True, resize_fake: bool = False) -> dict[str, Any]:
    """Run the metrics, write the report files into ``out`` and return the report (the content of report.json).

    ``resize_fake`` sets the ``resize_fake`` option of every metric that has one (``eval psnr --resize-fake``: fake
    frames resized to the real size), unless ``options`` sets it for that metric.
    """
    resolve_input(real, "--real")  # a missing or unreadable input is an error, not a report of skipped metrics
    resolve_input(fake, "--fake")
    registered = {name: reg.obj for name, reg in get_registry().metrics().items()}
    wanted = [m.replace("-", "_") for m in (metrics or sorted(registered))]
    skip_set = {m.replace("-", "_") for m in skip}
    opts: dict[str, dict[str, Any]] = {k.replace("-", "_"): dict(v) for k, v in (options or {}).items()}
    for name in [*wanted, *skip_set, *opts]:
        if name not in registered:
            raise ConfigError(f"unknown metric '{name}'{did_you_mean(name, registered)}")
    if resize_fake:
        for name in wanted:
            cfg_cls = getattr(registered[name], "Config", None)
            if dataclasses.is_dataclass(cfg_cls) and "resize_fake" in {f.name for f in dataclasses.fields(cfg_cls)}:
                opts.setdefault(name, {}).setdefault("resize_fake", True)
    weights = dict(weights or {})
    known = weights_entries()
    for wname in weights:
        if wname not in known:
            raise WeightsError(f"--weights {wname}=...: unknown weights name{did_you_mean(wname, known)}")
    device = device_name(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name in wanted:
        if name in skip_set:
            skipped[name] = "skipped on request"
            continue
        cls = registered[name]
        reason = weights_available(tuple(getattr(cls, "weight_names", ())), weights)
        if reason is not None:
            skipped[name] = reason
            log.info("eval all: %s skipped: %s", name, reason)
            continue
        t0 = time.perf_counter()
        try:
            result = compute_metric(name, real, fake, opts.get(name), device=device, weights=weights,
                                    verify_weights=verify_weights)
        except V2VError as exc:
            skipped[name] = str(exc)
            log.info("eval all: %s skipped: %s", name, exc)
            continue
        except Exception as exc:  # one broken metric must not lose the others' results
            failed[name] = f"{type(exc).__name__}: {exc}"
            log.exception("eval all: metric %s failed", name)
            continue
        seconds[name] = round(time.perf_counter() - t0, 3)
        results[name] = result.to_dict()
    used: dict[str, Any] = {}
    for res in results.values():
        used.update(res.get("weights", {}))
    report: dict[str, Any] = {
        "real": str(real), "fake": str(fake), "device": device, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "summary": {name: {"value": res["value"], "higher_is_better": res["higher_is_better"]}
                    for name, res in results.items()},
        "metrics": results, "skipped": skipped, "failed": failed, "seconds": seconds, "options": opts,
        "weights": used, "verify_weights": verify_weights,
        "versions": library_versions("torch", "torchvision", "numpy", "scipy", "opencv-contrib-python", "pillow",
                                     "mediapipe", "matplotlib"),
        "plots": [],
    }
    if plots:
        report["plots"] = write_plots(report, out, horizons=horizons)
    write_json(out / "report.json", json_safe(report))
    write_markdown(report, out / "report.md")
    return report


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_markdown(report: Mapping[str, Any], path: Path) -> None:
    """report.md: summary, protocols, weights (sha256), versions, skipped/failed metrics and plots."""
    lines = ["# v2v evaluation report", "", f"- real: `{report['real']}`", f"- fake: `{report['fake']}`",
             f"- device: {report['device']}", f"- created: {report['created']}", "", "## Results", "",
             "| metric | value | better | sequences | seconds |", "|---|---|---|---|---|"]
    for name, res in report["metrics"].items():
        better = "higher" if res["higher_is_better"] else "lower"
        lines.append(f"| {name} | {_fmt(res['value'])} | {better} | {len(res.get('per_sequence') or {}) or '-'} | "
                     f"{report['seconds'].get(name, '-')} |")
    if not report["metrics"]:
        lines.append("| (none) | | | | |")
    for name, res in report["metrics"].items():
        lines += ["", f"### {name}", ""]
        for key, value in (res.get("per_sequence") or {}).items():
            lines.append(f"- {key}: {_fmt(value)}")
        extra = {k: v for k, v in (res.get("details") or {}).items()
                 if isinstance(v, (int, float, str)) and k not in ("real", "fake")}
        if extra:
            lines.append("- " + "; ".join(f"{k}: {_fmt(v)}" for k, v in extra.items()))
        protocol = {k: v for k, v in (res.get("protocol") or {}).items() if k != "options"}
        lines.append("- protocol: " + "; ".join(f"{k}: {v}" for k, v in protocol.items()))
        if res.get("protocol", {}).get("options"):
            lines.append(f"- options: `{res['protocol']['options']}`")
        for w in res.get("warnings") or []:
            lines.append(f"- warning: {w}")
    lines += ["", "## Weights", "", "| name | sha256 | verified | path |", "|---|---|---|---|"]
    for name, info in report["weights"].items():
        lines.append(f"| {name} | `{info.get('sha256')}` | {info.get('verified')} | `{info.get('path')}` |")
    if not report["weights"]:
        lines.append("| (none used) | | | |")
    lines += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in report["versions"].items()]
    if report["skipped"] or report["failed"]:
        lines += ["", "## Not computed", ""]
        lines += [f"- {k} (skipped): {v}" for k, v in report["skipped"].items()]
        lines += [f"- {k} (FAILED): {v}" for k, v in report["failed"].items()]
    if report["plots"]:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in report["plots"]]
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.nan for v in values]


def write_plots(report: Mapping[str, Any], out: Path, *, horizons: bool = False) -> list[str]:
    """Write the PNG plots the results allow; returns their file names (empty without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: eval all writes no plots (pip install matplotlib)")
        return []

    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        with atomic_path(out / name, suffix=".tmp.png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        written.append(name)

    metrics = report["metrics"]
    for name, ylabel, fname in (("warp_error", "warping error", "warp_error_per_frame.png"),
                                ("pose_consistency", "PCK@0.1", "pose_pck_per_frame.png")):
        if name in metrics and metrics[name].get("per_frame"):
            fig, ax = plt.subplots(figsize=(7, 3.5))
            start = 1 if name == "warp_error" else 0  # warp error t compares frames t-1 and t
            for seq, values in metrics[name]["per_frame"].items():
                ax.plot(range(start, start + len(values)), _finite(values), label=seq, linewidth=1)
            ax.set_xlabel("frame")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{name} per frame")
            if len(metrics[name]["per_frame"]) <= 12:
                ax.legend(fontsize=7)
            fig.tight_layout()
            save(fig, fname)
    ious = (metrics.get("seg_consistency") or {}).get("details", {}).get("per_class_iou")
    if ious:
        fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(ious) + 2), 3.8))
        ax.bar(range(len(ious)), _finite(list(ious.values())), color="tab:blue")
        ax.set_xticks(range(len(ious)), list(ious), rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("IoU")
        ax.set_title(f"seg_consistency per class (mIoU {metrics['seg_consistency']['value']:.3f})")
        fig.tight_layout()
        save(fig, "seg_per_class_iou.png")
    if horizons:
        curves = {}
        for name in HORIZON_METRICS:
            per_frame = (metrics.get(name) or {}).get("per_frame") or {}
            if not per_frame:
                continue
            length = max(len(v) for v in per_frame.values())
            offset = 1 if name == "warp_error" else 0
            means = []
            for t in range(length):
                vals = [x for v in per_frame.values() if t < len(v) for x in _finite([v[t]]) if not math.isnan(x)]
                means.append(sum(vals) / len(vals) if vals else math.nan)
            curves[name] = (list(range(1 + offset, 1 + offset + length)), means)
        if curves:
            fig, axes = plt.subplots(len(curves), 1, figsize=(7, 2.2 * len(curves)), squeeze=False)
            for ax, (name, (xs, ys)) in zip(axes[:, 0], curves.items()):
                ax.plot(xs, ys, marker="o", markersize=3)
                ax.set_ylabel(name)
            axes[-1, 0].set_xlabel("horizon (frames ahead)")
            axes[0, 0].set_title("mean over sequences per horizon")
            fig.tight_layout()
            save(fig, "per_horizon.png")
    return written
