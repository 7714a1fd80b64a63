#!/usr/bin/env bash
# Issue 10's GPU checks as prepared commands. Each stage finishes inside one 10-minute device
# command: it stops at BUDGET seconds (default 560, setup included), then prints the device, what
# it measured and where the files are, and names what did not finish.
#
#   bash benchmarks/gpu_check.sh bench    # bench_cell.py eager, bench_concurrent.py with 1, 2, 4 cells,
#                                         #   then both again under --compile reduce-overhead (CUDA graphs)
#   bash benchmarks/gpu_check.sh paper    # the paper rows of leaderboards/paper/matrix.toml (clean, errmin
#                                         #   Δs and Δc), 3 cells sharing the GPU
#   bash benchmarks/gpu_check.sh summary  # only the two summaries, from what is in $GPU_CHECK_STATE (no GPU)
#
# Rerunning the same command on the same machine resumes: `bench` skips the steps that finished
# (STATE/*.done), `paper` runs the same resumable sweep, which does only the cells its results.csv
# lacks and reuses every noise crafted so far (the noise cache, $UEBENCH_CACHE, default STATE/cache;
# compiled graphs: $TORCHINDUCTOR_CACHE_DIR, default STATE/inductor). A cell is kept in two
# steps, its noise (cached once crafted) and its row; a cell whose crafting alone, or whose training
# alone, takes longer than one stage can never finish by rerunning (neither keeps a checkpoint).
#
# Where things go: STATE=${GPU_CHECK_STATE:-/tmp/gpu-check} holds what a rerun resumes from (the
# sweep's folder, the caches, the bench JSON); OUT=${OUT:-/tmp/gpu-check} gets what to read and
# keep: the stage's log, summary, JSON and results.csv (copied there when OUT is another folder,
# e.g. a device command's $OUT, emptied before each command). Copy the numbers into
# leaderboards/paper/ and benchmarks/README.md by hand, naming the device.
#
# Exit status: 0 when every step finished, 3 when one did not (the last line says which), 2 for a
# bad stage name.
#
# Data: $UEBENCH_DATA if set, else the packed CIFAR-10 of ../shared/gpu copied into .gpu/ (see the
# developers' guide), unpacked to /tmp/data (once per machine).
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:-bench}
budget=${BUDGET:-560}
state=${GPU_CHECK_STATE:-/tmp/gpu-check}
out=${OUT:-/tmp/gpu-check}
case "$stage" in
  bench|paper|summary) ;;
  *) echo "usage: bash benchmarks/gpu_check.sh bench|paper|summary" >&2; exit 2 ;;
esac
mkdir -p "$state" "$out"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
export UEBENCH_CACHE=${UEBENCH_CACHE:-$state/cache} TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$state/inductor}
log="$out/$stage.log"
sweep=(python3 -m uebench.cli sweep leaderboards/paper/matrix.toml --out "$state/paper" --jobs 3)

device() { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU (nvidia-smi failed)"; }

unfinished=()
# step NAME RESERVE CAP CMD...: CMD under a timeout of at most CAP seconds, leaving RESERVE seconds
# of the budget for what comes after it (and 15 s for a stopped command's exit); not started when
# under 30 s would be left for it. A finished step leaves STATE/NAME.done and is skipped on a rerun.
step() {
  local name=$1 reserve=$2 cap=$3; shift 3
  if [ -e "$state/$name.done" ]; then
    echo "== $name: done in an earlier run (delete $state/$name.done to measure again)"; return
  fi
  local t=$((budget - SECONDS - reserve - 15))
  ((t > cap)) && t=$cap
  if ((t < 30)); then
    echo "== $name: not started: ${t}s would be left of the ${budget}s budget"; unfinished+=("$name (not started)"); return
  fi
  echo "== $name [$(date +%T), ${SECONDS}s in]: up to ${t}s: $*"
  timeout -k 15 "$t" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  case $rc in
    0) touch "$state/$name.done" ;;
    124|137) unfinished+=("$name (stopped at its ${t}s limit)") ;;
    *) unfinished+=("$name (exit $rc)") ;;
  esac
}

bench_summary() {
  echo "== bench summary: $(device)"
  python3 - "$state"/cell-*.json "$state"/concurrent-*.json <<'EOF'
import json, statistics, sys
from pathlib import Path
for p in map(Path, sys.argv[1:]):
    if not p.is_file():
        continue
    d = json.loads(p.read_text())
    s = d.get("settings", {})
    print(f"{p.name}: {d.get('device_name', '?')}, {s.get('victim')} {s.get('precision')}, compile {s.get('compile')}"
          + (" (partial: stopped before the last K)" if d.get("partial") else ""))
    if "training" in d:
        t = d["training"]
        print("  training img/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in t["median"].items())
              + f"; Trainer ÷ bare {t['trainer_over_bare']:.2f}× ({t['images']} images)")
    if "crafting" in d:
        c = d["crafting"]
        rate = statistics.median(c["pass_img_steps_per_s"])
        print(f"  crafting: pass {rate:,.0f} img·step/s (T={c['steps']}, {c['images']} images), "
              f"pass ÷ raw {c['pass_over_raw']:.2f}×")
    for k, r in d.get("concurrent", {}).items():
        if "total_img_per_s" in r:
            each = ", ".join(f"{w['img_per_s']:,.0f}" for w in r["workers"])
            over = r.get("over_k1", float("nan"))
            print(f"  K={k}: total {r['total_img_per_s']:,.0f} img/s, {over:.2f}× K=1 (per worker {each})")
    for key, err in d.get("errors", {}).items():
        print(f"  {key} FAILED: {err[:200]}")
EOF
  if [ "$out" != "$state" ]; then cp "$state"/cell-*.json "$state"/concurrent-*.json "$out"/ 2>/dev/null; fi
  echo "The JSON: $out/{cell,concurrent}-{eager,compiled}.json; the log: $log."
}

