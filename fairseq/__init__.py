"""fairseq-sctd: a clean-room, fairseq-compatible RoBERTa pretraining toolkit with token dropping and ScTD.

As in fairseq, importing the package imports the packages whose built-in classes register their names
(models, criterions, tasks, optimizers, lr schedules), so `--task`, `--arch`, ... choices are complete
before any command line is parsed and a --user-dir plugin can extend them.
"""

__version__ = "0.1.0"

import fairseq.models  # noqa: F401,E402
import fairseq.criterions  # noqa: F401,E402
import fairseq.tasks  # noqa: F401,E402
import fairseq.optim  # noqa: F401,E402
import fairseq.benchmark  # noqa: F401,E402  (fairseq's dummy_lm / dummy_masked_lm tasks)
