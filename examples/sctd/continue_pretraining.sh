#!/usr/bin/env bash
# Continued (domain-adaptive) pretraining of a published RoBERTa with ScTD, then export to Hugging Face.
#
#   examples/sctd/continue_pretraining.sh MODEL_DIR TEXT_DIR OUT_DIR [extra fairseq-train flags]
#
# MODEL_DIR  a local RoBERTa, no download:
#            - fairseq: model.pt + dict.txt + its BPE (encoder.json + vocab.bpe, or tokenizer.json), e.g. the
#              roberta.base archive with GPT-2's encoder.json/vocab.bpe copied next to it; or
#            - Hugging Face: a RobertaForMaskedLM folder (config.json, weights, tokenizer), imported first
#              with fairseq-import-hf into OUT_DIR/model.
# TEXT_DIR   the domain corpus: train.txt and valid.txt (one paragraph per line, blank line between documents)
# OUT_DIR    gets data-bin/ (binarized with the model's own dict.txt, plus its BPE), checkpoints/, hf/ (the
#            exported model); RobertaModel.from_pretrained(OUT_DIR/checkpoints, data_name_or_path=OUT_DIR/data-bin)
#
# Steps: fairseq-bpe encode with the model's BPE -> fairseq-preprocess --srcdict MODEL/dict.txt ->
# fairseq-train --restore-file MODEL/model.pt --reset-optimizer with --token-drop 0.5 (ScTD, Fi = 10) ->
# fairseq-export-hf of the last checkpoint. The model's shape is read from its checkpoint.
# Env (defaults are a real run; the tests shrink them): MAX_UPDATE (10000), WARMUP_UPDATES (600),
# LR (1e-4), BATCH_SIZE (16), UPDATE_FREQ (2), TOKENS_PER_SAMPLE (512, lowered to the model's positions
# when it has fewer; a larger value set by hand stops the script before any work),
# TOKEN_DROP (0.5), SCTD_INTERVAL (10), WORKERS (4), SAVE_INTERVAL_UPDATES (1000), PYTHON (python).
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 MODEL_DIR TEXT_DIR OUT_DIR [extra fairseq-train flags]" >&2
  exit 2
fi
strip_slash() { local p=${1%/}; echo "${p:-/}"; }   # no "dir//file" in the paths we print
MODEL=$(strip_slash "$1"); TEXT=$(strip_slash "$2"); OUT=$(strip_slash "$3"); shift 3
PY=${PYTHON:-python}
for f in train.txt valid.txt; do
  [[ -f "$TEXT/$f" ]] || { echo "$TEXT/$f not found (TEXT_DIR needs train.txt and valid.txt)" >&2; exit 2; }
done
mkdir -p "$OUT"

if [[ -f "$MODEL/config.json" ]]; then            # a Hugging Face folder: import it first
  $PY -m fairseq_cli.import_hf "$MODEL" "$OUT/model"
  MODEL="$OUT/model"
fi
[[ -f "$MODEL/model.pt" && -f "$MODEL/dict.txt" ]] || { echo "$MODEL needs model.pt and dict.txt" >&2; exit 2; }
if [[ -f "$MODEL/encoder.json" && -f "$MODEL/vocab.bpe" ]]; then
  BPE=(--encoder-json "$MODEL/encoder.json" --vocab-bpe "$MODEL/vocab.bpe"); EXPORT_BPE=(--bpe-dir "$MODEL")
elif [[ -f "$MODEL/tokenizer.json" ]]; then
  BPE=(--tokenizer-json "$MODEL/tokenizer.json"); EXPORT_BPE=(--tokenizer-json "$MODEL/tokenizer.json")
else
  echo "no BPE in $MODEL: need encoder.json + vocab.bpe, or tokenizer.json" >&2; exit 2
fi

# the checkpoint's shape, so the restored weights fit; read before any work, to check TOKENS_PER_SAMPLE
read -r -a ARCH_FLAGS <<< "$($PY - "$MODEL/model.pt" <<'EOF'
import sys
from fairseq_cli.export_hf import load_checkpoint, model_cfg
m = model_cfg(load_checkpoint(sys.argv[1]))
flags = (f"--arch roberta_base --encoder-layers {m['encoder_layers']} --encoder-embed-dim {m['encoder_embed_dim']} "
         f"--encoder-ffn-embed-dim {m['encoder_ffn_embed_dim']} --encoder-attention-heads "
         f"{m['encoder_attention_heads']} --max-positions {m['max_positions']} "
         f"--layer-norm-eps {m.get('layer_norm_eps') or 1e-5!r}")
