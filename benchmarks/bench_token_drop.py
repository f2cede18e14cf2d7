"""Step time of full training vs token dropping vs ScTD, side by side in one process (SPEC section 5).

One step = forward + backward + Adam step through the real code paths: RobertaModel, the masked_lm
criterion, TokenDropper selection and fairseq.sctd.train_step (which also feeds the importance table),
plus importance.apply() as after_update does. Steps of the three kinds are interleaved round by round so
machine noise hits all of them alike; we report medians over --repeats rounds after --warmup rounds.

ScTD's average step over a cycle of Fi updates is (t_sctd_update + (Fi - 1) * t_drop) / Fi, where
t_sctd_update is the measured time of an update that runs both passes.

Beside every measured ratio we print the ideal ratio from the multiply-adds of the exact configuration
(fairseq.flops: encoder layers only, and "+head" with the LM head on the masked rows).

    python benchmarks/bench_token_drop.py                       # L=12, T=512, C=256, FFN 1024, 4 heads, B=4
    python benchmarks/bench_token_drop.py --dim 128 256 --seq 128 --batch 16 --clock process --threads 1
    python benchmarks/bench_token_drop.py --repeats 1 --warmup 1 --layers 4 --seq 128   # smoke run

--dim takes several widths (FFN = 4 x width unless --ffn is given); each width is a separate set of
interleaved rounds. --clock process times CPU seconds of this process instead of wall time: on a machine
shared with other jobs that is the steadier measure (use it with --threads 1).
"""
from __future__ import annotations

import argparse
import statistics
import time
import types

import torch

VOCAB = 7713
PAD, MASK = 1, VOCAB - 1


def build(c, token_drop: float, interval: int, adam: str = "fused"):
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
    crit = lookup("criterion", "masked_lm").build_criterion(args, task)
    opt = Adam(model.parameters(), lr=1e-4, eps=1e-6, weight_decay=0.01, fused=adam == "fused")
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


def ideal_ratios(c, masked_rows: float):
    """Ideal FLOP ratios vs a full step, encoder-only and encoder + LM head: (token-dropping step,
    ScTD's full pass). The full pass has no LM head and runs the last layer for <s> alone (w_full = 0)."""
    from fairseq.flops import roberta_train_flops, sctd_full_pass_ratio, token_drop_step_ratio
    enc = token_drop_step_ratio(c.layers, c.seq, c.dim, c.ffn, c.token_drop)
    full_pass = sctd_full_pass_ratio(c.layers, c.seq, c.dim, c.ffn)
    full_enc = roberta_train_flops(c.layers, c.seq, c.dim, c.ffn, VOCAB, 0)
    head = roberta_train_flops(0, c.seq, c.dim, c.ffn, VOCAB, masked_rows)
    return ((enc, (enc * full_enc + head) / (full_enc + head)),
            (full_pass, full_pass * full_enc / (full_enc + head)))


def run(c, clock):
    def timed_step(kind, s, update_num):
        t0 = clock()
        step(kind, s, sample, update_num)
        return clock() - t0

    sample = make_batch(c)
    lanes = {(kind, adam): build(c, p, fi, adam) for adam in c.adam
             for kind, p, fi in (("full", 0.0, 0), ("drop", c.token_drop, 0), ("sctd", c.token_drop, 1))}
    times = {k: [] for k in lanes}
    for r in range(c.warmup + c.repeats):  # every lane (kind x Adam kernel) once per round
        for (kind, adam), s in lanes.items():
            dt = timed_step(kind, s, update_num=r + 1 if kind == "drop" else r)
            if r >= c.warmup:
                times[(kind, adam)].append(dt)
    all_med = {k: statistics.median(v) for k, v in times.items()}
    for adam in c.adam:
        report(c, timed_step, sample, {kind: all_med[(kind, adam)] for kind in ("full", "drop", "sctd")},
               lanes[("full", adam)], adam)
    if len(c.adam) > 1:
        base = c.adam[0]
        print("; ".join(f"{adam} / {base} step time: " + ", ".join(
            f"{kind} {all_med[(kind, adam)] / all_med[(kind, base)]:.3f}" for kind in ("full", "drop", "sctd"))
            for adam in c.adam[1:]), flush=True)


