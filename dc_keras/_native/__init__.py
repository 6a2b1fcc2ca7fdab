"""Locating and loading the native library ``libdc_huffdecode.so``.

The library holds the packed-tensor decoder (``dc_codec.h``) and the ``HuffDecode`` TFLite op.
It is built by ``make install`` (or ``pip install .``) into this package directory. Set the
environment variable ``DC_KERAS_LIBRARY`` to use a library built elsewhere.
"""
import ctypes
import os
import platform
import struct
import sys
import threading

LIBRARY_NAME = "libdc_huffdecode.so"
_ENV = "DC_KERAS_LIBRARY"
_lock = threading.Lock()
_cdll = None


# ELF e_machine values (elf.h) of the machines platform.machine() names: a library built for another
# one is said as such (dlopen's words for it were "cannot open shared object file: No such file or
# directory", of a file that is there)
_ELF_MACHINES = {3: "x86 (32-bit)", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "s390x", 40: "ARM (32-bit)",
                 62: "x86-64", 183: "AArch64 (ARM64)", 243: "RISC-V"}
_HOST_MACHINES = {"x86_64": 62, "amd64": 62, "i386": 3, "i486": 3, "i586": 3, "i686": 3, "aarch64": 183,
                  "arm64": 183, "armv6l": 40, "armv7l": 40, "armv8l": 40, "ppc64le": 21, "ppc64": 21,
                  "s390x": 22, "riscv64": 243}

# what dc_keras calls in the library (runtime, codec, export); checked once, at load
_SYMBOLS = ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate", "DcKerasHuffDecodeDelegateError",
            "DcKerasHuffDecodeDelegateReport", "DcKerasRegisterHuffDecode", "DcKerasSetHuffDecodeAddCustom",
            "DcKerasLiteRtHuffDecodeCreate", "DcKerasLiteRtHuffDecodeDestroy", "DcKerasLiteRtHuffDecodeError",
            "DcKerasLiteRtHuffDecodeKernel", "dc_align_packed", "dc_decode", "dc_list_huffdecode", "dc_peek",
            "dc_strerror", "dc_unpack", "dc_unpack_free", "dc_verify")


def _fix() -> str:
    """What to do about an unusable library at ``path``."""
    if os.environ.get(_ENV):
        return (f"point {_ENV} at a {LIBRARY_NAME} built on this machine (`make lib` builds one into "
                "dc_keras/_native), or unset it to use the installed one")
    return "rebuild it on this machine with `make lib` (or `pip install .` from the source tree)"


def _elf_problem(path):
    """Why the file ``path`` cannot be this Python's shared library, read from its ELF header (not
    an ELF file, another word size, another machine), or None when its header fits."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    if head[:4] != b"\x7fELF" or len(head) < 20 or head[4] not in (1, 2) or head[5] not in (1, 2):
        # Linux loads only ELF files; elsewhere (a Mach-O build on macOS) the loader says what it takes
        return "it is not a shared library (no ELF header)" if sys.platform.startswith("linux") else None
    bits, word = 32 * head[4], 8 * struct.calcsize("P")
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    host = platform.machine().lower()
    want = _HOST_MACHINES.get(host)
    if want is not None and machine != want:
        built = _ELF_MACHINES.get(machine, f"ELF machine {machine}")
        return f"it is a library for {built}, and this Python runs on {host}"
    if bits != word:
        return f"it is a {bits}-bit library, and this Python is {word}-bit"
    return None


def _check_file(path) -> str:
    """``path`` when it is a file whose ELF header fits this Python; else an ``OSError`` saying why,
    with the fix."""
    problem = _elf_problem(path)
    if problem is not None:
        raise OSError(f"dc_keras native library {path}: {problem}: {_fix()}")
    return path


def library_path() -> str:
    """Absolute path of the native library; raises ``FileNotFoundError`` naming the fix (no such
    file), or ``OSError`` for a file that cannot be this Python's library (not an ELF file, or one
    built for another machine or word size), naming the fix."""
    override = os.environ.get(_ENV)
    if override:
        if not os.path.isfile(override):
            what = "a directory" if os.path.isdir(override) else "no such file"
            raise FileNotFoundError(f"{_ENV}={override!r} does not name a file ({what}): point it at a built "
                                    f"{LIBRARY_NAME} (`make lib` builds one into dc_keras/_native), or unset it "
                                    "to use the installed one")
        return _check_file(os.path.abspath(override))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"dc_keras native library not found at {path}. Build it with `make install` "
            f"(or `pip install .` from the source tree), or point {_ENV} at a built {LIBRARY_NAME}."
        )
    return _check_file(path)


def load_library() -> ctypes.CDLL:
    """Loads the library once per process with ``RTLD_GLOBAL`` (so TFLite can resolve its symbols);
    a library the dynamic loader refuses is an ``OSError`` naming it, the loader's reason and the fix."""
    global _cdll
    with _lock:
        if _cdll is None:
            path = library_path()
            try:
                lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as e:  # e.g. a symbol or a glibc version this machine's libc lacks
                raise OSError(f"dc_keras native library {path} cannot be loaded ({e}): {_fix()}") from None
            missing = [name for name in _SYMBOLS if not hasattr(lib, name)]
            if missing:  # a build of older sources (or another library): ctypes' AttributeError came at first use
                shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
                raise OSError(f"dc_keras native library {path} lacks {shown}, which this dc_keras calls: it is "
                              f"another library or one built from older sources; {_fix()}")
            _cdll = lib
        return _cdll
