"""fairseq-train's command line: the paper's flags, list syntax, defaults and clear errors."""
import shlex

import pytest

from fairseq import options
from fairseq.checkpoint.cfg import CFG_GROUPS, args_to_cfg

PAPER = """DATA --train-subset train --valid-subset valid --skip-invalid-size-inputs-valid-test
    --memory-efficient-fp16 --fp16-init-scale 8 --arch roberta_large --task masked_lm --sample-break-mode complete
    --batch-size 8 --tokens-per-sample 512 --save-interval 1 --save-interval-updates 10000
    --keep-interval-updates 25 --no-epoch-checkpoints --optimizer adam --adam-betas "(0.9, 0.999)"
    --adam-eps 1e-06 --weight-decay 0.01 --clip-norm 0.0 --lr 2e-4 --lr-scheduler polynomial_decay
    --warmup-updates 25000 --dropout 0.1 --token-drop 0.5 --max-positions 512 --attention-dropout 0.1
    --update-freq 2 --ddp-backend=legacy_ddp --total-num-update 250000 --max-update 250000 --max-epoch 40
    --save-dir SAVE --log-format json --log-interval 100"""


def parse(argv):
    return options.parse_args_and_arch(options.get_training_parser(), shlex.split(argv))


def test_optimizer_is_required_as_in_fairseq():
    with pytest.raises(ValueError, match=r"--optimizer is required .*; choose from: .*adam, adamax"):
        options.parse_args_and_arch(options.get_training_parser(), ["D", "-a", "roberta_base", "--batch-size", "8"])


def test_paper_command_parses_with_fairseq_meanings():
    a = parse(PAPER)
    assert a.criterion == "cross_entropy" and a.fp16 and a.memory_efficient_fp16 and a.fp16_init_scale == 8
    assert a.lr == [2e-4] and a.update_freq == [2] and a.adam_betas == "(0.9, 0.999)"
    assert (a.encoder_layers, a.encoder_embed_dim, a.encoder_attention_heads) == (24, 1024, 16)
    assert a.token_drop == 0.5 and a.ddp_backend == "legacy_ddp" and a.total_num_update == 250000
    assert a.batch_size_valid == 8 and a.required_batch_size_multiple == 8 and a.max_positions == 512
    assert a.restore_file == "checkpoint_last.pt" and a.seed == 1 and a.keep_interval_updates == 25


def test_lists_aliases_and_overrides():
    a = parse("D -a roberta_base --optimizer adam --max-sentences 4 --lr 1e-4,2e-4 --update-freq 1,2 --encoder-layers 2 "
              "--lr-scheduler fixed --bf16 --stop-time-hours 0.5")
    assert a.batch_size == 4 and a.lr == [1e-4, 2e-4] and a.update_freq == [1, 2]
    assert a.encoder_layers == 2 and a.encoder_embed_dim == 768 and a.warmup_updates == 0
    assert parse("D -a roberta_base --batch-size 8 --optimizer adam --lr-scheduler inverse_sqrt").warmup_updates == 4000
    with pytest.raises(ValueError, match="--lr 0.0001,0.0002: --lr-scheduler inverse_sqrt takes one"):
        parse("D -a roberta_base --batch-size 8 --optimizer adam --lr 1e-4,2e-4 --lr-scheduler inverse_sqrt")  # as fairseq
    assert a.bf16 and a.stop_time_hours == 0.5 and a.max_positions == 512


def test_cfg_is_plain_and_grouped():
    cfg = args_to_cfg(parse(PAPER))
    assert set(CFG_GROUPS) <= set(cfg)
    assert cfg["model"]["_name"] == "roberta_large" and cfg["task"]["_name"] == "masked_lm"
    assert cfg["task"]["tokens_per_sample"] == 512 and cfg["task"]["token_drop"] == 0.5
    assert cfg["optimization"]["update_freq"] == [2] and cfg["checkpoint"]["save_dir"] == "SAVE"
    assert cfg["optimizer"]["adam_eps"] == 1e-6 and cfg["lr_scheduler"]["warmup_updates"] == 25000
    assert cfg["common"]["fp16_init_scale"] == 8 and cfg["dataset"]["batch_size"] == 8

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (str, int, float, bool))
    assert plain(cfg)


def test_unknown_flag_names_it(capsys):
    with pytest.raises(SystemExit):
        parse("D -a roberta_base --optimizer adam --batch-size 8 --no-such-flag 3")
    assert "--no-such-flag" in capsys.readouterr().err


@pytest.mark.parametrize("argv,match", [
    ("D -a roberta_huge --batch-size 8", r"unknown --arch 'roberta_huge'; choose from: .*roberta_base"),
    ("D -a roberta_base --task translation --batch-size 8", r"unknown --task 'translation'; choose from: (\w+, )*masked_lm, sentence_prediction"),  # plus any --user-dir task imported earlier in this process
    ("D -a roberta_base --criterion nope --batch-size 8", r"unknown --criterion 'nope'; choose from: cross_entropy"),
    ("D -a roberta_base --optimizer adam --lr-scheduler cosin --batch-size 8", r"unknown --lr-scheduler 'cosin'"),
    ("D --batch-size 8", r"--arch/-a is required"),
    ("D -a roberta_base --optimizer adam", r"--max-tokens or --batch-size"),
    ("D -a roberta_base --optimizer adam --batch-size 8 --fp16 --bf16", r"mutually exclusive"),
    ("D -a roberta_base --optimizer adam --batch-size 8 --lr abc", r"cannot parse 'abc'"),
    ("D -a roberta_base --optimizer adam --batch-size 8 --adam-betas 0.9", r"--adam-betas"),
])
def test_clear_one_line_errors(argv, match):
    with pytest.raises(ValueError, match=match) as e:
        parse(argv)
    assert "\n" not in str(e.value)


def test_cli_prints_one_line_error(capsys):
    from fairseq_cli import train

    with pytest.raises(SystemExit) as e:
        train.cli_main(["D", "-a", "nope", "--batch-size", "8"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fairseq-train: error: unknown --arch 'nope'") and "\n" not in err
