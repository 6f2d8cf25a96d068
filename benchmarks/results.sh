#!/usr/bin/env bash
# Reproduce docs/RESULTS.md: train the default config on genes + 16S (training splits only), then
# evaluate on held-out and unseen data against the 5-mer baseline and sourmash in the same runs.
# Usage: bash benchmarks/results.sh [SHARED_DATA_DIR] [OUT_DIR]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-results-out}
BIN=$(dirname "$(readlink -f "$0")")/../.venv/bin
mkdir -p "$OUT"
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$(readlink -f "$OUT")/mlflow.db}
export MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0
RERANK=${RERANK:-10}  # '+align' rows: each method's top 10 re-ordered by alignment (gene-ae search --rerank)
if [ ! -f "$OUT/shards/manifest.json" ]; then
  "$BIN/shard-fasta" --quiet --label-column class "$DATA/genefam/chimp_data.txt" "$DATA/rrna16s/ten_16s.100.fa.gz" "$OUT/shards"
fi
if [ ! -d "$OUT/runs/results" ]; then
  (cd "$OUT" && "$BIN/python" -m gene_ae.train --data shards --name results --storage runs \
      --register gene-ae-encoder --alias production)
fi
MODEL=${MODEL:-models:/gene-ae-encoder@production}
# unseen species: dog genes (mutation retrieval, leave-one-out family precision)
"$BIN/gene-ae" eval --model "$MODEL" --input "$DATA/genefam/dog_data.txt" --label-column class \
    --out "$OUT/eval_dog" --n-queries 200 --rerank "$RERANK"
# cross-species: each dog gene's nearest chimp gene (chimp sequences were seen in training, their labels never)
"$BIN/gene-ae" eval --model "$MODEL" --input "$DATA/genefam/chimp_data.txt" --label-column class \
    --queries "$DATA/genefam/dog_data.txt" --out "$OUT/eval_cross" --n-queries 50 --rerank "$RERANK"
# 16S: leave-one-out genus precision, mutation retrieval
"$BIN/gene-ae" eval --model "$MODEL" --input "$DATA/rrna16s/ten_16s.100.fa.gz" --out "$OUT/eval_16s" --n-queries 200 --rerank "$RERANK"
# long genomes: mpox clades (top-level clade I / IIb from the label; 'unlabelled' genomes are left out of it)
"$BIN/gene-ae" eval --model "$MODEL" --input "$DATA/viruses/mpox_nextclade_examples.fasta.gz" --out "$OUT/eval_mpox" \
    --n-queries 20 --label-regex '^(clade_I+b?)' --rerank "$RERANK"
