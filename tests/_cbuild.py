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
