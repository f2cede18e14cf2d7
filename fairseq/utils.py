"""PLACEHOLDER (api branch): fairseq.utils is built by the data branch; at merge, keep that module and
add its one line re-exporting import_user_module from fairseq.user_dir (fairseq's public name)."""
from fairseq.user_dir import import_user_module  # noqa: F401
