"""Step time of full training vs token dropping vs ScTD, side by side in one process (SPEC section 5).

One step = forward + backward + Adam step through the real code paths: RobertaModel, the masked_lm
criterion, TokenDropper selection and fairseq.sctd.train_step (which also feeds the importance table),
plus importance.apply() as after_update does. Steps of the three kinds are interleaved round by round so
machine noise hits all of them alike; we report medians over --repeats rounds after --warmup rounds.

ScTD's average step over a cycle of Fi updates is (t_sctd_update + (Fi - 1) * t_drop) / Fi, where
t_sctd_update is the measured time of an update that runs both passes.

Beside every measured ratio we print the ideal ratio from matmul FLOPs of the exact configuration:
per layer q/k/v/out projections (queries and keys counted separately), attention scores and
probs @ V for the actual query/key lengths, and the FFN; "+head" adds the LM head on masked rows.

    python benchmarks/bench_token_drop.py                       # L=12, T=512, C=256, FFN 1024, 4 heads, B=4
    python benchmarks/bench_token_drop.py --repeats 1 --warmup 1 --layers 4 --seq 128   # smoke run
"""
from __future__ import annotations

import argparse
import statistics
import time
import types

import torch

VOCAB = 7713
PAD, MASK = 1, VOCAB - 1


def layer_flops(tq: int, tk: int, c: int, f: int) -> int:
    """Forward matmul FLOPs (2 per multiply-add) of one post-LN layer with tq queries and tk keys."""
    proj = 2 * tq * c * c * 2 + 2 * tk * c * c * 2   # q + out on queries, k + v on keys
    attn = 2 * tq * tk * c * 2                        # q k^T and probs @ v over all heads
    ffn = 2 * tq * c * f * 2
    return proj + attn + ffn


def model_flops(L: int, T: int, K: int, c: int, f: int, split=None, masked: int = 0, vocab: int = VOCAB,
                drop: bool = True) -> int:
    """Encoder (+ LM head on `masked` rows) forward FLOPs for one sequence; Hou split when drop=True."""
    head = masked * (2 * c * c + 2 * c * vocab)
    if not drop:
        return L * layer_flops(T, T, c, f) + head
    d, end = split
    total = d * layer_flops(T, T, c, f) + layer_flops(K, T, c, f)
    total += (end - d) * layer_flops(K, K, c, f) + (L - 1 - end) * layer_flops(T, T, c, f)
    return total + head


def build(c, token_drop: float, interval: int):
    from fairseq.data.dictionary import placeholder_dictionary
    from fairseq.models.roberta import RobertaModel
    from fairseq.optim.adam import Adam
    from fairseq.registry import lookup
    from fairseq.token_drop import TokenDropper, add_token_drop_args

    torch.manual_seed(0)
    args = argparse.Namespace(arch="roberta_base", encoder_layers=c.layers, encoder_embed_dim=c.dim,
                              encoder_ffn_embed_dim=c.ffn, encoder_attention_heads=c.heads,
                              max_positions=c.seq, dropout=0.1, attention_dropout=0.1, criterion="masked_lm")
    vocab = placeholder_dictionary(VOCAB)
    model = RobertaModel.build_model(args, vocab)
    p = argparse.ArgumentParser()
    add_token_drop_args(p)
    targs = p.parse_args(["--token-drop", str(token_drop), "--sctd-interval", str(interval)])
    task = types.SimpleNamespace(source_dictionary=vocab, target_dictionary=vocab)
    task.token_dropper = TokenDropper(targs, vocab, c.layers) if token_drop > 0 else None
    if task.token_dropper is not None:  # a learned-looking table so selection is not all ties
        g = torch.Generator().manual_seed(1)
        task.token_dropper.importance.scores[4:MASK] = 5 + 5 * torch.rand(VOCAB - 5, generator=g)
    crit = lookup("criterion", "masked_lm")(args, task)
    opt = Adam(model.parameters(), lr=1e-4, eps=1e-6, weight_decay=0.01)
    return model, task, crit, opt


def make_batch(c, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, MASK, (c.batch, c.seq), generator=g)
    src[:, 0], src[:, -1] = 0, 2
    m = torch.rand(c.batch, c.seq, generator=g) < 0.15
    m[:, 0] = m[:, -1] = False
    tgt = torch.where(m, src, torch.full_like(src, PAD))
    src = torch.where(m & (torch.rand(c.batch, c.seq, generator=g) < 0.8), torch.full_like(src, MASK), src)
    return {"id": torch.arange(c.batch), "net_input": {"src_tokens": src, "src_lengths": torch.full((c.batch,), c.seq)},
            "target": tgt, "ntokens": int(src.numel()), "nsentences": c.batch}


