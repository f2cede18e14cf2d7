"""fairseq.optim.lr_scheduler: the --lr-scheduler table and fairseq 0.12.2's schedules, one module each
(as fairseq lays them out); importing the package registers them all."""
from fairseq.optim.lr_scheduler.fairseq_lr_scheduler import (  # noqa: F401
    FairseqLRScheduler,
    LegacyFairseqLRScheduler,
)
from fairseq.optim.lr_scheduler.registry import (  # noqa: F401
    LR_SCHEDULER_DATACLASS_REGISTRY,
    LR_SCHEDULER_REGISTRY,
    build_lr_scheduler,
    register_lr_scheduler,
)
from fairseq.optim.lr_scheduler.cosine_lr_scheduler import CosineLRSchedule  # noqa: F401
from fairseq.optim.lr_scheduler.fixed_schedule import FixedLRSchedule  # noqa: F401
from fairseq.optim.lr_scheduler.inverse_square_root_schedule import InverseSquareRootSchedule  # noqa: F401
from fairseq.optim.lr_scheduler.manual_lr_scheduler import ManualSchedule  # noqa: F401
from fairseq.optim.lr_scheduler.pass_through import PassThroughScheduleSchedule  # noqa: F401
from fairseq.optim.lr_scheduler.polynomial_decay_schedule import PolynomialDecayLRSchedule  # noqa: F401
from fairseq.optim.lr_scheduler.reduce_lr_on_plateau import ReduceLROnPlateauLRSchedule  # noqa: F401
from fairseq.optim.lr_scheduler.step_lr_scheduler import StepLRSchedule  # noqa: F401
from fairseq.optim.lr_scheduler.tri_stage_lr_scheduler import TriStageLRSchedule  # noqa: F401
from fairseq.optim.lr_scheduler.triangular_lr_scheduler import TriangularLRSchedule  # noqa: F401

# The names this module had before it became a package (kept for code and plugins that import them).
PolynomialDecaySchedule = PolynomialDecayLRSchedule
FixedSchedule = FixedLRSchedule
