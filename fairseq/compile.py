"""`--compile`: run every encoder layer through one torch.compile'd function during training.

Why per layer and not the whole model: the token-dropping path is Python control flow around the
layers (selection, gather, merge, the ScTD second pass) and changes shape every batch (K is a function
of the padded length T). Compiling the layer call alone gives a handful of small graphs that all twelve
(or 24) layers share: full layers, the cross layer (queries at kept positions), kept layers (a full layer
on K rows), each with or without a padding mask. Selection, gather/scatter, embeddings and the LM head
stay eager; they are a few percent of a step.

Shapes: compiled with dynamic=True, so one graph serves every batch size and length (T and K are
symbolic). The alternatives cost more here: static shapes recompile for every distinct padded length
(length-sorted batches give dozens), padding T to a multiple would change K and hence which tokens are
dropped, and torch's default "automatic dynamic" compiles every graph twice (static, then dynamic on the
second length). Validation and inference stay eager (the compiled function is used only in training).

Parameters are untouched (the layer modules are only called by the compiled function), so state-dict
keys, checkpoints, DDP/FSDP wrapping and --checkpoint-activations are unaffected. Dropout keeps the
model's own samplers (the cheap 16-bit one on CPU, F.dropout/SDPA on CUDA); compiled, inductor draws
their random numbers with its own generator, so dropout streams differ from eager runs.

Measured on the 2-core CPU (docs/results.md): compiled layers run at the speed of eager ones
(C1, quickstart model), so --compile is off by default and pays only where kernel fusion matters (GPU).

torch.compile's inductor backend generates C++ on CPU (needs a C++ compiler) and Triton on CUDA (needs
the triton package); `check_compile_available` turns a missing one into one clear error before training.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

import torch

# graphs per compiled function: 3 layer modes x mask / no mask x grad / no grad, with headroom
RECOMPILE_LIMIT = 32


def check_compile_available(device: torch.device) -> None:
    """Raise ValueError (one line) when torch.compile cannot generate code for `device` here."""
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise ValueError("--compile on CUDA needs the triton package (pip install triton); "
                             "or drop --compile")
        return
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None and shutil.which("c++") is None:
        raise ValueError(f"--compile on CPU needs a C++ compiler for torch.compile (inductor): {cxx!r} not "
                         "found on PATH (e.g. apt-get install g++, or set CXX); or drop --compile")


def call_layer(layer, x, attn_mask, query_index):
    """The function that gets compiled: one encoder layer call (module hooks included, for FSDP)."""
    return layer(x, attn_mask, query_index)


def compile_model(model: torch.nn.Module) -> None:
    """Make the model's encoder run its layers through a compiled `call_layer` in training (in place)."""
    check_compile_available(next(model.parameters()).device)
    config = torch._dynamo.config
    config.cache_size_limit = max(config.cache_size_limit, RECOMPILE_LIMIT)
    encoder = model.encoder.sentence_encoder
    encoder.compiled_layer_fn = torch.compile(call_layer, dynamic=True)
