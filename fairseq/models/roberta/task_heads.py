"""A task's own classification heads when a checkpoint is restored into its model (fairseq's
RobertaModel.upgrade_state_dict_named, for training): heads of the checkpoint that match the task's are
kept, a head whose shape differs is re-initialised (with a warning), heads the task does not use are
dropped, and the task's heads missing from the checkpoint (a pretrained masked LM has none) start from
their fresh initialisation. sentence_prediction and sentence_ranking build their models this way."""
import logging

logger = logging.getLogger("fairseq.tasks.sentence_prediction")


def keep_task_heads(model):
    """`model`, whose load_state_dict applies upgrade_heads first."""
    plain_load = model.load_state_dict

    def load_state_dict(state_dict, strict: bool = True, **kwargs):
        return plain_load(upgrade_heads(state_dict, model), strict=strict, **kwargs)

    model.load_state_dict = load_state_dict
    return model


def upgrade_heads(state_dict, model):
    """fairseq's head handling on load: keep matching heads, re-init mismatched or missing ones,
    drop heads this task does not use."""
    prefix = "classification_heads."
    sd = dict(state_dict)
    ckpt_heads = {k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)}
    for name in sorted(ckpt_heads):
        keys = [k for k in sd if k.startswith(f"{prefix}{name}.")]
        if name not in model.classification_heads:
            logger.warning(f"deleting classification head ({name}) from checkpoint not present in current model")
            for k in keys:
                del sd[k]
            continue
        mine = model.classification_heads[name]
        theirs = sd.get(f"{prefix}{name}.out_proj.weight")
        inner = sd.get(f"{prefix}{name}.dense.weight")
        if theirs is None or inner is None or theirs.shape != mine.out_proj.weight.shape \
                or inner.shape != mine.dense.weight.shape:
            got = None if theirs is None else theirs.shape[0]
            logger.warning(f"deleting classification head ({name}) from checkpoint with different dimensions "
                           f"than current model: {got} classes in checkpoint, "
                           f"{mine.out_proj.out_features} here (re-initialised)")
            for k in keys:
                del sd[k]
    for name, head in model.classification_heads.items():
        for k, v in head.state_dict().items():
            key = f"{prefix}{name}.{k}"
            if key not in sd:
                logger.info(f"initialising {key} (not in checkpoint)")
                sd[key] = v
    return sd
