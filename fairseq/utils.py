"""fairseq.utils: the small tensor and argument helpers that fairseq code and plugins import by this path.

Only helpers with one obvious meaning live here (padding, positions, gradient norms, moving samples
between devices, parsing list-valued flags). `import_user_module` (--user-dir) lives in fairseq.user_dir
and is re-exported here because plugins call it by this path.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import warnings
from typing import Callable, Iterable, List, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from fairseq.logging.meters import get_perplexity as get_perplexity_unrounded, safe_round
from fairseq.user_dir import import_user_module  # noqa: F401  (fairseq's public path)

logger = logging.getLogger(__name__)


# ---- argument parsing helpers -----------------------------------------------------------------
def eval_str_list(x, type=float):
    """'[1, 2]' or '3' (or a list / number) -> a list of `type` (fairseq's list-valued flags)."""
    if x is None:
        return None
    if isinstance(x, str):
        x = eval(x)  # fairseq's flags are python literals, e.g. --update-freq '[2]'
    try:
        return list(map(type, x))
    except TypeError:
        return [type(x)]


def eval_str_dict(x, type=dict):
    if x is None:
        return None
    if isinstance(x, str):
        x = eval(x)
    return x


def eval_bool(x, default: bool = False) -> bool:
    if x is None:
        return default
    try:
        return bool(eval(x))
    except TypeError:
        return default


def split_paths(paths: str, separator: str = os.pathsep) -> List[str]:
    """The directories of a data argument: 'a:b' -> ['a', 'b'] ('|' separates paths that hold '://')."""
    return paths.split(separator) if "://" not in paths else paths.split("|")


def csv_str_list(x: str) -> List[str]:
    return x.split(",")


def deprecation_warning(message: str, stacklevel: int = 3) -> None:
    warnings.warn(message, stacklevel=stacklevel)


# ---- tensors and samples ---------------------------------------------------------------------
def item(tensor):
    """A python number from a 1-element tensor (or the value itself if it is not a tensor)."""
    if torch.is_tensor(tensor) and tensor.numel() == 1:
        return tensor.item()
    if hasattr(tensor, "item"):
        return tensor.item()
    if hasattr(tensor, "__getitem__"):
        return tensor[0]
    return tensor


def apply_to_sample(f: Callable, sample):
    """f applied to every tensor in a (nested dict / list / tuple / set) sample; {} stays {}."""
    if hasattr(sample, "__len__") and len(sample) == 0:
        return {}

    def _apply(x):
        if torch.is_tensor(x):
            return f(x)
        if isinstance(x, dict):
            return type(x)((k, _apply(v)) for k, v in x.items())
        if isinstance(x, list):
            return [_apply(v) for v in x]
        if isinstance(x, tuple):
            return tuple(_apply(v) for v in x)
        if isinstance(x, set):
            return {_apply(v) for v in x}
        return x

    return _apply(sample)


def move_to_cuda(sample, device=None):
    device = device or torch.cuda.current_device()
    return apply_to_sample(lambda t: t.to(device=device, non_blocking=True), sample)


def move_to_cpu(sample):
    def _to_cpu(t):
        # half precision is kept as fp32 on the CPU, where many half ops are missing (fairseq's rule)
        if t.dtype in {torch.bfloat16, torch.float16}:
            t = t.to(dtype=torch.float32)
        return t.cpu()

    return apply_to_sample(_to_cpu, sample)


def strip_pad(tensor: torch.Tensor, pad: int) -> torch.Tensor:
    return tensor[tensor.ne(pad)]


def make_positions(tensor: torch.Tensor, padding_idx: int, onnx_trace: bool = False) -> torch.Tensor:
    """Learned-position ids: padding_idx+1, padding_idx+2, ... over real tokens, padding_idx at pads."""
    mask = tensor.ne(padding_idx).int()
    return (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + padding_idx


def convert_padding_direction(src_tokens: torch.Tensor, padding_idx: int, right_to_left: bool = False,
                              left_to_right: bool = False) -> torch.Tensor:
    """Move each row's padding from one side to the other (exactly one direction must be asked for)."""
    if right_to_left == left_to_right:
        raise ValueError("convert_padding_direction: pass exactly one of right_to_left / left_to_right")
    pad_mask = src_tokens.eq(padding_idx)
    if not pad_mask.any():
        return src_tokens
    if left_to_right and not pad_mask[:, 0].any():
        return src_tokens  # already right-padded
    if right_to_left and not pad_mask[:, -1].any():
        return src_tokens  # already left-padded
    max_len = src_tokens.size(1)
    steps = torch.arange(max_len, device=src_tokens.device).expand_as(src_tokens)
    num_pads = pad_mask.long().sum(dim=1, keepdim=True)
    shift = num_pads if right_to_left else -num_pads
    index = torch.remainder(steps - shift, max_len)
    return src_tokens.gather(1, index)


def resolve_max_positions(*args):
    """The element-wise minimum of several max-positions limits (numbers, tuples or dicts; None = no limit)."""

    def nullsafe_min(values):
        smallest = None
        for v in values:
            if smallest is None:
                smallest = v
            elif v is not None:
                smallest = min(smallest, v)
        return smallest

    def map_value_update(d1, d2):
        merged = dict(d1)
        for key in d2:
            merged[key] = d2[key] if key not in merged else nullsafe_min([merged[key], d2[key]])
        return merged

    max_positions = None
    for arg in args:
        if max_positions is None:
            max_positions = arg
        elif arg is not None:
            if isinstance(arg, float) or isinstance(arg, int):
                if isinstance(max_positions, (int, float)):
                    max_positions = min(max_positions, arg)
                elif isinstance(max_positions, dict):
                    max_positions = {k: nullsafe_min([v, arg]) for k, v in max_positions.items()}
                else:
                    max_positions = tuple(nullsafe_min([m, arg]) for m in max_positions)
            elif isinstance(max_positions, dict):
                max_positions = map_value_update(max_positions, arg)
            else:
                max_positions = tuple(map(nullsafe_min, zip(max_positions, arg)))
    return max_positions


# ---- gradients -------------------------------------------------------------------------------
def grad_norm(grads: List[torch.Tensor]) -> torch.Tensor:
    """fairseq's gnorm: the L2 norm of the per-tensor L2 norms, in fp32 (0 when there are no grads)."""
    if not grads:
        return torch.tensor(0.0)
    if len(grads) == 1:
        return torch.linalg.vector_norm(grads[0], dtype=torch.float32)
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def clip_grad_norm_(params: Union[torch.Tensor, Iterable[torch.Tensor]], max_norm: float,
                    aggregate_norm_fn: Optional[Callable] = None) -> torch.Tensor:
    """Scale the gradients so their total norm is at most max_norm (<= 0: measure only); returns the
    norm before clipping, as a tensor."""
    if torch.is_tensor(params):
        params = [params]
    grads = [p.grad.detach() for p in params if p.grad is not None]
    total_norm = grad_norm(grads)
    if aggregate_norm_fn is not None:
        total_norm = aggregate_norm_fn(total_norm)
    if max_norm > 0 and grads:
        clip_coef = (max_norm / (total_norm + 1e-6)).clamp_(max=1)
        torch._foreach_mul_(grads, clip_coef.to(grads[0].device))
    return total_norm


# ---- misc ------------------------------------------------------------------------------------
def get_activation_fn(activation: str) -> Callable:
    """The function for a --activation-fn name."""
    table = {
        "relu": F.relu,
        "gelu": F.gelu,
        "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
        "gelu_accurate": lambda x: F.gelu(x, approximate="tanh"),
        "tanh": torch.tanh,
        "linear": lambda x: x,
        "swish": F.silu,
    }
    if activation not in table:
        raise RuntimeError(f"--activation-fn {activation} not supported (choose from {', '.join(table)})")
    return table[activation]


def get_available_activation_fns() -> List[str]:
    return ["relu", "gelu", "gelu_fast", "gelu_accurate", "tanh", "linear"]


def get_perplexity(loss, round: int = 2, base: int = 2):
    """base ** loss, rounded; inf when it overflows (fairseq's ppl column)."""
    if loss is None:
        return 0.0
    return safe_round(get_perplexity_unrounded(loss, base), round)


def softmax(x: torch.Tensor, dim: int, onnx_trace: bool = False) -> torch.Tensor:
    return F.softmax(x.float(), dim=dim)


def log_softmax(x: torch.Tensor, dim: int, onnx_trace: bool = False) -> torch.Tensor:
    return F.log_softmax(x.float(), dim=dim)


def has_parameters(module: torch.nn.Module) -> bool:
    return any(True for _ in module.parameters())


@contextlib.contextmanager
def set_torch_seed(seed):
    """Run the block with torch's CPU (and CUDA) RNG seeded to `seed`, then restore the previous states."""
    if not isinstance(seed, int):
        raise TypeError(f"set_torch_seed: seed must be an int, got {type(seed).__name__}")
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def set_seeds(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (fairseq-train's start-up order)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fill_with_neg_inf(t: torch.Tensor) -> torch.Tensor:
    """t filled with -inf in place (fp32 first, so half tensors get a true -inf)."""
    return t.float().fill_(float("-inf")).type_as(t)


def index_put(tensor: torch.Tensor, indices, value):
    tensor[indices] = value
    return tensor


def new_arange(x: torch.Tensor, *size) -> torch.Tensor:
    """arange over the last dim of `size` (default x's shape), expanded to that shape."""
    if len(size) == 0:
        size = x.size()
    return torch.arange(size[-1], device=x.device).expand(*size).contiguous()


def is_numpy(x) -> bool:
    return isinstance(x, np.ndarray)
