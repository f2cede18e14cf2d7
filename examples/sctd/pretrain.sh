#!/usr/bin/env bash
# Pretrain RoBERTa with token dropping (p=0.5) + ScTD: the ScTD paper's fairseq-train command
# (SPEC section 1) with --arch roberta_SIZE. The same run as config/pretrain_SIZE.yaml.
#
#   examples/sctd/pretrain.sh SIZE TEXT_DIR DATA_DIR SAVE_DIR [extra fairseq-train flags]
#
# SIZE is base (roberta_base, the paper's BERT-base setting) or large (roberta_large).
#
# TEXT_DIR holds train.txt and valid.txt (one paragraph per line, a blank line between documents).
# Data preparation runs only when DATA_DIR/dict.txt does not exist yet:
#   * with ENCODER_JSON, VOCAB_BPE (and DICT) set to GPT-2's encoder.json, vocab.bpe and dict.txt,
#     the text is encoded with GPT-2's BPE and binarized with its dictionary (RoBERTa's setup);
#   * otherwise a byte-level BPE of BPE_VOCAB_SIZE (default 50000) is trained on train.txt.
# WORKERS (default 8) sets the BPE-encoding and preprocessing processes. The BPE files go into DATA_DIR
# (fairseq-preprocess --bpe-dir), where RobertaModel.from_pretrained(SAVE_DIR, data_name_or_path=DATA_DIR)
# finds them. Extra flags go to fairseq-train after the paper's (a later flag wins), e.g. a smoke test:
#   examples/sctd/pretrain.sh base text data-bin ckpt --encoder-layers 2 --max-update 10 --cpu
# Ctrl-C: fairseq-train saves checkpoint_last.pt and says so; tee -i keeps the log going until it has.
# Multi-GPU: launch the same fairseq-train line with torchrun (see examples/sctd/README.md).
set -euo pipefail

USAGE="usage: $0 base|large TEXT_DIR DATA_DIR SAVE_DIR [extra fairseq-train flags]"
SIZE=${1:?$USAGE}
case "$SIZE" in
    base|large) ;;
    *) echo "error: SIZE must be base or large, got '$SIZE'; $USAGE" >&2; exit 2 ;;
esac
TEXT_DIR=${2:?$USAGE}
DATA_DIR=${3:?$USAGE}
SAVE_DIR=${4:?$USAGE}
shift 4
WORKERS=${WORKERS:-8}

if [ ! -f "$DATA_DIR/dict.txt" ]; then
    for split in train valid; do
        [ -f "$TEXT_DIR/$split.txt" ] || { echo "error: $TEXT_DIR/$split.txt not found" >&2; exit 1; }
    done
    mkdir -p "$DATA_DIR/bpe"
    if [ -n "${ENCODER_JSON:-}" ]; then
        cp "$ENCODER_JSON" "$DATA_DIR/bpe/encoder.json"
        cp "${VOCAB_BPE:?set VOCAB_BPE with ENCODER_JSON}" "$DATA_DIR/bpe/vocab.bpe"
        BPE_ARGS=(--encoder-json "$DATA_DIR/bpe/encoder.json" --vocab-bpe "$DATA_DIR/bpe/vocab.bpe")
    else
        fairseq-bpe train --inputs "$TEXT_DIR/train.txt" --vocab-size "${BPE_VOCAB_SIZE:-50000}" \
            --output-dir "$DATA_DIR/bpe"
        BPE_ARGS=(--tokenizer-json "$DATA_DIR/bpe/tokenizer.json")
    fi
    for split in train valid; do
        fairseq-bpe encode "${BPE_ARGS[@]}" --keep-empty --workers "$WORKERS" \
            --inputs "$TEXT_DIR/$split.txt" --outputs "$DATA_DIR/bpe/$split.bpe"
    done
    DICT_ARGS=()
    if [ -n "${DICT:-}" ]; then DICT_ARGS=(--srcdict "$DICT"); fi
    fairseq-preprocess --only-source "${DICT_ARGS[@]}" \
        --trainpref "$DATA_DIR/bpe/train.bpe" --validpref "$DATA_DIR/bpe/valid.bpe" \
        --destdir "$DATA_DIR" --workers "$WORKERS" --bpe-dir "$DATA_DIR/bpe"
fi

mkdir -p "$SAVE_DIR"
fairseq-train "$DATA_DIR" \
    --train-subset train --valid-subset valid --skip-invalid-size-inputs-valid-test \
    --memory-efficient-fp16 --fp16-init-scale 8 \
    --arch "roberta_$SIZE" --task masked_lm --sample-break-mode "complete" \
    --batch-size 8 --tokens-per-sample 512 \
    --save-interval 1 --save-interval-updates 10000 --keep-interval-updates 25 --no-epoch-checkpoints \
    --optimizer adam --adam-betas "(0.9, 0.999)" --adam-eps 1e-06 --weight-decay 0.01 --clip-norm 0.0 \
    --lr 2e-4 --lr-scheduler polynomial_decay --warmup-updates 25000 \
    --dropout 0.1 --token-drop 0.5 --max-positions 512 --attention-dropout 0.1 \
    --update-freq 2 --ddp-backend=legacy_ddp \
    --total-num-update 250000 --max-update 250000 --max-epoch 40 \
    --save-dir "$SAVE_DIR" --log-format json --log-interval 100 "$@" 2>&1 | tee -i "$SAVE_DIR/train.log"
