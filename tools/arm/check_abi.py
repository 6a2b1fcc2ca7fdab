#!/usr/bin/env python3
"""Portability check of a built ``libdc_huffdecode.so`` (any architecture; uses host ``readelf``).

The library must load on Android (bionic) as well as on any glibc Linux, so it may only use the
plain C library.  Checked on the ELF file itself:

1. ``NEEDED`` entries are a subset of ``libc.so.6``/``libm.so.6`` (bionic: ``libc.so``/``libm.so``);
   no libdl, libpthread, libstdc++, libgcc_s, no TensorFlow library.
2. Every versioned glibc reference is ``GLIBC_2.17`` or older.  2.17 is the first glibc with
   aarch64, so the library runs on every aarch64 glibc and uses no glibc API added later
   (e.g. the ``__isoc23_*`` names glibc 2.38 headers emit).
3. Every undefined symbol is a C99/POSIX function Android's bionic has had since API level 21
   (Android 5.0), or a glibc-internal name that glibc's *headers* generate for such a function
   (``__assert_fail`` for ``assert``, ``__errno_location`` for ``errno``, ...), which the NDK's
   bionic headers map to bionic's own names.  A C11/POSIX function bionic lacks at API 21, such as
   ``aligned_alloc`` (API 28), fails the check.
4. Exported (defined, global) symbols are only the public API: ``dc_*`` (dc_codec.h),
   ``tflite_plugin_*`` (external delegate entry points) and ``*HuffDecode*`` registration
   functions; everything else must be hidden (``-fvisibility=hidden``).

Usage: ``check_abi.py LIB.so [LIB.so ...]``; exits 1 and names each problem on failure.
"""
import re
import subprocess
import sys

ALLOWED_NEEDED = {"libc.so.6", "libm.so.6", "libc.so", "libm.so"}
MAX_GLIBC = (2, 17)

# C99 / POSIX functions present in bionic at API 21.
BIONIC_API21 = set("""
memcpy memmove memset memcmp memchr strlen strnlen strcmp strncmp strchr strrchr strstr strcpy
strncpy strcat strncat strerror strtol strtoul strtoll strtoull strtod strtof strdup
malloc calloc realloc free posix_memalign abort exit atexit qsort bsearch abs labs llabs getenv
snprintf vsnprintf sprintf vsprintf fprintf vfprintf printf vprintf sscanf fputs fputc fwrite fread
fopen fclose fflush fseek ftell puts putchar stderr stdout stdin
ldexp ldexpf frexp frexpf fabs fabsf floor floorf ceil ceilf sqrt sqrtf exp expf log logf log2
log2f pow powf fmod fmodf round roundf lround lroundf nearbyint nearbyintf rint rintf trunc truncf
fmin fminf fmax fmaxf isnan isinf
raise pthread_once pthread_mutex_lock pthread_mutex_unlock
pthread_create pthread_join pthread_mutex_init pthread_mutex_destroy sysconf madvise mmap munmap
close ioctl syscall pthread_self sched_yield
pthread_cond_wait pthread_cond_broadcast pthread_atfork
""".split())  # close/ioctl/syscall: dc_parallel.c's lazy arenas (userfaultfd; compiled out on Android)
# Names that glibc headers or gcc emit for the functions above (or for startup code); the NDK
# build compiles the same source against bionic's headers, which map them to bionic names.
GLIBC_HEADER_NAMES = set("""
__assert_fail __errno_location __stack_chk_fail __stack_chk_guard __cxa_finalize __gmon_start__
_ITM_registerTMCloneTable _ITM_deregisterTMCloneTable __isoc99_sscanf __ctype_b_loc
__memcpy_chk __memmove_chk __memset_chk __strcpy_chk __strncpy_chk __snprintf_chk
__vsnprintf_chk __sprintf_chk __vsprintf_chk __fprintf_chk __vfprintf_chk __printf_chk
__aeabi_memcpy __aeabi_memcpy4 __aeabi_memcpy8 __aeabi_memmove __aeabi_memset __aeabi_memclr
__aeabi_memclr4 __aeabi_memclr8 __aeabi_unwind_cpp_pr0 __aeabi_unwind_cpp_pr1
__aeabi_uldivmod __aeabi_ldivmod __aeabi_uidiv __aeabi_uidivmod __aeabi_idiv __aeabi_idivmod
__aeabi_d2lz __aeabi_d2ulz __aeabi_f2lz __aeabi_f2ulz __aeabi_l2d __aeabi_ul2d __aeabi_l2f
__aeabi_ul2f __aeabi_llsl __aeabi_llsr __aeabi_lasr
__register_atfork
""".split())  # __register_atfork: glibc's pthread_atfork (a libc_nonshared.a wrapper calling it)
EXPORT_RE = re.compile(r"^(dc_\w+|tflite_plugin_\w+|\w*[Hh]uff[Dd]ecode\w*|_init|_fini)$")


def _readelf(*args):
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True,
                          text=True).stdout


def check(path):
    """Returns a list of problems (empty when the library passes)."""
    import os

    if not os.path.isfile(path):
        return ["no such file: give the path of a built libdc_huffdecode.so"]
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return ["not an ELF shared library: give the path of a built libdc_huffdecode.so"]
    header = _readelf("-h", path)
    if not re.search(r"Type:\s+DYN", header):
        return ["not an ELF shared library (readelf -h: no Type DYN): give the path of a built "
                "libdc_huffdecode.so"]
    problems = []
    dynamic = _readelf("-d", path)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    for lib in needed:
        if lib not in ALLOWED_NEEDED:
            problems.append(f"needs {lib} (only libc/libm allowed)")
    for line in _readelf("--dyn-syms", path).splitlines():
        parts = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if len(parts) < 8 or not parts[0].rstrip(":").isdigit():
            continue
        typ, bind, ndx, name = parts[3], parts[4], parts[6], parts[7]
        base, _, version = name.partition("@")
        version = version.lstrip("@")
        if not base:
            continue
        m = re.match(r"GLIBC_(\d+)\.(\d+)", version)
        if m and (int(m.group(1)), int(m.group(2))) > MAX_GLIBC:
            problems.append(f"{name}: glibc symbol version newer than GLIBC_2.17")
        if ndx == "UND":
            if base not in BIONIC_API21 and base not in GLIBC_HEADER_NAMES:
                problems.append(f"undefined symbol {base!r} is not a C library function "
                                "Android (bionic, API 21) provides")
        elif bind in ("GLOBAL", "WEAK") and typ in ("FUNC", "OBJECT"):
            if not EXPORT_RE.match(base):
                problems.append(f"exports {base!r}: only dc_*, tflite_plugin_* and the "
                                "HuffDecode registration may be visible")
    return problems


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    if argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    status = 0
    for path in argv[1:]:
        problems = check(path)
        if problems:
            status = 1
            print(f"FAIL {path}")
            for p in problems:
                print(f"  - {p}")
        else:
            print(f"ok   {path}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
