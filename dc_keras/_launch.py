"""The ``dc-keras`` console script (and ``python -m dc_keras``): imports the command line, then runs it.

Importing :mod:`dc_keras.cli` takes about half a second (absl, argparse, the commands' modules).
Ctrl-C in that window used to print a ``KeyboardInterrupt`` traceback; here it ends the command
as Ctrl-C does later (:func:`dc_keras.cli.main`): ``dc-keras: interrupted`` and status 130. This
module imports nothing else, so that the window it cannot cover is Python's own start-up.

Example (what the console script does)::

    from dc_keras._launch import run
    run()  # sys.argv[1:]; exits with the command's status
"""
import sys

INTERRUPTED_STATUS = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended


def run(argv=None):
    """Imports :mod:`dc_keras.cli` and calls its ``run(argv)``; Ctrl-C during the import exits 130."""
    try:
        from dc_keras import cli
    except KeyboardInterrupt:
        print("dc-keras: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)
    cli.run(argv)
