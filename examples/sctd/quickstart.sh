#!/usr/bin/env bash
# The CPU quickstart: full training vs token dropping vs ScTD on a small corpus, ~10 minutes on 2 cores.
#
#   examples/sctd/quickstart.sh [OUT_DIR] [more fairseq-sctd-quickstart flags...]
#
# Builds a corpus from the standard library's docstrings (no download), trains a BPE, binarizes,
# pretrains a 12-layer x 128-wide RoBERTa three ways, side by side, for BUDGET_MINUTES (default 2) of step
# time each (after a warm-up), and writes OUT_DIR/results.md (with caveats), OUT_DIR/quickstart.png and one
# hub-ready model folder per variant (see examples/sctd/README.md).
set -euo pipefail
OUT_DIR=${1:-quickstart-out}
shift || true
fairseq-sctd-quickstart --out "$OUT_DIR" --budget-minutes "${BUDGET_MINUTES:-2}" "$@"
