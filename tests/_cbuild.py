"""The tests' C builds: each C source compiled alone (``-c``) through ccache where it is usable (the
rule of tflite_kernels/ccache.mk: installed and its cache directory writable; DC_CCACHE in the
environment overrides, empty = without), then linked. ``cc -o exe a.c b.c`` cannot be cached (ccache
takes one source per call), and the tests built dc_codec.c (3,100 lines) and the kernel again and
again with the same flags. Without ccache it is the plain compiler, with the same results.

ccache replays a cached compile's stderr (a warning reads the same on a hit, and -Werror's failure is
never cached), so a test that asserts an empty stderr or a failed build checks the same thing.

    r = _cbuild.build("cc", ["-std=c99", "-O1", "-Wall", "-Werror", "-I..."], ["a.c", "b.c"], "exe",
                      ldflags=["-lm"])
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
"""
import functools
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=None)
def ccache():
    """ccache's path when it is usable, else None (the rule of tflite_kernels/ccache.mk)."""
    if "DC_CCACHE" in os.environ:
        return os.environ["DC_CCACHE"] or None
    c = shutil.which("ccache")
    if c is None:
        return None
    r = subprocess.run([c, "-k", "cache_dir"], capture_output=True, text=True, timeout=60)
    d = r.stdout.strip()
    if r.returncode != 0 or not d:
        return None
    try:
        os.makedirs(d, exist_ok=True)
    except OSError:
        return None
    return c if os.access(d, os.W_OK) else None


def compile_argv(cc, flags, src, obj):
    """The argv of one ``cc FLAGS -c SRC -o OBJ`` through ccache when usable."""
    c = ccache()
    return ([c] if c else []) + [cc, *flags, "-c", src, "-o", obj]


def _env():
    return dict(os.environ, CCACHE_BASEDIR=ROOT) if ccache() else None


def compile_one(cc, flags, src, obj, timeout=600):
    """``cc FLAGS -c SRC -o OBJ`` (through ccache when usable): the CompletedProcess (text)."""
    return subprocess.run(compile_argv(cc, flags, src, obj), capture_output=True, text=True, timeout=timeout,
                          env=_env())


def build(cc, flags, inputs, out, *, cflags=(), ldflags=(), objdir=None, timeout=600):
    """``cc FLAGS -o OUT INPUTS LDFLAGS`` made as: each ``.c``/``.cc`` input compiled alone with
    ``cc FLAGS CFLAGS -c`` (through ccache when usable) into OBJDIR (default OUT + ".objs"), then
    ``cc FLAGS -o OUT <objects and the other inputs in their order> LDFLAGS``. FLAGS go to both steps
    (-fsanitize, -O, -W..., -I, -D), CFLAGS to the compiles only, LDFLAGS (-shared, -Wl,..., -l...) to
    the link only. Returns a CompletedProcess: the first failing step's returncode (0 when all
    passed), the steps' stdout and stderr joined, the argvs."""
    out = str(out)
    objdir = str(objdir) if objdir is not None else out + ".objs"
    os.makedirs(objdir, exist_ok=True)
    argvs, stdout, stderr, link_inputs = [], [], [], []
    for i, src in enumerate(map(str, inputs)):
        if not src.endswith((".c", ".cc", ".cpp")):
            link_inputs.append(src)
            continue
        obj = os.path.join(objdir, f"{i}_{os.path.splitext(os.path.basename(src))[0]}.o")
        r = compile_one(cc, [*flags, *cflags], src, obj, timeout=timeout)
        argvs.append(r.args)
        stdout.append(r.stdout)
        stderr.append(r.stderr)
        if r.returncode != 0:
            return subprocess.CompletedProcess(argvs, r.returncode, "".join(stdout), "".join(stderr))
        link_inputs.append(obj)
    argv = [cc, *flags, "-o", out, *link_inputs, *ldflags]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    argvs.append(argv)
    return subprocess.CompletedProcess(argvs, r.returncode, "".join(stdout) + r.stdout, "".join(stderr) + r.stderr)


def older_decoder(out_dir, version_max):
    """dc_codec.c built as a decoder that reads versions 1 to ``version_max`` (the DC_VERSION_MAX of
    an older dc_keras): dc_codec.h's constant redefined by tests/data/dc_version_max<N>.h, force-included
    (a file of the repository: the same command every session, so ccache finds it). A ctypes CDLL
    with dc_peek and dc_decode typed (tests/test_export_v4_ints.py, test_codec_sparse_planes_c_s56.py)."""
    import ctypes
    import shutil

    cc = shutil.which(os.environ.get("CC", "cc"))
    assert cc, f"a C compiler (cc, or $CC) is needed to build the version {version_max} decoder"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inc = os.path.join(root, "tflite_kernels", "include")
    so = os.path.join(str(out_dir), f"libdc_v{version_max}.so")
    # -Bsymbolic: its own functions call each other, not the same names of a decoder loaded before
    r = build(cc, ["-std=c99", "-O1", "-fPIC", "-I" + inc], [os.path.join(root, "tflite_kernels", "src", "dc_codec.c")],
              so, cflags=["-include", os.path.join(inc, "dc_codec.h"),
                          "-include", os.path.join(root, "tests", "data", f"dc_version_max{version_max}.h")],
              ldflags=["-shared", "-Wl,-Bsymbolic"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lib = ctypes.CDLL(so)
    lib.dc_peek.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.dc_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    return lib
