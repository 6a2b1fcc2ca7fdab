"""Build hook: compiles tflite_kernels/src/*.c into dc_keras/_native/libdc_huffdecode.so.

The library is plain C99 with no Python or TensorFlow dependency; it is loaded with ctypes
(codec) and by TFLite interpreters (custom op registerer / external delegate).
"""
import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_NAME = "libdc_huffdecode.so"


class BuildNativeLib(build_ext):
    """Builds the C library as a plain shared object (not a Python extension module)."""

    def get_ext_filename(self, fullname):
        # Called with the full dotted name or only its last part, depending on the code path.
        parts = fullname.split(".")
        if parts[-1] == "libdc_huffdecode":
            return os.path.join(*parts[:-1], LIB_NAME)
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext):
        return []  # no PyInit_ symbol: this is not a Python module


sources = sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "tflite_kernels", "src", "*.c")))
ext_modules = []
if sources:
    ext_modules.append(
        Extension(
            "dc_keras._native.libdc_huffdecode",
            sources=sources,
            include_dirs=["tflite_kernels/include"],
            extra_compile_args=["-std=c99", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra"],
            extra_link_args=["-Wl,-z,defs", "-lm"],
        )
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildNativeLib})
