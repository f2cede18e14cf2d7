"""--wandb-project: the train_inner / train / valid records also go to Weights & Biases (fairseq's meaning).

One run per process, started by fairseq-train on the master rank (run name: $WANDB_NAME, else the
--save-dir folder name, as fairseq does). Without network the run is recorded offline (WANDB_MODE=offline,
sync it later with `wandb sync`) unless the user chose WANDB_MODE. Without the wandb package the flag
warns once and training goes on.
"""
from __future__ import annotations

import logging
import numbers
import os
import socket
from typing import Dict, Optional

logger = logging.getLogger(__name__)
_run = None


def _online(host: str = "api.wandb.ai", port: int = 443, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def start(project: str, save_dir: str) -> Optional[object]:
    """Start (once) the W&B run for --wandb-project; None when wandb is not installed."""
    global _run
    if _run is not None:
        return _run
    try:
        import wandb
    except ImportError:
        logger.warning(f"--wandb-project {project}: wandb is not installed (pip install wandb); not logging to W&B")
        return None
    if "WANDB_MODE" not in os.environ and not _online():
        os.environ["WANDB_MODE"] = "offline"
        logger.info("no network: W&B run recorded offline (upload it later with `wandb sync`)")
    name = os.environ.get("WANDB_NAME", os.path.basename(os.path.abspath(save_dir)))
    _run = wandb.init(project=project, name=name, reinit=False)
    return _run


def log(stats: Dict, tag: str, step: int) -> None:
    """Numeric stats as `<tag>/<key>` at `step` (updates), as fairseq's W&B wrapper names them
    (`valid_loss` from the log line is `valid/loss`); a no-op when no run was started."""
    if _run is None:
        return
    prefix = tag + "_"
    _run.log({f"{tag}/{k[len(prefix):] if k.startswith(prefix) else k}": float(v) for k, v in stats.items()
              if isinstance(v, numbers.Number) or hasattr(v, "item")}, step=step)


def finish() -> None:
    global _run
    if _run is not None:
        _run.finish()
        _run = None