def step(kind, setup, sample, update_num):
    from fairseq import sctd
    model, task, crit, opt = setup
    t0 = time.perf_counter()
    if kind == "full":
        model.train()
        loss, _, _ = crit(model, sample)
        loss.backward()
    else:
        sctd.train_step(task, sample, model, crit, None, update_num)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if task.token_dropper is not None:
        task.token_dropper.importance.apply()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--token-drop", type=float, default=0.5)
    ap.add_argument("--sctd-interval", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cycles", type=int, default=1,
                    help="also time this many real ScTD cycles of Fi updates against Fi full updates (0 = skip)")
    c = ap.parse_args(argv)
    torch.set_num_threads(c.threads)
    from fairseq.cpu_memory import keep_freed_memory
    keep_freed_memory()  # as fairseq-train does (see fairseq/cpu_memory.py)
    from fairseq.token_drop import drop_layer_split, keep_count

    sample = make_batch(c)
    setups = {"full": build(c, 0.0, 0), "drop": build(c, c.token_drop, 0), "sctd": build(c, c.token_drop, 1)}
    times = {k: [] for k in setups}
    for r in range(c.warmup + c.repeats):
        for kind, s in setups.items():
            dt = step(kind, s, sample, update_num=r + 1 if kind == "drop" else r)
            if r >= c.warmup:
                times[kind].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    fi = c.sctd_interval
    sctd_avg = (med["sctd"] + (fi - 1) * med["drop"]) / fi
    # A real cycle: Fi consecutive updates of the ScTD setup (exactly one of them runs both passes),
    # interleaved with Fi full updates, so the measured average includes everything between steps.
    cycle_ratios = []
    cycle_setup = build(c, c.token_drop, fi) if c.cycles > 0 else None
    for _ in range(c.cycles):
        t_sctd = sum(step("sctd", cycle_setup, sample, update_num=u) for u in range(fi))
        t_full = sum(step("full", setups["full"], sample, update_num=u) for u in range(fi))
        cycle_ratios.append(t_sctd / t_full)

    K = keep_count(c.seq, c.token_drop)
    split = drop_layer_split(c.layers)
    masked = int(sample["target"].ne(PAD).sum()) / c.batch
    f_full = model_flops(c.layers, c.seq, c.seq, c.dim, c.ffn, drop=False)
    f_drop = model_flops(c.layers, c.seq, K, c.dim, c.ffn, split)
    fh_full = model_flops(c.layers, c.seq, c.seq, c.dim, c.ffn, masked=masked, drop=False)
    fh_drop = model_flops(c.layers, c.seq, K, c.dim, c.ffn, split, masked=masked)
    ideal = f_drop / f_full
    ideal_h = fh_drop / fh_full
    ideal_sctd = ((fi - 1) * f_drop + (f_drop + f_full)) / fi / f_full
    ideal_sctd_h = ((fi - 1) * fh_drop + (fh_drop + fh_full)) / fi / fh_full

    tokens = c.batch * c.seq
    print(f"config: L={c.layers} T={c.seq} C={c.dim} FFN={c.ffn} heads={c.heads} B={c.batch} p={c.token_drop} "
          f"K={K} split(d,last_kept)={split} Fi={fi} threads={c.threads} "
          f"medians of {c.repeats} after {c.warmup} warmup")
    print(f"{'mode':<22}{'step s':>9}{'tok/s':>9}{'ratio':>8}{'ideal enc':>11}{'ideal +head':>13}")
    rows = [("full", med["full"], 1.0, 1.0),
            (f"token drop p={c.token_drop}", med["drop"], ideal, ideal_h),
            (f"ScTD update (2 pass)", med["sctd"], (f_drop + f_full) / f_full, (fh_drop + fh_full) / fh_full),
            (f"ScTD avg Fi={fi}", sctd_avg, ideal_sctd, ideal_sctd_h)]
    for name, t, i_enc, i_head in rows:
        print(f"{name:<22}{t:>9.3f}{tokens / t:>9.0f}{t / med['full']:>8.3f}{i_enc:>11.3f}{i_head:>13.3f}")
    drop_ratio = med["drop"] / med["full"]
    print(f"token-drop ratio / ideal(enc) = {drop_ratio / ideal:.3f} (target within 5%: 0.95..1.05); "
          f"ScTD avg ratio = {sctd_avg / med['full']:.3f} (target <= 0.87)")
    if cycle_ratios:
        print(f"ScTD measured over {len(cycle_ratios)} real cycle(s) of {fi} updates vs {fi} full updates: "
              f"ratio {statistics.median(cycle_ratios):.3f} (ideal {ideal_sctd:.3f})")


if __name__ == "__main__":
    main()
