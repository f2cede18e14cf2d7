"""fairseq's language_modeling task with transformer_lm, and the dummy_lm / dummy_masked_lm benchmark tasks:
the model's logits equal fairseq 0.12.2's on the same weights, it is causal, the batches shift by one,
fairseq-train trains it (also from fairseq's grouped cfg) and a resumed run equals the uninterrupted one."""
import shlex

import pytest
import torch

from fairseq import options, tasks
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.distributed import utils as distributed_utils
from fairseq.models.transformer_lm import TransformerLanguageModel
from fairseq_cli import train

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


class _Task:
    def __init__(self, d):
        self.source_dictionary = self.target_dictionary = d


def _lm(arch, *flags):
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "--task", "language_modeling", "DATA", "--arch", arch, "--optimizer", "adam", "--max-tokens", "500",
        "--tokens-per-sample", "8", *flags])
    d = Dictionary()
    for i in range(20):
        d.add_symbol(f"w{i}")
    torch.manual_seed(0)
    return TransformerLanguageModel.build_model(args, _Task(d)).eval()


# fairseq 0.12.2's logits for these weights (our fairseq_state_dict loaded strictly into its
# TransformerLanguageModel built from the same command line): out[0, :3, :4] and out[1, 2, :4]
FAIRSEQ_LOGITS = {
    "transformer_lm_gpt2_tiny": ([[-0.41434, -0.05607, 0.12723, 0.17214], [0.56411, 1.13233, -0.20257, 0.35255],
                                  [0.56952, -0.47766, -0.35631, 0.36882]], [0.28074, -0.00552, -0.52353, 1.7961]),
    "transformer_lm": ([[-0.86595, -0.57172, -1.16371, 2.32978], [-0.56438, 1.30875, -0.10001, 0.9726],
                        [-0.74073, 0.23964, -1.51785, 0.66939]], [-0.28055, -2.26728, -0.57597, 0.44823]),
}


@pytest.mark.parametrize("arch,flags", [("transformer_lm_gpt2_tiny", []),  # pre-norm, gelu, final LayerNorm
                                        ("transformer_lm", ["--decoder-layers", "1", "--decoder-ffn-embed-dim", "32",
                                                            "--decoder-attention-heads", "4"])])  # post-norm, relu
def test_logits_equal_fairseq(arch, flags):
    model = _lm(arch, *flags)
    x = torch.tensor([[2, 5, 9, 13, 17, 6], [2, 7, 8, 1, 1, 1]])
    out = model(x)[0]
    first, row = FAIRSEQ_LOGITS[arch]
    torch.testing.assert_close(out[0, :3, :4], torch.tensor(first), rtol=0, atol=1e-4)
    torch.testing.assert_close(out[1, 2, :4], torch.tensor(row), rtol=0, atol=1e-4)
    assert "decoder.version" in model.fairseq_state_dict()  # fairseq keeps the final LayerNorm only with it


def test_causal_and_padding():
    model = _lm("transformer_lm_gpt2_tiny")
    x = torch.tensor([[2, 5, 9, 13, 17, 6]])
    y = x.clone()
    y[0, 4:] = torch.tensor([11, 12])
    a, b = model(x)[0], model(y)[0]
    assert torch.equal(a[0, :4], b[0, :4]) and not torch.allclose(a[0, 4:], b[0, 4:])
    padded = torch.tensor([[2, 5, 9, 1, 1, 1]])
    torch.testing.assert_close(model(padded)[0][0, :3], model(x[:, :3])[0][0], rtol=0, atol=1e-5)


def test_monolingual_batches_predict_the_next_token(peer_dir):
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "--task", "language_modeling", str(peer_dir / "data-bin"), "--arch", "transformer_lm_gpt2_tiny",
        "--optimizer", "adam", "--batch-size", "3", "--tokens-per-sample", "16"])
    task = tasks.setup_task(args)
    ds = task.load_dataset("valid")
    batch = ds.collater([ds[i] for i in range(3)])
    src, tgt = batch["net_input"]["src_tokens"], batch["target"]
    assert src.shape == tgt.shape == (3, 16) and batch["ntokens"] == 48
    assert src[0, 0] == task.dictionary.eos() and torch.equal(src[:, 1:], tgt[:, :-1])  # blocks 0-2 are contiguous
    assert torch.equal(src[1:, 0], tgt[:-1, -1])


def _run(data, save, max_update, extra=""):
    argv = shlex.split(f"{data} --task language_modeling -a transformer_lm_gpt2_tiny --optimizer adam --lr 1e-3 "
                       f"--batch-size 4 --tokens-per-sample 32 --max-update {max_update} --save-interval-updates 2 "
                       f"--max-valid-steps 2 --log-format json --log-interval 1 --save-dir {save} {extra}")
    return options.parse_args_and_arch(options.get_training_parser(), argv)


def test_trains_and_resumes_like_an_uninterrupted_run(peer_dir, tmp_path):
    data = peer_dir / "data-bin"
    straight = train.main(_run(data, tmp_path / "a", 4, "--no-save"))
    train.main(convert_namespace_to_omegaconf(_run(data, tmp_path / "b", 2)))  # fairseq's cfg entry point
    resumed = distributed_utils.call_main(convert_namespace_to_omegaconf(_run(data, tmp_path / "b", 4)), train.main)
    assert resumed.num_updates == straight.num_updates == 4
    for (na, pa), (nb, pb) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert na == nb and torch.equal(pa, pb), na


@pytest.mark.parametrize("task", ["dummy_lm", "dummy_masked_lm"])
def test_dummy_tasks_train(tmp_path, task):
    args = options.parse_args_and_arch(options.get_training_parser(), shlex.split(
        f"--task {task} -a transformer_lm_gpt2_tiny --optimizer adam --lr 1e-3 --batch-size 2 --tokens-per-sample 16 "
        f"--dict-size 100 --dataset-size 8 --max-update 3 --save-dir {tmp_path} --no-save"))
    trainer = train.main(args)
    batch = trainer.task.dataset("train").collater([0, 1])
    assert trainer.num_updates == 3 and batch["net_input"]["src_tokens"].shape == (2, 16)
    assert len(trainer.task.dictionary) % 8 == 0
