#!/usr/bin/env bash
# The CPU quickstart: full training vs token dropping vs ScTD on a small corpus, ~10 minutes on 2 cores.
#
#   examples/sctd/quickstart.sh [OUT_DIR] [more fairseq-sctd-quickstart flags...]
#
# Builds a corpus from the standard library's docstrings (no download), trains a BPE, binarizes,
# pretrains a 12-layer x 128-wide RoBERTa three ways for BUDGET_MINUTES (default 2) each, prints a
# comparison table and writes OUT_DIR/quickstart.png.
set -euo pipefail
OUT_DIR=${1:-quickstart-out}
shift || true
fairseq-sctd-quickstart --out "$OUT_DIR" --budget-minutes "${BUDGET_MINUTES:-2}" "$@"
