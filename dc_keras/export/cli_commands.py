"""``dc-keras pack``, ``unpack`` and ``inspect``: command bodies registered in ``dc_keras.cli``.

Outputs are written atomically (temporary file + rename in the target directory); inputs are
never modified. Errors (bad file, already packed, ...) raise ``ValueError``/``OSError``, which
the CLI prints as one line with a non-zero exit status.
"""
from absl import app, flags

flags.DEFINE_integer("min_bytes", None, "pack: leave constant tensors smaller than this alone "
                     "(default: dc_keras.export.DEFAULT_MIN_BYTES).", lower_bound=0)
flags.DEFINE_boolean("strip_strings", False, "pack: drop tensor/subgraph names and the model "
                     "description (signatures keep working); prints the bytes saved.")
flags.DEFINE_enum("buffers", "auto", ["auto", "inline", "external"], "pack/unpack: where buffer "
                  "data goes: auto (the input's convention, inline under 256 KiB), inline, or external "
                  "(after the flatbuffer, Buffer.offset/size).")
flags.DEFINE_string("plot", None, "inspect: also write a raw-vs-packed size chart (PNG) to this path.")

FLAGS = flags.FLAGS


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _two_paths(name, args):
    if len(args) != 2:
        raise app.UsageError(f"usage: dc-keras {name} IN OUT")
    import os

    if os.path.abspath(args[0]) == os.path.abspath(args[1]):
        raise ValueError(f"{name}: OUT must differ from IN (inputs are never modified)")
    return args


def cmd_pack(args):
    from dc_keras.export import DEFAULT_MIN_BYTES
    from dc_keras.export._convert import _write_atomic
    from dc_keras.export._pack import pack_with_stats

    src, dst = _two_paths("pack", args)
    data = _read(src)
    min_bytes = DEFAULT_MIN_BYTES if FLAGS.min_bytes is None else FLAGS.min_bytes
    out, stats = pack_with_stats(data, min_bytes=min_bytes, strip_strings=FLAGS.strip_strings,
                                 buffers=FLAGS.buffers)
    _write_atomic(dst, out)
    note = "" if out != data else " (nothing packed smaller: written unchanged)"
    if FLAGS.strip_strings:
        note += f"; strings stripped: {stats['strings_saved']} B saved"
    print(f"{src}: {len(data)} B -> {dst}: {len(out)} B ({len(data) / len(out):.2f}x){note}")


def cmd_unpack(args):
    from dc_keras.export import unpack
    from dc_keras.export._convert import _write_atomic

    src, dst = _two_paths("unpack", args)
    data = _read(src)
    out = unpack(data, buffers=FLAGS.buffers)
    _write_atomic(dst, out)
    print(f"{src}: {len(data)} B -> {dst}: {len(out)} B")


def cmd_inspect(args):
    from dc_keras.export import DEFAULT_MIN_BYTES, inspect

    if len(args) != 1:
        raise app.UsageError("usage: dc-keras inspect FILE [--plot=OUT.png]")
    min_bytes = DEFAULT_MIN_BYTES if FLAGS.min_bytes is None else FLAGS.min_bytes
    report = inspect(_read(args[0]), min_bytes=min_bytes)
    print(report.to_text())
    if FLAGS.plot:
        report.plot(FLAGS.plot)
        print(f"size chart written to {FLAGS.plot}")


#: command name -> (function taking the positional arguments, one-line help); merged into
#: ``dc_keras.cli.COMMANDS``.
COMMANDS = {
    "pack": (cmd_pack, "Huffman-pack the weights of any .tflite (adds HuffDecode ops)"),
    "unpack": (cmd_unpack, "restore an ordinary .tflite from a packed one"),
    "inspect": (cmd_inspect, "per-tensor size table of a .tflite (packed or not)"),
}
