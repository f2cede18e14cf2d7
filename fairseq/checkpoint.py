"""Checkpoints: fairseq's names, keep rules and contents (FAIRSEQ_SPEC section 7), written atomically.

Writing: checkpoint_last.pt (when kept) is written first, to a temp file in the same directory
(``.tmp-<pid>-...``, so a later trainer can tell a dead writer's leftovers), flushed + fsynced and
then os.replace'd into place; the other names are atomic *copies* of it (no hard links, so deleting
or overwriting one never affects another). A crash or exception mid-save leaves every existing file
untouched, and checkpoint_last.pt always is the newest complete checkpoint: a save that fails (a full
disk) after it was written leaves it complete, one that fails before leaves the previous one. A failed
save is one error naming the file and the cause (checkpoint_dir.SaveDirError), on every rank.

Contents differ from fairseq's in one deliberate way: our cfg is plain dicts (cfg["model"] is a
dict, not an argparse.Namespace), so our files load with torch.load(weights_only=True). fairseq's
own files are read with argparse.Namespace allow-listed. extra_state also carries `rng` (torch,
numpy, python, cuda) and `loss_scaler`, so a resumed run continues bit-for-bit.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tempfile
from typing import Dict, List, Optional

import numpy as np
import torch

from fairseq import checkpoint_upgrade, options, resume_checks
from fairseq.checkpoint_dir import TEMP_PREFIX, SaveDirError
from fairseq.distributed import utils as distributed

logger = logging.getLogger(__name__)
EMBED_KEY = "encoder.sentence_encoder.embed_tokens.weight"


# ---- low-level file operations ----------------------------------------------------------------
def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _atomic_write(path: str, write_fn) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{os.path.basename(path)}-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give checkpoints the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


class _WriteErrors:
    """A file object that keeps the OSError of a failed write: torch.save reports a full disk as an
    opaque RuntimeError ("unexpected pos ..."), this lets atomic_save raise the OSError instead."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        return self.f.flush()


def atomic_save(obj, path: str) -> None:
    """torch.save to `path` so that readers see either the old file or the complete new one."""
    def write(f):
        out = _WriteErrors(f)
        try:
            torch.save(obj, out)
        except RuntimeError:
            if out.error is not None:
                raise out.error from None
            raise
    _atomic_write(path, write)


def atomic_copy(src: str, dst: str) -> None:
    def write(f):
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f, length=1 << 20)
    _atomic_write(dst, write)


