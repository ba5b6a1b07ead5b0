#!/usr/bin/env bash
# The one-shot GPU check (issue 25): everything a lent GPU machine should measure, in one command that fits in about
# 8 minutes on one H100, writing JSON:
#   1. the CUDA test subset (pytest -m gpu: bf16/fp16 steps, channels_last, torch.compile of G, NCCL with world size
#      1, synthesis on CUDA against the CPU, FID features on CUDA against the CPU);
#   2. bench_model.py for street_512/1024/2048 in bf16 (G forward, training step, TFLOP/s, MFU, peak memory);
#   3. bench_synthesize.py at 2048×1024 (street_2048: frames/s, peak memory for 100 vs 1,000 frames);
#   4. bench_train.py for street_512 (step time, frames/s, MFU).
# Each step runs under its own time limit; a failed step is recorded (its exit code and log) and the others still
# run. The result is OUT/gpu_check.json (device, torch, each step's exit code, seconds and JSON), beside one log per
# step. Copy the figures into benchmarks/RESULTS.md with the device name.
#
#   benchmarks/gpu_check.sh [--out DIR] [--python PY] [--dry-run]
#
# --dry-run runs what a CPU can check of the same plan, in well under a minute: the GPU tests are collected (not
# run), and each benchmark runs its CPU section on the tiny preset. tests/test_gpu_check.py runs it in CI.
set -uo pipefail
cd "$(dirname "$0")/.."
out="benchmarks/out/gpu_check"
py="${PYTHON:-.venv/bin/python}"
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --python) py="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "Error: unknown option '$1' (use --out DIR, --python PY, --dry-run)" >&2; exit 2 ;;
  esac
done
if [ ! -x "$py" ] && ! command -v "$py" >/dev/null 2>&1; then
  echo "Error: no Python at '$py'; run make install first or pass --python PY" >&2
  exit 2
fi
if [ "$dry" = 0 ] && ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "Error: torch sees no CUDA device here; run on a GPU machine, or --dry-run to check the plan on the CPU" >&2
  exit 2
fi
mkdir -p "$out"
: > "$out/steps.jsonl"

step() {  # step NAME LIMIT_S JSON_FILE CMD...: run CMD with a time limit, record its exit code and duration
  local name="$1" limit="$2" json="$3"
  shift 3
  local t0 rc
  t0=$(date +%s)
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  printf '{"step": "%s", "rc": %d, "seconds": %d, "json": "%s", "command": "%s"}\n' \
    "$name" "$rc" "$(( $(date +%s) - t0 ))" "$json" "$*" >> "$out/steps.jsonl"
  echo "gpu_check: $name exit $rc ($(( $(date +%s) - t0 )) s)" >&2
}

if [ "$dry" = 1 ]; then
  step gpu_tests 120 "" "$py" -m pytest -m gpu --collect-only -q -p no:cacheprovider tests/test_gpu.py
  step bench_model 120 "$out/bench_model.json" "$py" benchmarks/bench_model.py --presets tiny --iters tiny=1 \
    --gpu-presets "" --out "$out/bench_model.json"
  step bench_synthesize 120 "$out/bench_synthesize.json" "$py" benchmarks/bench_synthesize.py --presets tiny \
    --frames 2 --gpu-presets "" --out "$out/bench_synthesize.json"
  step bench_train 120 "$out/bench_train.json" "$py" benchmarks/bench_train.py --cpu-presets tiny --gpu-presets "" \
    --steps 1 --out "$out/bench_train.json"
else
  step gpu_tests 150 "" "$py" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py --junitxml "$out/gpu_tests.xml"
  step bench_model 150 "$out/bench_model.json" "$py" benchmarks/bench_model.py --presets "" \
    --gpu-presets street_512,street_1024,street_2048 --precision bf16 --peak-tflops 989 --out "$out/bench_model.json"
  step bench_synthesize 150 "$out/bench_synthesize.json" "$py" benchmarks/bench_synthesize.py --presets "" \
    --gpu-presets street_2048 --mem-frames 100,1000 --peak-tflops 989 --out "$out/bench_synthesize.json"
  step bench_train 90 "$out/bench_train.json" "$py" benchmarks/bench_train.py --cpu-presets "" \
    --gpu-presets street_512 --peak-tflops 989 --out "$out/bench_train.json"
fi

"$py" - "$out" "$dry" <<'PY'
import json, platform, sys
from pathlib import Path

import torch

out, dry = Path(sys.argv[1]), sys.argv[2] == "1"
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
for s in steps:
    path = Path(s.pop("json")) if s.get("json") else None
    s["result"] = json.loads(path.read_text()) if path is not None and path.is_file() else None
    log = out / f"{s['step']}.log"
    s["log_tail"] = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not dry else f"cpu ({platform.processor() or platform.machine()}, dry run)"
report = {"device": device, "dry_run": dry, "torch": torch.__version__, "cuda": torch.version.cuda, "steps": steps,
          "ok": all(s["rc"] == 0 for s in steps)}
(out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps({"device": device, "ok": report["ok"], "steps": {s["step"]: s["rc"] for s in steps}}))
sys.exit(0 if report["ok"] else 1)
PY
