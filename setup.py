"""Build hook: compiles the optional Cython fast path for token-block building.

Everything else is declared in pyproject.toml. If the compiler or Cython is missing the
extension is skipped and fairseq.data.token_blocks falls back to its numpy implementation.
"""
import os

from setuptools import setup


def _extensions():
    pyx = os.path.join("fairseq", "data", "_token_blocks.pyx")
    if not os.path.exists(pyx):
        return []
    try:
        import numpy
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        return []
    ext = Extension(
        "fairseq.data._token_blocks",
        [pyx],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    return cythonize([ext], language_level=3, quiet=True)


setup(ext_modules=_extensions())
