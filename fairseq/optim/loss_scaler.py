"""Dynamic fp16 loss scaling with fairseq's semantics (FAIRSEQ_SPEC section 6).

- The loss is multiplied by `scale` before backward; gradients are unscaled by the trainer.
- An overflow (inf/NaN gradient norm) divides the scale by `factor` (floored at --threshold-loss-scale)
  and the update is skipped: `check_overflow` raises OverflowError. If the scale would fall to
  --min-loss-scale or below, FloatingPointError stops training.
- After a good step, the scale is multiplied by `factor` whenever (iter - last_overflow_iter) is a
  multiple of the window.
"""
from __future__ import annotations

import math


def default_scale_window(world_size: int, update_freq: int) -> int:
    return int(2 ** 14 / max(1, world_size) / max(1, update_freq))


class DynamicLossScaler:
    def __init__(self, init_scale: float = 2.0 ** 15, scale_factor: float = 2.0, scale_window: int = 2000,
                 tolerance: float = 0.0, threshold: float | None = None, min_loss_scale: float = 1e-4):
        self.loss_scale = float(init_scale)
        self.scale_factor = scale_factor
        self.scale_window = max(1, int(scale_window))
        self.tolerance = tolerance
        self.threshold = threshold
        self.min_loss_scale = min_loss_scale
        self._iter = 0
        self._last_overflow_iter = -1
        self._last_rescale_iter = -1
        self._overflows_since_rescale = 0

    def scale(self, loss):
        return loss * self.loss_scale

    def update(self) -> None:
        """Call after every successful (non-overflow) step."""
        if (self._iter - self._last_overflow_iter) % self.scale_window == 0:
            self.loss_scale *= self.scale_factor
            self._last_rescale_iter = self._iter
        self._iter += 1

    def _decrease(self) -> None:
        self.loss_scale /= self.scale_factor
        if self.threshold is not None:
            self.loss_scale = max(self.loss_scale, self.threshold)

    def check_overflow(self, grad_norm: float) -> None:
        """Raise OverflowError (skip this update) or FloatingPointError (give up) on a non-finite norm."""
        if math.isfinite(grad_norm):
            return
        previous = self.loss_scale
        since_rescale = self._iter - self._last_rescale_iter
        self._last_overflow_iter = self._iter
        self._overflows_since_rescale += 1
        if self._overflows_since_rescale / float(since_rescale) >= self.tolerance:
            self._decrease()
            self._last_rescale_iter = self._iter
            self._overflows_since_rescale = 0
        if self.loss_scale <= self.min_loss_scale:
            self.loss_scale = previous
            raise FloatingPointError(
                f"minimum loss scale reached ({self.min_loss_scale}); the loss is probably exploding: "
                "try a lower --lr or a --clip-norm")
        self._iter += 1
        raise OverflowError(f"gradient overflow; setting loss scale to {self.loss_scale:g}")

    def state_dict(self) -> dict:
        return {"loss_scale": self.loss_scale, "iter": self._iter, "last_overflow_iter": self._last_overflow_iter,
                "last_rescale_iter": self._last_rescale_iter, "overflows_since_rescale": self._overflows_since_rescale}

    def load_state_dict(self, state: dict) -> None:
        self.loss_scale = float(state["loss_scale"])
        self._iter = int(state.get("iter", 0))
        self._last_overflow_iter = int(state.get("last_overflow_iter", -1))
        self._last_rescale_iter = int(state.get("last_rescale_iter", -1))
        self._overflows_since_rescale = int(state.get("overflows_since_rescale", 0))