def report(c, timed_step, sample, med, full_lane, adam):
    """The table of one Adam kernel's lanes (and its real ScTD cycles)."""
    from fairseq.token_drop import drop_layer_split, keep_count

    fi = c.sctd_interval
    sctd_avg = (med["sctd"] + (fi - 1) * med["drop"]) / fi
    # A real cycle: Fi consecutive updates of the ScTD setup (exactly one of them runs both passes),
    # interleaved with Fi full updates, so the measured average includes everything between steps.
    cycle_ratios = []
    cycle_setup = build(c, c.token_drop, fi, adam) if c.cycles > 0 else None
    for _ in range(c.cycles):
        t_sctd = sum(timed_step("sctd", cycle_setup, update_num=u) for u in range(fi))
        t_full = sum(timed_step("full", full_lane, update_num=u) for u in range(fi))
        cycle_ratios.append(t_sctd / t_full)

    K = keep_count(c.seq, c.token_drop)
    split = drop_layer_split(c.layers)
    (ideal, ideal_h), (pass_enc, pass_h) = ideal_ratios(c, int(sample["target"].ne(PAD).sum()) / c.batch)
    ideal_sctd, ideal_sctd_h = ideal + pass_enc / fi, ideal_h + pass_h / fi

    tokens = c.batch * c.seq
    print(f"config: L={c.layers} T={c.seq} C={c.dim} FFN={c.ffn} heads={c.heads} B={c.batch} p={c.token_drop} "
          f"K={K} split(d,last_kept)={split} Fi={fi} threads={c.threads} {c.clock} clock, {adam} Adam, "
          f"medians of {c.repeats} after {c.warmup} warmup")
    print(f"{'mode':<22}{'step s':>9}{'tok/s':>9}{'ratio':>8}{'ideal enc':>11}{'ideal +head':>13}")
    rows = [("full", med["full"], 1.0, 1.0),
            (f"token drop p={c.token_drop}", med["drop"], ideal, ideal_h),
            ("ScTD update (2 pass)", med["sctd"], ideal + pass_enc, ideal_h + pass_h),
            (f"ScTD avg Fi={fi}", sctd_avg, ideal_sctd, ideal_sctd_h)]
    for name, t, i_enc, i_head in rows:
        print(f"{name:<22}{t:>9.3f}{tokens / t:>9.0f}{t / med['full']:>8.3f}{i_enc:>11.3f}{i_head:>13.3f}")
    drop_ratio = med["drop"] / med["full"]
    print(f"token-drop ratio / ideal(enc) = {drop_ratio / ideal:.3f}, / ideal(+head) = {drop_ratio / ideal_h:.3f}; "
          f"ScTD avg ratio = {sctd_avg / med['full']:.3f} (target <= 0.85)", flush=True)
    if cycle_ratios:
        print(f"ScTD measured over {len(cycle_ratios)} real cycle(s) of {fi} updates vs {fi} full updates: "
              f"ratio {statistics.median(cycle_ratios):.3f} (ideal {ideal_sctd:.3f})", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--dim", type=int, nargs="+", default=[256], help="one or more widths")
    ap.add_argument("--ffn", type=int, default=None, help="FFN width (default 4 x width)")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--token-drop", type=float, default=0.5)
    ap.add_argument("--sctd-interval", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=["wall", "process"], default="wall")
    ap.add_argument("--adam", nargs="+", choices=["fused", "foreach"], default=["fused"],
                    help="Adam kernel(s) of fairseq.optim.adam; several: their lanes interleave in the same rounds")
    ap.add_argument("--cycles", type=int, default=1,
                    help="also time this many real ScTD cycles of Fi updates against Fi full updates (0 = skip)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from fairseq.cpu_memory import keep_freed_memory
    keep_freed_memory()  # as fairseq-train does (see fairseq/cpu_memory.py)
    clock = time.perf_counter if a.clock == "wall" else time.process_time
    for dim in a.dim:
        c = argparse.Namespace(**dict(vars(a), dim=dim, ffn=a.ffn or 4 * dim))
        run(c, clock)


if __name__ == "__main__":
    main()
