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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--once", nargs="*", default=[])
    ap.add_argument("--each-invoke", nargs="*", default=[])
    ap.add_argument("--all-each-invoke", action="store_true")
    a = ap.parse_args(argv)
    modes = {n: 0 for n in a.once}
    modes.update({n: 1 for n in a.each_invoke})
    with open(a.input, "rb") as f:
        out = set_modes(f.read(), modes, 1 if a.all_each_invoke else None)
    tmp = f"{a.output}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, a.output)


if __name__ == "__main__":
    main()
