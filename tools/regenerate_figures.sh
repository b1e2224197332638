#!/usr/bin/env bash
# Regenerate the committed results of the tiny testbed from the current code and default zoo:
# figures/ (the default run), figures/study/ (the zoo-to-zoo study) and figures/removal/ (the
# removal study on the default zoo). Each writes its zoo's key and fingerprint beside its
# numbers; the README's table and docs quote figures/results.json and figures/study/study.json
# (tests/test_docs.py holds them to it).
#
#   bash tools/regenerate_figures.sh [all|run|study|removal]
#
# Runs resume from their folders under runs/ (scores are kept there, never committed). About
# 6 min (run), 35 min (study) and 10 min (removal) on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
runs="${POSER_LENS_RUNS:-runs}"

copy_run() {  # copy_run RUN_DIR DEST: the committed part of a run folder
  local src="$1" dest="$2"
  mkdir -p "$dest"
  cp "$src/results.json" "$src/report.md" "$src/config.yaml" "$dest/"
  [ -f "$src/sweep.json" ] && cp "$src/sweep.json" "$dest/"
  return 0
}

if [[ "$what" == all || "$what" == run ]]; then
  poser-lens run --out "$runs/default"
  copy_run "$runs/default" figures
  cp "$runs/default"/figures/*.png "$runs/default"/figures/*.pdf figures/
fi

if [[ "$what" == all || "$what" == study ]]; then
  poser-lens study --zoos 3 --recipes matched,hard:1:3,deep:1:3 --out "$runs/study"
  rm -rf figures/study
  mkdir -p figures/study/figures
  cp "$runs/study"/study.md "$runs/study"/study.json "$runs/study"/study_config.json figures/study/
  cp "$runs/study"/figures/*.png "$runs/study"/figures/*.pdf figures/study/figures/
  for zoo in "$runs/study"/*/; do
    [ -f "$zoo/results.json" ] || continue
    name="$(basename "$zoo")"
    mkdir -p "figures/study/$name"
    cp "$zoo/results.json" "$zoo/report.md" "$zoo/config.yaml" "figures/study/$name/"
  done
fi

if [[ "$what" == all || "$what" == removal ]]; then
  poser-lens remove --out "$runs/removal"
  rm -rf figures/removal
  mkdir -p figures/removal
  cp "$runs/removal/report.md" figures/removal/
  for f in summary.json table.csv curves.csv config.yaml; do
    cp "$runs/removal/removal/$f" figures/removal/
  done
  cp "$runs/removal"/figures/*.png "$runs/removal"/figures/*.pdf figures/removal/
fi
