"""Private framework APIs dc_keras cannot avoid, one small shim each (why + versions tested).

Every shim has a test in ``tests/test_compat.py`` so that a framework upgrade that removes or
changes the private API fails loudly there instead of silently changing results.
"""

# --- export (issue 15): per-tensor weight quantization in TFLite's converter -------------------


def converter_per_tensor(converter):
    """Makes ``tf.lite.TFLiteConverter`` quantize weights per tensor instead of per channel.

    Why: per-channel scales spread a clustered tensor's few shared values over many int8 codes
    (each output channel rescales them), which costs the weight sharing its Huffman gain; one
    scale per tensor keeps <= 2**bits codes. TF exposes no public switch: the converter's own
    attribute ``_experimental_disable_per_channel`` (read by ``convert()`` for both full-integer
    and dynamic-range quantization) is it. Tested: TF 2.21.0.
    """
    if not hasattr(converter, "_experimental_disable_per_channel"):
        raise RuntimeError("this TensorFlow's TFLiteConverter has no _experimental_disable_per_channel "
                           "(tested with TF 2.21); per-tensor quantization is unavailable")
    converter._experimental_disable_per_channel = True
    return converter
