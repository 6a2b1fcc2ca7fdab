"""Per-layer decode mode of a packed model's HuffDecode ops for TensorFlow Lite Micro.

    python tools/mcu/set_decode_mode.py IN.tflite OUT.tflite --each-invoke fc1/kernel [...]
    python tools/mcu/set_decode_mode.py IN.tflite OUT.tflite --once NAME [...] | --all-each-invoke

Writes the one-byte custom options the TFLM kernel reads (tflite_kernels/micro/huffdecode_tflm.h):
0 = decode once in Prepare, 1 = decode on every invoke; ops not named keep empty options (the
registration's default).  NAME matches the HuffDecode output tensor's name exactly.  Edits the
flatbuffer through the project's TFLite schema module; IN is never modified; OUT is written
atomically.  Unknown names are an error (nothing is written).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def set_modes(tflite_bytes, modes, default=None):
    """Returns the model with HuffDecode custom options set: ``modes`` maps output tensor name ->
    0 (once) / 1 (every invoke); ``default`` (0/1/None) applies to the ops not named."""
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(tflite_bytes)
    codes = model.operatorCodes or []
    if not any(fb.is_huffdecode_code(c) for c in codes):
        raise ValueError("not packed (it has no HuffDecode op), so there is no decode mode to set: pack it "
                         "first (`dc-keras pack IN PACKED`), then set the modes on PACKED")
    seen = set()
    for sg in model.subgraphs:
        for op in sg.operators or []:
            if not fb.is_huffdecode_code(codes[op.opcodeIndex]):
                continue
            name = fb.tensor_name(sg.tensors[op.outputs[0]])
            mode = modes.get(name, default)
            if name in modes:
                seen.add(name)
            op.customOptions = None if mode is None else [int(mode)]
    missing = sorted(set(modes) - seen)
    if missing:
        raise ValueError(f"no HuffDecode op outputs tensor(s) {missing}; see `dc-keras inspect` for names")
    return fb.write_model(model)


def _fail(msg):
    print(f"set_decode_mode.py: {msg}", file=sys.stderr)
    return 1


def main(argv=None):
    """Command line (module docstring); returns the exit status: 0 written, 1 error (one line on
    stderr naming the problem and the fix, nothing written), 2 usage error (argparse)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("input", help="a packed .tflite (never modified)")
    ap.add_argument("output", help="where to write the result (atomically)")
    ap.add_argument("--once", nargs="*", default=[], metavar="NAME",
                    help="HuffDecode output tensors to decode once, in Prepare")
    ap.add_argument("--each-invoke", nargs="*", default=[], metavar="NAME",
                    help="HuffDecode output tensors to decode on every invoke")
    ap.add_argument("--all-each-invoke", action="store_true",
                    help="every HuffDecode op not named decodes on every invoke")
    a = ap.parse_args(argv)
    both = sorted(set(a.once) & set(a.each_invoke))
    if both:
        return _fail(f"{both} named in both --once and --each-invoke: give each tensor one mode")
    modes = {n: 0 for n in a.once}
    modes.update({n: 1 for n in a.each_invoke})
    try:
        same = os.path.samefile(a.input, a.output)
    except OSError:
        same = False
    if same:
        return _fail(f"the output {a.output} is the same file as the input {a.input}, which is never "
                     "overwritten: choose a different output path")
    try:
        with open(a.input, "rb") as f:
            data = f.read()
    except OSError as e:
        return _fail(f"cannot read {a.input}: {e.strerror}; check the path of the packed .tflite")
    try:
        out = set_modes(data, modes, 1 if a.all_each_invoke else None)
    except ValueError as e:
        return _fail(f"{a.input}: {e}")
    tmp = f"{a.output}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(out)
        os.replace(tmp, a.output)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        return _fail(f"cannot write {a.output}: {e.strerror}; choose an output path in a writable directory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