def load_checkpoint_file(path: str) -> Dict:
    """torch.load(weights_only=True), with argparse.Namespace allowed for fairseq's own files, upgraded
    to fairseq 0.12's layout whichever fairseq (0.9-0.12) or we wrote it (fairseq/checkpoint_upgrade.py)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(checkpoint_upgrade.SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a cut-off zip says OSError [Errno 22], other files many pickle/zip errors
        reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        raise ValueError(f"{path}: truncated or not a checkpoint ({reason})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a fairseq checkpoint (no 'model' entry)")
    return checkpoint_upgrade.upgrade_state(state, path)


# ---- rng ----------------------------------------------------------------------------------------
def rng_state() -> Dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                       float(cached)],
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---- names and keep rules -----------------------------------------------------------------------
def checkpoint_names(args, epoch: int, updates: int, end_of_epoch: bool, val_loss: Optional[float],
                     best: Optional[float]) -> List[str]:
    """fairseq's file names to write for this save, in fairseq's order."""
    suffix = getattr(args, "checkpoint_suffix", "") or ""
    new_best = val_loss is not None and (best is None or is_better(args, val_loss, best))
    conds = [
        (f"checkpoint{epoch}{suffix}.pt",
         end_of_epoch and not args.no_epoch_checkpoints and epoch % args.save_interval == 0),
        (f"checkpoint_{epoch}_{updates}{suffix}.pt",
         not end_of_epoch and args.save_interval_updates > 0 and updates % args.save_interval_updates == 0),
        (f"checkpoint_best{suffix}.pt", new_best),
    ]
    if val_loss is not None and getattr(args, "keep_best_checkpoints", -1) > 0:
        conds.append(_best_n_name(args, epoch, updates, float(val_loss), best, suffix))
    conds.append((f"checkpoint_last{suffix}.pt", not args.no_last_checkpoints))
    return [name for name, ok in conds if ok]


def _best_n_pattern(args, suffix: str) -> str:
    return rf"checkpoint\.best_{re.escape(args.best_checkpoint_metric)}_(\d+\.?\d*){re.escape(suffix)}\.pt"


def _best_n_name(args, epoch: int, updates: int, val_loss: float, best: Optional[float], suffix: str):
    """fairseq 0.12.2's --keep-best-checkpoints file: checkpoint.best_<metric>_<value:.3f><digit><suffix>.pt.

    The digit (0..N-1, seeded by epoch, updates and value) tells apart equal values; it stays part of
    the number when files are ranked, as in fairseq. A file is written when the value beats the worst
    one on disk (or, with none on disk, when it is the best so far).
    """
    kept = _matching(args.save_dir, _best_n_pattern(args, suffix))
    if kept:
        worst = kept[0][0] if not getattr(args, "maximize_best_checkpoint_metric", False) else kept[-1][0]
    else:
        pick = max if getattr(args, "maximize_best_checkpoint_metric", False) else min
        worst = val_loss if best is None else pick(best, val_loss)
    seed = int(hash((epoch, updates, val_loss)) % 1e6)  # fairseq's numpy_seed(epoch, updates, val_loss)
    digit = np.random.RandomState(seed).randint(0, args.keep_best_checkpoints)
    name = f"checkpoint.best_{args.best_checkpoint_metric}_{val_loss:.3f}{digit}{suffix}.pt"
    return name, is_better(args, val_loss, worst)


def is_better(args, a: float, b: float) -> bool:
    return a >= b if getattr(args, "maximize_best_checkpoint_metric", False) else a <= b


def _matching(save_dir: str, pattern: str):
    """[(number in group 1, name)] of the files in save_dir matching pattern, largest number first."""
    found = []
    for name in os.listdir(save_dir) if os.path.isdir(save_dir) else []:
        m = re.fullmatch(pattern, name)
        if m:
            found.append((float(m.group(1)), name))
    return sorted(found, reverse=True)


def _remove(save_dir: str, entries) -> None:
    for _, name in entries:
        os.remove(os.path.join(save_dir, name))


def prune_checkpoints(args) -> None:
    suffix = getattr(args, "checkpoint_suffix", "") or ""
    esc = re.escape(suffix)
    if args.keep_interval_updates > 0:
        found = _matching(args.save_dir, rf"checkpoint_\d+_(\d+){esc}\.pt")
        pattern = getattr(args, "keep_interval_updates_pattern", -1)
        if pattern > 0:  # multiples of the pattern are kept forever and do not count
            found = [(u, n) for u, n in found if int(u) % pattern != 0]
        _remove(args.save_dir, found[args.keep_interval_updates:])
    if args.keep_last_epochs > 0:
        _remove(args.save_dir, _matching(args.save_dir, rf"checkpoint(\d+){esc}\.pt")[args.keep_last_epochs:])
    if getattr(args, "keep_best_checkpoints", -1) > 0:
        found = _matching(args.save_dir, _best_n_pattern(args, suffix))
        if not getattr(args, "maximize_best_checkpoint_metric", False):
            found = found[::-1]
        _remove(args.save_dir, found[args.keep_best_checkpoints:])


# ---- building and writing a checkpoint ----------------------------------------------------------
def model_state(model) -> Dict[str, torch.Tensor]:
    """fairseq-keyed fp32 CPU state dict (a collective under FSDP: every rank must call it)."""
    inner = distributed.unwrap(model)
    if distributed.get_world_size() == 1 or not distributed._is_fsdp(inner):
        sd = inner.fairseq_state_dict()  # fairseq's keys, so real fairseq loads our checkpoints
    else:
        sd = distributed.model_state_dict(model)
    out = {}
    for k, v in sd.items():
        v = v.detach()
        if v.is_floating_point() and v.dtype != torch.float32:
            v = v.float()
        out[k] = v.cpu()
    return out


def build_state(args, trainer, epoch_itr, val_loss: Optional[float], best: Optional[float]) -> Dict:
    extra = {
        "metrics": [],
        "previous_training_time": trainer.cumulative_training_time(),
        "train_iterator": epoch_itr.state_dict() if epoch_itr is not None else None,
        "val_loss": val_loss,
        "rng": rng_state(),
        "loss_scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
    }
    if best is not None:
        extra["best"] = best
    state = {
        "args": None,
        "cfg": options.args_to_cfg(args),
        "model": model_state(trainer.model),
        "criterion": None,
        "optimizer_history": [{
            "criterion_name": type(trainer.criterion).__name__,
            "optimizer_name": type(trainer.optimizer).__name__,
            "lr_scheduler_state": trainer.lr_scheduler.state_dict(),
            "num_updates": trainer.num_updates,
        }],
        "task_state": trainer.task.state_dict(),
        "extra_state": extra,
    }
    if not args.no_save_optimizer_state:
        opt = distributed.full_optimizer_state(trainer.optimizer.state_dict())  # FSDP: gather shards
        if trainer.scaler is not None:
            opt["loss_scale"] = trainer.scaler.loss_scale
        state["last_optimizer_state"] = opt
    return state


class CheckpointManager:
    """Tracks the best validation metric and writes fairseq's set of files."""

    def __init__(self, args):
        self.args = args
        self.best: Optional[float] = None

    def save(self, trainer, epoch_itr, val_loss: Optional[float], end_of_epoch: bool,
             only_last: bool = False) -> List[str]:
        args = self.args
        if args.no_save:
            return []
        epoch = epoch_itr.epoch
        updates = trainer.num_updates
        names = checkpoint_names(args, epoch, updates, end_of_epoch, val_loss, self.best)
        if only_last:
            names = [n for n in names if n.startswith("checkpoint_last")] or \
                [f"checkpoint_last{getattr(args, 'checkpoint_suffix', '') or ''}.pt"]
        if val_loss is not None and (self.best is None or is_better(args, val_loss, self.best)):
            self.best = val_loss
        if not names:
            return []
        state = build_state(args, trainer, epoch_itr, val_loss, self.best)  # collective under FSDP
        failure = None
        if distributed.is_master():
            paths = [os.path.join(args.save_dir, n) for n in names]
            failure = _write(state, paths, updates)
            if failure is None:
                logger.info(f"saved checkpoint {paths[0]} (epoch {epoch} @ {updates} updates, score {val_loss})"
                            + (f"; copied to {', '.join(os.path.basename(p) for p in paths[1:])}"
                               if paths[1:] else ""))
                prune_checkpoints(args)
        failure = distributed.broadcast_object(failure)  # also the barrier: every rank waits for the write
        if failure is not None:
            raise SaveDirError(failure)
        return names


