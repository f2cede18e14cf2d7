"""PLACEHOLDER from the data branch (fairseq.tasks.LegacyFairseqTask); the api branch provides the real one."""
from fairseq.tasks.base import FairseqTask


class LegacyFairseqTask(FairseqTask):
    def __init__(self, args):
        self.args = args
        self.datasets = {}
