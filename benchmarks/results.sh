#!/usr/bin/env bash
# Reproduce docs/RESULTS.md: train the default config on genes + 16S (training splits only), then
# evaluate on held-out and unseen data against the strongest classic baselines in the same runs.
# Usage: bash benchmarks/results.sh [SHARED_DATA_DIR] [OUT_DIR]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-results-out}
BIN=$(dirname "$(readlink -f "$0")")/../.venv/bin
mkdir -p "$OUT"
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$(readlink -f "$OUT")/mlflow.db}
export MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0
RERANK=${RERANK:-0}  # N > 0 adds '+align' rows: each method's top N re-ordered by alignment
if [ ! -f "$OUT/shards/manifest.json" ]; then
  "$BIN/shard-fasta" --quiet --label-column class "$DATA/genefam/chimp_data.txt" "$DATA/rrna16s/ten_16s.100.fa.gz" "$OUT/shards"
fi
if [ ! -d "$OUT/runs/results" ]; then
  (cd "$OUT" && "$BIN/python" -m gene_ae.train --data shards --name results --storage runs \
      --register gene-ae-encoder --alias production)
fi
MODEL=${MODEL:-models:/gene-ae-encoder@production}
# Every eval runs the strong baselines beside the model (exact 5-8-mer counts, the same profiles hashed to the
# model's vector size, sourmash k=11/21 at scaled=1 for genes) and exhaustive alignment as the ceiling.
EVAL=("$BIN/gene-ae" eval --model "$MODEL" --rerank "$RERANK")
# unseen species: dog genes (mutation retrieval, leave-one-out family precision)
"${EVAL[@]}" --input "$DATA/genefam/dog_data.txt" --label-column class --out "$OUT/eval_dog" --n-queries 200
# cross-species: each dog gene's nearest chimp gene (chimp sequences were seen in training, their labels never)
"${EVAL[@]}" --input "$DATA/genefam/chimp_data.txt" --label-column class \
    --queries "$DATA/genefam/dog_data.txt" --out "$OUT/eval_cross" --n-queries 50 --align-queries 0
# 16S: leave-one-out genus precision, mutation retrieval
"${EVAL[@]}" --input "$DATA/rrna16s/ten_16s.100.fa.gz" --out "$OUT/eval_16s" --n-queries 200 --align-queries 10
# long genomes: mpox clades (top-level clade I / IIb from the label; 'unlabelled' genomes are left out of it)
"${EVAL[@]}" --input "$DATA/viruses/mpox_nextclade_examples.fasta.gz" --out "$OUT/eval_mpox" \
    --n-queries 20 --label-regex '^(clade_I+b?)' --align-queries 5
# long sequences: 80 windows of 20-100 kb cut from the two bacterial genomes
"$BIN/python" "$(dirname "$0")/cut_windows.py" "$OUT/bacteria_windows.fa" \
    "$DATA/bacteria/E.Coli__MG1655-K12.fasta.gz" "$DATA/bacteria/S.Aureus__N315.fasta.gz" --n 80
"${EVAL[@]}" --input "$OUT/bacteria_windows.fa" --out "$OUT/eval_bacteria" --n-queries 80 --align-queries 5