def _write(state: Dict, paths: List[str], updates: int) -> Optional[str]:
    """Write `state` to paths (checkpoint_last.pt first, the rest copied from it); the failure as one
    line naming the file and the cause, or None."""
    order = sorted(paths, key=lambda p: not os.path.basename(p).startswith("checkpoint_last"))
    done = []
    for p in order:
        try:
            if done:
                atomic_copy(done[0], p)
            else:
                atomic_save(state, p)
        except OSError as e:
            left = (f"{os.path.basename(done[0])} (update {updates}) is complete"
                    if done and os.path.basename(done[0]).startswith("checkpoint_last")
                    else "the previous checkpoints are unchanged")
            return f"could not save checkpoint {p}: {e.strerror or e}; {left}"
        done.append(p)
    return None


# ---- loading ------------------------------------------------------------------------------------
def resolve_restore_path(args):
    """(path or None, finetune: bool) following fairseq's --restore-file / --finetune-from-model rules.

    The default restore file is checkpoint_last.pt in --save-dir; other relative names are looked up
    in --save-dir first, then relative to the current directory. An explicit file that does not
    exist is an error (the default one simply means "start from scratch").
    """
    suffix = getattr(args, "checkpoint_suffix", "") or ""
    default = args.restore_file == "checkpoint_last.pt"
    finetune = getattr(args, "finetune_from_model", None)
    if finetune and not default:
        raise ValueError("--finetune-from-model and a non-default --restore-file cannot be combined")
    if default:
        path = os.path.join(args.save_dir, f"checkpoint_last{suffix}.pt")
        if os.path.isfile(path):
            return path, False
        if finetune:
            if not os.path.isfile(finetune):
                raise FileNotFoundError(f"--finetune-from-model: checkpoint not found: {finetune}")
            return finetune, True
        return None, False
    rf = args.restore_file
    candidates = [rf] if os.path.isabs(rf) else [os.path.join(args.save_dir, rf), rf]
    for c in candidates:
        if os.path.isfile(c):
            return c, False
    raise FileNotFoundError(f"--restore-file not found: {rf} (looked in {', '.join(candidates)})")


