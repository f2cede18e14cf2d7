"""The checkpoint format in one place: what a file holds, how it is named, written, read and resumed.

    files.py          atomic writes and the one reader of every layout (load_checkpoint_file)
    upgrade.py        fairseq 0.9-0.12 RoBERTa layouts -> 0.12's (called by the reader)
    roberta_keys.py   fairseq 0.12's state-dict keys (zero BetterTransformer copies, `version`) <-> ours
    cfg.py            the grouped cfg a file stores <-> the flat argparse Namespace
    rng.py            the RNG state a file carries, for bit-exact resumes
    fsdp_state.py     full model/optimizer state under FSDP2 (gathered to save, re-sharded to load)
    names.py          fairseq's file names and keep rules
    save.py           the training checkpoint's contents and CheckpointManager (which files, in what order)
    restore.py        --restore-file / --finetune-from-model resolution and loading into the trainer
    resume_checks.py  a file checked against the run that loads it (shapes, data layout)
    save_dir.py       --save-dir made ready at start-up (write probe, lock, stale temp files)

fairseq's public loading functions stay where fairseq has them: fairseq.checkpoint_utils. This package
imports nothing on import, so low-level modules (the model, for roberta_keys) can use one file of it.
"""
