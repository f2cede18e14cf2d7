"""fairseq.file_io.PathManager: fairseq's file-system facade, for local paths.

fairseq routes file access through iopath so that remote stores can be plugged in; this package
reads and writes local files only, so every method is the plain os / shutil / open call.
"""
from __future__ import annotations

import os
import shutil
from typing import List, Optional


class PathManager:
    """Static methods with fairseq's names and signatures over the local file system."""

    @staticmethod
    def open(path: str, mode: str = "r", buffering: int = -1, encoding: Optional[str] = None,
             errors: Optional[str] = None, newline: Optional[str] = None):
        return open(path, mode=mode, buffering=buffering, encoding=encoding, errors=errors, newline=newline)

    @staticmethod
    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if os.path.exists(dst_path) and not overwrite:
            raise FileExistsError(f"PathManager.copy: {dst_path} exists (pass overwrite=True)")
        return shutil.copyfile(src_path, dst_path) is not None

    @staticmethod
    def get_local_path(path: str, **kwargs) -> str:
        return path

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.exists(path)

    @staticmethod
    def isfile(path: str) -> bool:
        return os.path.isfile(path)

    @staticmethod
    def ls(path: str) -> List[str]:
        return os.listdir(path)

    @staticmethod
    def mkdirs(path: str) -> None:
        os.makedirs(path, exist_ok=True)

    @staticmethod
    def rm(path: str) -> None:
        os.remove(path)

    @staticmethod
    def chmod(path: str, mode: int) -> None:
        os.chmod(path, mode)

    @staticmethod
    def rename(src: str, dst: str) -> None:
        os.rename(src, dst)

    @staticmethod
    def register_handler(handler) -> None:
        raise NotImplementedError("PathManager.register_handler: only local paths are supported")

    @staticmethod
    def copy_from_local(local_path: str, dst_path: str, overwrite: bool = False, **kwargs) -> None:
        if os.path.exists(dst_path) and not overwrite:
            raise FileExistsError(f"PathManager.copy_from_local: {dst_path} exists (pass overwrite=True)")
        shutil.copyfile(local_path, dst_path)
