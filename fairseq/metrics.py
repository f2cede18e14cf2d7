"""fairseq.metrics: fairseq's older import path for fairseq.logging.metrics (same functions, same state)."""
from fairseq.logging.metrics import *  # noqa: F401,F403
from fairseq.logging.metrics import __all__  # noqa: F401
