#!/usr/bin/env bash
# GLUE fine-tuning with fairseq's RoBERTa recipe (FAIRSEQ_SPEC section 9), then the dev metric beside
# the majority-class baseline (always answering the most frequent train label), e.g.
#   RTE best dev: loss=0.998, accuracy=52.7 (majority class 52.7)
#
#   examples/sctd/glue.sh TASK GLUE_DIR CHECKPOINT DATA_DICT_DIR [extra fairseq-train flags]
#
# TASK           CoLA SST-2 MRPC QQP STS-B MNLI QNLI RTE WNLI
# GLUE_DIR       folder with TASK/{train,dev,test}.tsv (the official GLUE files)
# CHECKPOINT     a pretrained masked-LM checkpoint (ours or fairseq's); its shape flags are read from it
# DATA_DICT_DIR  the pretraining dict.txt plus its BPE: tokenizer.json, or encoder.json + vocab.bpe
#
# Per-task lr / batch size / total updates / warmup / classes follow the recipe table; override with
# env vars LR, BSZ, TOTAL_NUM_UPDATES, WARMUP_UPDATES, MAX_EPOCH (default 10), OUT_DIR (default
# ./glue-out), or append fairseq-train flags (later flags win). On a machine without CUDA the fp16
# flags are dropped. Samples longer than the checkpoint's max positions are truncated
# (--shorten-method truncate) so every dev example is scored.
# Output: OUT_DIR/TASK-bin (the data, with the BPE) and OUT_DIR/TASK-ckpt (the fine-tuned checkpoints), read by
#   RobertaModel.from_pretrained("OUT_DIR/TASK-ckpt", "checkpoint_best.pt", data_name_or_path="OUT_DIR/TASK-bin")
set -euo pipefail

if [[ $# -lt 4 ]]; then
  echo "usage: $0 TASK GLUE_DIR CHECKPOINT DATA_DICT_DIR [extra fairseq-train flags]" >&2
  exit 2
fi
TASK=$1; GLUE_DIR=$2; CHECKPOINT=$3; DICT_DIR=$4; shift 4
OUT_DIR=${OUT_DIR:-./glue-out}
PY=${PYTHON:-python}

case "$TASK" in
  MNLI)  C=3; D_LR=1e-5; D_BSZ=32; D_T=123873; D_W=7432 ;;
  QNLI)  C=2; D_LR=1e-5; D_BSZ=32; D_T=33112;  D_W=1986 ;;
  QQP)   C=2; D_LR=1e-5; D_BSZ=32; D_T=113272; D_W=28318 ;;
  RTE)   C=2; D_LR=2e-5; D_BSZ=16; D_T=2036;   D_W=122 ;;
  SST-2) C=2; D_LR=1e-5; D_BSZ=32; D_T=20935;  D_W=1256 ;;
  MRPC)  C=2; D_LR=1e-5; D_BSZ=16; D_T=2296;   D_W=137 ;;
  CoLA)  C=2; D_LR=1e-5; D_BSZ=16; D_T=5336;   D_W=320 ;;
  STS-B) C=1; D_LR=2e-5; D_BSZ=16; D_T=3598;   D_W=214 ;;
  WNLI)  C=2; D_LR=2e-5; D_BSZ=16; D_T=2036;   D_W=122 ;;  # not in the recipe table: RTE's values
  *) echo "unknown TASK '$TASK'; choose from: CoLA SST-2 MRPC QQP STS-B MNLI QNLI RTE WNLI" >&2; exit 2 ;;
esac
LR=${LR:-$D_LR}; BSZ=${BSZ:-$D_BSZ}; TOTAL_NUM_UPDATES=${TOTAL_NUM_UPDATES:-$D_T}
WARMUP_UPDATES=${WARMUP_UPDATES:-$D_W}; MAX_EPOCH=${MAX_EPOCH:-10}

