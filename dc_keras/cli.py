"""dc-keras: Deep Compression for Keras 3 and TensorFlow Lite.

Usage:
  dc-keras demo [--full] [--epochs=N] [--out_dir=DIR]
      Train LeNet-300-100 on the embedded MNIST and run the Deep Compression chain, printing
      one row per stage: file size, ratio to the float .tflite, test error measured on the
      .tflite through the interpreter.
  dc-keras pack IN OUT        Huffman-pack the weights of any .tflite (adds the HuffDecode op).
  dc-keras unpack IN OUT      Restore an ordinary .tflite from a packed one.
  dc-keras inspect FILE [--plot=OUT.png]
                              Per-tensor size table of a .tflite (packed or not).

Run `dc-keras --helpfull` for every flag.
"""
import os
import sys

from absl import app, flags, logging

from dc_keras.demo import FULL_EPOCHS, QUICK_EPOCHS  # cheap: demo imports Keras only when run

FLAGS = flags.FLAGS

# Flags of `demo`.
flags.DEFINE_bool("full", False, "demo: train to paper quality (longer) instead of the quick default.")
flags.DEFINE_integer("epochs", None, "demo: baseline training epochs (default: "
                     f"{QUICK_EPOCHS[0]} quick, {FULL_EPOCHS[0]} with --full).", lower_bound=1)
flags.DEFINE_string("out_dir", None, "demo: directory for the .tflite files it writes (default: a temporary directory).")
flags.DEFINE_integer("seed", 0, "demo: random seed.")
flags.DEFINE_integer("train_subset", None, "demo: train on the first N training images only (smoke tests).", lower_bound=100)


def _cmd_demo(args):
    if args:
        raise app.UsageError(f"demo takes no positional arguments, got {args}")
    from dc_keras import demo

    demo.run_demo(full=FLAGS.full, epochs=FLAGS.epochs, out_dir=FLAGS.out_dir, seed=FLAGS.seed,
                  train_subset=FLAGS.train_subset)


#: command name -> (function taking the positional arguments, one-line help).
COMMANDS = {
    "demo": (_cmd_demo, "train LeNet-300-100 and run the compression chain"),
}

from dc_keras.export import cli_commands as _export_cli  # noqa: E402  (defines its flags)

COMMANDS.update(_export_cli.COMMANDS)


def _main(argv):
    if len(argv) < 2:
        raise app.UsageError("missing command; one of: " + ", ".join(sorted(COMMANDS)))
    name, args = argv[1], argv[2:]
    if name not in COMMANDS:
        raise app.UsageError(f"unknown command {name!r}; one of: " + ", ".join(sorted(COMMANDS)))
    try:
        result = COMMANDS[name][0](args)
    except (ValueError, OSError) as e:  # user-facing errors: one line, non-zero exit
        logging.error("%s", e)
        print(f"dc-keras {name}: error: {e}", file=sys.stderr)
        return 1
    return result or 0


def run(argv=None):
    """Console-script entry point (``dc-keras``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter quiet
    main_module = sys.modules.get("__main__")
    if main_module is not None:
        main_module.__doc__ = __doc__  # absl prints the main module's docstring as usage
    app.run(_main, argv=argv)


if __name__ == "__main__":
    run()
