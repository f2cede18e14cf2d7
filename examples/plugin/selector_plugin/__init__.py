"""A --user-dir plugin that adds a way of choosing the kept tokens (fairseq-sctd's token-selector table,
fairseq.token_drop.register_token_selector; real fairseq has no token dropping, so this plugin is ours only):

- selector `frozen_importance`: Hou et al.'s rule on the importance table as it was before the first
  update (the unigram surprisal -log p(v) of dict.txt, or --init-token-importance), never updated: a fixed
  prior instead of the running MLM loss.

    fairseq-train DATA --user-dir examples/plugin/selector_plugin --task masked_lm --criterion masked_lm \\
        --token-drop 0.5 --token-drop-importance frozen_importance ...
"""
from fairseq.token_drop import TokenSelector, register_token_selector, select_kept_positions, tie_break_keys


@register_token_selector("frozen_importance")
class FrozenImportanceSelector(TokenSelector):
    def __init__(self, dropper):
        super().__init__(dropper)
        self.scores = dropper.importance.scores.clone()  # built before any update (and before a resume loads)

    def select(self, src_tokens, sample_ids, update_num, keep_count):
        d = self.dropper
        keys = tie_break_keys(sample_ids.to(src_tokens.device), src_tokens.size(1), d.seed, update_num)
        return select_kept_positions(src_tokens, self.scores, keep_count, d.pad, d.forced_keep_ids, tie_break=keys)
