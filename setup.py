"""Build hook: compiles tflite_kernels/src/*.c into dc_keras/_native/libdc_huffdecode.so.

The library is plain C99 with no Python or TensorFlow dependency; it is loaded with ctypes
(codec) and by TFLite interpreters (custom op registerer / external delegate). Sources and flags
come from tflite_kernels/flags.mk, the one build description the Makefile also includes.
"""
import glob
import os
import re
import shlex
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = os.path.join(HERE, "tflite_kernels")
LIB_NAME = "libdc_huffdecode.so"
NO_COMPILER = (
    "dc_keras needs a C99 compiler to build its decoder library ({lib}): apt install gcc "
    "(Debian/Ubuntu; dnf install gcc, xcode-select --install on macOS), or set CC to one. {detail}"
)


FLAGS_MK = os.path.join(KERNELS, "flags.mk")


def read_flags(path=FLAGS_MK):
    """The ``NAME := value`` assignments of flags.mk as {NAME: [words]}."""
    flags = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^(DC_[A-Z_]+)\s*:=\s*(.*?)\s*$", line)
            if m:
                flags[m.group(1)] = shlex.split(m.group(2))
    return flags


class BuildNativeLib(build_ext):
    """Builds the C library as a plain shared object (not a Python extension module), always from
    the sources: a library left in the checkout by `make` is never shipped instead."""

    def finalize_options(self):
        super().finalize_options()
        self.force = True  # mtimes say nothing about which flags/sources a present .so was built with

    def get_ext_filename(self, fullname):
        # Called with the full dotted name or only its last part, depending on the code path.
        parts = fullname.split(".")
        if parts[-1] == "libdc_huffdecode":
            return os.path.join(*parts[:-1], LIB_NAME)
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext):
        return []  # no PyInit_ symbol: this is not a Python module

    def build_extension(self, ext):
        from setuptools.errors import CCompilerError, CompileError, LinkError

        words = list(getattr(self.compiler, "compiler_so", None) or [])  # CC from the environment or Python's build
        cc = words[: next((i for i, w in enumerate(words) if w.startswith("-")), len(words))]  # e.g. ["ccache", "gcc"]
        if cc and shutil.which(cc[0]) is None:
            raise SystemExit(NO_COMPILER.format(lib=LIB_NAME, detail=f"({cc[0]!r} was not found.)"))
        if cc and hasattr(self.compiler, "set_executable"):
            # Exactly flags.mk's flags: not Python's own CFLAGS (-g -O3 -fwrapv ...) nor its LDSHARED flags.
            self.compiler.set_executable("compiler_so", cc)
            self.compiler.set_executable("linker_so", cc + ["-shared"])
        try:
            super().build_extension(ext)
        except (CCompilerError, CompileError, LinkError) as exc:
            raise SystemExit(NO_COMPILER.format(lib=LIB_NAME, detail=f"(The compiler failed: {exc})")) from None


def _native_extension():
    flags = read_flags()
    sources = sorted(os.path.relpath(p, HERE) for pattern in flags["DC_SOURCES"]
                     for p in glob.glob(os.path.join(KERNELS, pattern)))
    if not sources:
        return []
    return [Extension(
        "dc_keras._native.libdc_huffdecode",
        sources=sources,
        include_dirs=[os.path.join("tflite_kernels", d) for d in flags["DC_INCLUDE"]],
        extra_compile_args=flags["DC_CFLAGS"],  # no DC_WERROR for pip installs (see flags.mk)
        extra_link_args=[f for f in flags["DC_LDFLAGS"] if f != "-shared"] + flags["DC_LIBS"],
    )]


setup(ext_modules=_native_extension(), cmdclass={"build_ext": BuildNativeLib})
