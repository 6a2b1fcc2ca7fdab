"""``python -m dc_keras COMMAND ...``: the same as the ``dc-keras`` command (``dc_keras.cli``)."""
from dc_keras._launch import run

if __name__ == "__main__":
    run()