[[ -f "$CHECKPOINT" ]] || { echo "checkpoint not found: $CHECKPOINT" >&2; exit 2; }
[[ -f "$DICT_DIR/dict.txt" ]] || { echo "dict.txt not found in DATA_DICT_DIR: $DICT_DIR" >&2; exit 2; }
if [[ -f "$DICT_DIR/tokenizer.json" ]]; then
  BPE_FLAGS=(--tokenizer-json "$DICT_DIR/tokenizer.json")
elif [[ -f "$DICT_DIR/encoder.json" && -f "$DICT_DIR/vocab.bpe" ]]; then
  BPE_FLAGS=(--bpe-dir "$DICT_DIR")
else
  echo "no BPE in $DICT_DIR: need tokenizer.json or encoder.json + vocab.bpe" >&2; exit 2
fi

DATA="$OUT_DIR/$TASK-bin"
SAVE_DIR="$OUT_DIR/$TASK-ckpt"
mkdir -p "$OUT_DIR"
$PY -m fairseq_cli.glue_prep --task "$TASK" --glue-dir "$GLUE_DIR" --dict "$DICT_DIR/dict.txt" \
  "${BPE_FLAGS[@]}" --out "$DATA"

# the checkpoint's shape, so the fine-tuned model matches it
read -r -a ARCH_FLAGS <<< "$($PY - "$CHECKPOINT" <<'EOF'
import sys
from fairseq_cli.export_hf import load_checkpoint, model_cfg
m = model_cfg(load_checkpoint(sys.argv[1]))
pos = m.get("max_positions") or m.get("tokens_per_sample") or 512
print(f"--arch roberta_base --encoder-layers {m['encoder_layers']} --encoder-embed-dim {m['encoder_embed_dim']} "
      f"--encoder-ffn-embed-dim {m['encoder_ffn_embed_dim']} --encoder-attention-heads "
      f"{m['encoder_attention_heads']} --max-positions {pos} --layer-norm-eps {m.get('layer_norm_eps') or 1e-5!r}"
      + (" --untie-weights-roberta" if m.get("untie_weights_roberta") else ""))
EOF
)"

TASK_FLAGS=(--num-classes "$C" --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric)
if [[ "$TASK" == "STS-B" ]]; then
  TASK_FLAGS=(--num-classes 1 --regression-target --best-checkpoint-metric loss)
fi
PREC_FLAGS=(--fp16 --fp16-init-scale 4 --threshold-loss-scale 1 --fp16-scale-window 128)
if [[ "$($PY -c 'import torch; print(torch.cuda.is_available())')" != "True" ]]; then
  PREC_FLAGS=(--cpu)
fi

LOG="$OUT_DIR/$TASK.train.log"
# tee -i: Ctrl-C reaches fairseq-train, not tee, so the messages it prints while saving still reach the log
$PY -m fairseq_cli.train "$DATA" --restore-file "$CHECKPOINT" "${ARCH_FLAGS[@]}" \
  --batch-size "$BSZ" --max-tokens 4400 --task sentence_prediction \
  --reset-optimizer --reset-dataloader --reset-meters --required-batch-size-multiple 1 \
  --init-token 0 --separator-token 2 --shorten-method truncate --criterion sentence_prediction \
  --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.1 --optimizer adam --adam-betas "(0.9, 0.98)" \
  --adam-eps 1e-06 --clip-norm 0.0 --lr-scheduler polynomial_decay --lr "$LR" \
  --total-num-update "$TOTAL_NUM_UPDATES" --warmup-updates "$WARMUP_UPDATES" --max-epoch "$MAX_EPOCH" \
  --find-unused-parameters "${PREC_FLAGS[@]}" "${TASK_FLAGS[@]}" --save-dir "$SAVE_DIR" \
  --no-epoch-checkpoints --log-format json --log-interval 50 "$@" 2>&1 | tee -i "$LOG"

# dev metrics of every validation and the best one, beside the majority-class baseline (fairseq_cli/glue_report.py)
$PY -m fairseq_cli.glue_report "$TASK" "$LOG" "$GLUE_DIR"
