"""Per-layer decode mode of a packed model's HuffDecode ops for TensorFlow Lite Micro.

    python tools/mcu/set_decode_mode.py IN.tflite OUT.tflite --each-invoke fc1/kernel [...]
    python tools/mcu/set_decode_mode.py IN.tflite OUT.tflite --once NAME [...] | --all-each-invoke | --all-once
    python tools/mcu/set_decode_mode.py IN.tflite OUT.tflite --reset [--once NAME ...] [--each-invoke NAME ...]

Writes the one-byte custom options the TFLM kernel reads (tflite_kernels/micro/huffdecode_tflm.h):
0 = decode once (at the first invoke), 1 = decode on every invoke; ops not named keep the options they have
(empty: the registration's default), so a second run adds to the first; --reset empties the options
of every op not named (back to the registration's default), --all-once / --all-each-invoke set
them.  NAME is the HuffDecode
output tensor's full name, or @T / @S:T for tensor T of subgraph S (0 when omitted): the way to
name a tensor of a model packed with strip_strings (no names) or a name several ops output; an
unknown NAME is an error that lists every HuffDecode output both ways.  Edits the flatbuffer
through the project's TFLite schema module and keeps a zip of associated files after the model
(TFLite metadata); IN is never modified; OUT is written atomically; on any error nothing is written.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _outputs(model):
    """[(subgraph, operator, output tensor index, name)] of the model's HuffDecode ops."""
    from dc_keras import _flatbuffer as fb

    codes = model.operatorCodes or []
    out = []
    for s, sg in enumerate(model.subgraphs):
        for op in sg.operators or []:
            if fb.is_huffdecode_code(codes[op.opcodeIndex]) and op.outputs is not None and len(op.outputs) == 1:
                t = int(op.outputs[0])
                out.append((s, op, t, fb.tensor_name(sg.tensors[t])))
    return out


def _described(model, s, t, name):
    from dc_keras import _flatbuffer as fb

    tensor = model.subgraphs[s].tensors[t]
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
    return f"{name!r} = @{s}:{t} ({fb.TYPE_NAMES.get(tensor.type, tensor.type)}{shape})" if name else \
        f"@{s}:{t} (no name; {fb.TYPE_NAMES.get(tensor.type, tensor.type)}{shape})"


def _resolve(model, ops, key):
    """The HuffDecode ops ``key`` (a full name, or @T / @S:T) names; ValueError if ambiguous."""
    by_name = [o for o in ops if o[3] == key]
    if len(by_name) > 1:
        raise ValueError(f"{key!r} is the name of {len(by_name)} HuffDecode outputs (" +
                         ", ".join(_described(model, s, t, n) for s, _, t, n in by_name) +
                         "): name each one by its @SUBGRAPH:TENSOR instead")
    if by_name:
        return by_name
    m = re.fullmatch(r"@(?:(\d+):)?(\d+)", key)
    if m:
        s, t = int(m.group(1) or 0), int(m.group(2))
        return [o for o in ops if (o[0], o[2]) == (s, t)]
    return []


RESET = "reset"  # set_modes(default=RESET): the ops not named get empty options (the registration's default)


def set_modes(tflite_bytes, modes, default=None):
    """Returns the model with HuffDecode custom options set: ``modes`` maps an output tensor's name
    (or @T / @S:T) -> 0 (once) / 1 (every invoke); ``default`` applies to the ops not named: 0 / 1,
    ``RESET`` (empty options: the registration's default) or None (they keep their options).  A zip of associated files after the model follows the
    output's model.  ValueError (nothing returned) for a model that is not packed, a name no
    HuffDecode op outputs, a name several output, or two modes for one op."""
    from dc_keras import _flatbuffer as fb
    from dc_keras.export import _pack

    model = fb.read_model(tflite_bytes)
    if not any(fb.is_huffdecode_code(c) for c in model.operatorCodes or []):
        raise ValueError("not packed (it has no HuffDecode op), so there is no decode mode to set: pack it "
                         "first (`dc-keras pack IN PACKED`), then set the modes on PACKED")
    ops = _outputs(model)
    chosen, missing = {}, []  # id(op) -> (mode, key)
    for key, mode in modes.items():
        found = _resolve(model, ops, key)
        if not found:
            missing.append(key)
        for _, op, _, _ in found:
            if id(op) in chosen and chosen[id(op)][0] != mode:
                raise ValueError(f"{chosen[id(op)][1]!r} and {key!r} name the same HuffDecode output with "
                                 "different modes: give it one mode")
            chosen[id(op)] = (mode, key)
    if missing:
        listed = "; ".join(_described(model, s, t, n) for s, _, t, n in ops)
        raise ValueError(f"no HuffDecode op outputs {', '.join(repr(k) for k in missing)}; its HuffDecode outputs "
                         f"are: {listed}: name them as listed (full name, or @SUBGRAPH:TENSOR)")
    for _, op, _, _ in ops:
        mode = chosen.get(id(op), (default, None))[0]
        if mode == RESET:
            op.customOptions = None
        elif mode is not None:
            op.customOptions = [int(mode)]
    out, _, _, dropped = _pack.with_zip(fb.write_model(model), tflite_bytes)
    if dropped:
        raise ValueError(f"it has a zip after the model whose archive cannot be moved ({dropped[0]}), so the output "
                         "would lose the associated files (TFLite metadata) it carries: repair or remove the zip, "
                         "then attach the files again with the tool that added them")
    return out


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
                    help="HuffDecode output tensors (full name, or @T / @S:T) to decode once (at the first invoke)")
    ap.add_argument("--each-invoke", nargs="*", default=[], metavar="NAME",
                    help="HuffDecode output tensors (full name, or @T / @S:T) to decode on every invoke")
    others = ap.add_mutually_exclusive_group()
    others.add_argument("--all-each-invoke", action="store_true",
                        help="every HuffDecode op not named decodes on every invoke")
    others.add_argument("--all-once", action="store_true",
                        help="every HuffDecode op not named decodes once (at the first invoke)")
    others.add_argument("--reset", action="store_true",
                        help="every HuffDecode op not named gets empty options: the registration's default")
    a = ap.parse_args(argv)
    both = sorted(set(a.once) & set(a.each_invoke))
    if both:
        return _fail(f"{both} named in both --once and --each-invoke: give each tensor one mode")
    modes = {n: 0 for n in a.once}
    modes.update({n: 1 for n in a.each_invoke})
    default = 1 if a.all_each_invoke else 0 if a.all_once else RESET if a.reset else None
    if not modes and default is None:
        return _fail("nothing to set (no NAME after --once / --each-invoke, and no --all-each-invoke, --all-once "
                     "or --reset): name the HuffDecode outputs to set, or give one of those")
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
        out = set_modes(data, modes, default)
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