paper_summary() {
  local csv="$state/paper/results.csv"
  echo "== paper summary: $(device)"
  python3 - "$csv" "${rows_before:--1}" <<'EOF'
import csv, json, sys
path, before = sys.argv[1], int(sys.argv[2])
try:
    rows = list(csv.DictReader(open(path, newline="")))
except FileNotFoundError:
    rows = []
def num(key):
    try:
        return float(r[key])
    except (KeyError, ValueError):
        return float("nan")
print(f"{len(rows)} row(s) in {path}" + (f", {len(rows) - before} written by this run" if before >= 0 else ""))
for i, r in enumerate(rows):
    form = json.loads(r.get("attack_options") or "{}").get("form", "")
    rate = num("train_size") * num("epochs") / num("train_seconds") if num("train_seconds") > 0 else float("nan")
    mark = "" if before < 0 else "new: " if i >= before else "old: "
    print(f"  {mark}{r['attack']}{' ' + form if form else ''} × {r['defense']}, seed {r['seed']}: "
          f"final_test_acc {num('final_test_acc'):.4f}, train_seconds {num('train_seconds'):.0f} ({rate:,.0f} img/s), "
          f"craft_seconds {num('craft_seconds'):.0f}{' (noise cached)' if r.get('noise_cached') == 'True' else ''}")
EOF
  # what is left, as the sweep itself plans it (a rerun does exactly these cells)
  local plan="$state/paper-plan.json" left
  left=$(timeout 60 "${sweep[@]}" --dry-run --json 2>>"$log" >"$plan" && python3 - "$plan" <<'EOF'
import json, sys
todo = [c for c in json.load(open(sys.argv[1])) if not c["done"]]
for c in todo:
    form = c["attack_options"].get("form", "")
    noise = "" if not c["noise"] else " (noise cached)" if c["noise_cached"] else " (noise still to craft)"
    print(f"  to do: {c['attack']}{' ' + form if form else ''} × {c['defense']}, seed {c['seed']}{noise}")
print(len(todo))
EOF
  )
  if [ -z "$left" ]; then
    echo "(the sweep's dry run failed, see $log: rerun the same command to finish any cell not listed above)"
  elif [ "${left##*$'\n'}" = 0 ]; then
    echo "Every cell of leaderboards/paper/matrix.toml is done."
  else
    [ "$left" != "${left##*$'\n'}" ] && printf '%s\n' "${left%$'\n'*}"
    echo "${left##*$'\n'} cell(s) not finished: rerun the same command (bash benchmarks/gpu_check.sh paper) on this"
    echo "machine to resume: the sweep does only these, reusing the noises already in $UEBENCH_CACHE."
    if [ "${rows_before:-}" ] && [ "$(wc -l <"$csv" 2>/dev/null || echo 0)" = "${lines_before:-}" ] \
      && [ "$(find "$UEBENCH_CACHE" -type f 2>/dev/null | wc -l)" = "${cached_before:-}" ]; then
      echo "This run finished no cell and cached no noise: a cell that cannot craft, or train, within one stage"
      echo "will not finish by rerunning; run it under a longer command (or with fewer --jobs)."
    fi
  fi
  if [ "$out" != "$state" ] && [ -f "$csv" ]; then mkdir -p "$out/paper" && cp "$csv" "$out/paper/"; fi
  echo "The rows: $csv$([ "$out" != "$state" ] && echo " (copied to $out/paper/results.csv)");"
  echo "their curves: $state/paper/curves/; the log: $log."
}

if [ "$stage" = summary ]; then
  bench_summary
  paper_summary
  exit 0
fi
if [ -z "${UEBENCH_DATA:-}" ]; then
  [ -f /tmp/data/cifar10/test.npz ] || python3 .gpu/unpack_cifar.py .gpu/cifar10-q95.npz.xz /tmp/data || exit 1
  export UEBENCH_DATA=/tmp/data
fi
echo "== $stage on $(device); budget ${budget}s; state $state; out $out" | tee -a "$log"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$log"
case "$stage" in
  bench)
    step cell-eager 260 150 python3 benchmarks/bench_cell.py --device cuda --json "$state/cell-eager.json"
    step concurrent-eager 200 200 python3 benchmarks/bench_concurrent.py --device cuda --concurrent 1,2,4 \
      --json "$state/concurrent-eager.json"
    step cell-compiled 20 240 python3 benchmarks/bench_cell.py --device cuda --compile reduce-overhead --skip-crafting \
      --json "$state/cell-compiled.json"
    step concurrent-compiled 20 240 python3 benchmarks/bench_concurrent.py --device cuda --compile reduce-overhead \
      --concurrent 1,2 --json "$state/concurrent-compiled.json"
    bench_summary 2>&1 | tee "$out/bench-summary.txt"
    ;;
  paper)
    csv="$state/paper/results.csv"
    rows_before=$(python3 -c 'import csv, sys; print(len(list(csv.DictReader(open(sys.argv[1])))))' "$csv" 2>/dev/null || echo 0)
    lines_before=$(wc -l <"$csv" 2>/dev/null || echo 0)
    cached_before=$(find "$UEBENCH_CACHE" -type f 2>/dev/null | wc -l)
    step paper 75 10000 "${sweep[@]}"
    rm -f "$state/paper.done"  # the sweep itself knows what is done: a rerun always asks it
    paper_summary 2>&1 | tee "$out/paper-summary.txt"
    ;;
esac
if ((${#unfinished[@]})); then
  echo "Not finished in ${SECONDS}s: ${unfinished[*]}. Rerun the same command on this machine to resume."
  exit 3
fi
echo "All steps finished in ${SECONDS}s."
