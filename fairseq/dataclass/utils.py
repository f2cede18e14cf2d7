"""PLACEHOLDER from the data branch so that fairseq's tests/utils.py imports; the api branch provides the
real convert_namespace_to_omegaconf."""


def convert_namespace_to_omegaconf(args):
    raise NotImplementedError("convert_namespace_to_omegaconf is provided by the api branch")