def check_vocab(state: Dict, model, path: str) -> None:
    embed = state["model"].get(EMBED_KEY)
    ours = distributed.unwrap(model).state_dict().get(EMBED_KEY)
    if embed is not None and ours is not None and embed.shape[0] != ours.shape[0]:
        raise ValueError(f"{path}: the checkpoint's vocabulary has {embed.shape[0]} entries but the dictionary "
                         f"(with <mask>) gives {ours.shape[0]}; use the dict.txt the checkpoint was trained with")


def load_into_trainer(trainer, path: str, reset_optimizer=False, reset_lr_scheduler=False,
                      reset_meters=False, restore_rng=True) -> Dict:
    """Load model (+ optimizer, schedule, num_updates, scaler, task state unless reset); return extra_state."""
    state = load_checkpoint_file(path)
    check_vocab(state, trainer.model, path)
    resume_checks.check_model_shapes(state["model"], trainer.model, path)
    if restore_rng:  # a resume that continues the saved data position (not --reset-dataloader, not finetuning)
        resume_checks.check_data_layout(state, trainer.args, path)
    distributed.load_model_state_dict(trainer.model, state["model"], strict=True)
    ours = isinstance(state.get("cfg"), dict) and isinstance(state["cfg"].get("model"), dict)
    extra = state.get("extra_state") or {}
    history = state.get("optimizer_history") or []
    if not reset_optimizer and history:
        last = history[-1]
        opt_state = state.get("last_optimizer_state")
        if opt_state is not None:
            n_saved = sum(len(g["params"]) for g in opt_state["param_groups"])
            if ours and n_saved == len(trainer.params):
                opt_state = distributed.shard_optimizer_state(trainer.params, opt_state)  # FSDP: re-shard
                trainer.optimizer.load_state_dict({k: v for k, v in opt_state.items() if k != "loss_scale"})
            else:
                logger.warning(f"{path}: optimizer state not restored (it indexes {n_saved} parameters, "
                               f"we have {len(trainer.params)}); pass --reset-optimizer to silence this")
        if not reset_lr_scheduler and last.get("lr_scheduler_state"):
            trainer.lr_scheduler.load_state_dict(last["lr_scheduler_state"])
        trainer.set_num_updates(int(last.get("num_updates", 0)))
        if trainer.scaler is not None:
            if extra.get("loss_scaler"):
                trainer.scaler.load_state_dict(extra["loss_scaler"])
            elif opt_state is not None and "loss_scale" in opt_state:
                trainer.scaler.loss_scale = float(opt_state["loss_scale"])
    if state.get("task_state"):
        trainer.task.load_state_dict(state["task_state"])
    if not reset_meters:
        trainer.previous_training_time = float(extra.get("previous_training_time", 0.0) or 0.0)
    if restore_rng and extra.get("rng") is not None:
        set_rng_state(extra["rng"])
    logger.info(f"loaded checkpoint {path} (num_updates {trainer.num_updates})")
    return extra