print(flags + (" --untie-weights-roberta" if m.get("untie_weights_roberta") else ""))
EOF
)"
for i in "${!ARCH_FLAGS[@]}"; do
  if [[ ${ARCH_FLAGS[$i]} == --max-positions ]]; then POSITIONS=${ARCH_FLAGS[$((i + 1))]}; fi
done
if [[ -z "${TOKENS_PER_SAMPLE:-}" ]]; then
  TOKENS_PER_SAMPLE=512
  if (( POSITIONS < TOKENS_PER_SAMPLE )); then
    echo "note: $MODEL/model.pt has $POSITIONS positions: --tokens-per-sample $POSITIONS (not 512)" >&2
    TOKENS_PER_SAMPLE=$POSITIONS
  fi
elif (( TOKENS_PER_SAMPLE > POSITIONS )); then
  echo "TOKENS_PER_SAMPLE=$TOKENS_PER_SAMPLE exceeds the $POSITIONS positions of $MODEL/model.pt;" \
       "set TOKENS_PER_SAMPLE=$POSITIONS or less" >&2
  exit 2
fi

WORKERS=${WORKERS:-4}
for split in train valid; do
  $PY -m fairseq_cli.bpe encode "${BPE[@]}" --inputs "$TEXT/$split.txt" --outputs "$OUT/$split.bpe" \
    --keep-empty --workers "$WORKERS"
done
rm -rf "$OUT/data-bin"
$PY -m fairseq_cli.preprocess --only-source --srcdict "$MODEL/dict.txt" --trainpref "$OUT/train.bpe" \
  --validpref "$OUT/valid.bpe" --destdir "$OUT/data-bin" --workers "$WORKERS" --bpe-dir "$MODEL"

PREC=(--cpu)
if [[ "$($PY -c 'import torch; print(torch.cuda.is_available())')" == "True" ]]; then
  PREC=(--memory-efficient-fp16 --fp16-init-scale 8)
fi
MAX_UPDATE=${MAX_UPDATE:-10000}
# tee -i: Ctrl-C reaches fairseq-train, not tee, so the messages it prints while saving still reach the log
$PY -m fairseq_cli.train "$OUT/data-bin" --restore-file "$MODEL/model.pt" --reset-optimizer --reset-dataloader \
  --reset-meters "${ARCH_FLAGS[@]}" --task masked_lm --criterion masked_lm --sample-break-mode complete \
  --tokens-per-sample "$TOKENS_PER_SAMPLE" --batch-size "${BATCH_SIZE:-16}" --update-freq "${UPDATE_FREQ:-2}" \
  --optimizer adam --adam-betas "(0.9, 0.98)" --adam-eps 1e-06 --weight-decay 0.01 --clip-norm 0.0 \
  --lr "${LR:-1e-4}" --lr-scheduler polynomial_decay --warmup-updates "${WARMUP_UPDATES:-600}" \
  --total-num-update "$MAX_UPDATE" --max-update "$MAX_UPDATE" --dropout 0.1 --attention-dropout 0.1 \
  --token-drop "${TOKEN_DROP:-0.5}" --sctd-interval "${SCTD_INTERVAL:-10}" --skip-invalid-size-inputs-valid-test \
  --save-dir "$OUT/checkpoints" --save-interval-updates "${SAVE_INTERVAL_UPDATES:-1000}" --keep-interval-updates 3 \
  --no-epoch-checkpoints --log-format json --log-interval 50 "${PREC[@]}" "$@" 2>&1 | tee -i "$OUT/train.log"

$PY -m fairseq_cli.export_hf "$OUT/checkpoints/checkpoint_last.pt" "$OUT/hf" --dict "$MODEL/dict.txt" \
  "${EXPORT_BPE[@]}" --mlm-only
echo "done: $OUT/hf loads with transformers.RobertaForMaskedLM.from_pretrained(\"$OUT/hf\"); in fairseq:" \
  "RobertaModel.from_pretrained(\"$OUT/checkpoints\", checkpoint_file=\"checkpoint_last.pt\"," \
  "data_name_or_path=\"$OUT/data-bin\")"
