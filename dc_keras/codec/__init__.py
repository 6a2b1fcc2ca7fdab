"""Packed tensor codec: Huffman-coded weights (Deep Compression stage 3), spec in docs/FORMAT.md.

``encode(array) -> bytes`` is pure numpy; ``decode(bytes) -> array`` runs the C99 decoder of
``libdc_huffdecode.so`` (the same code the ``HuffDecode`` TFLite op uses); ``info(bytes)``
reports the header without decoding (for ``dc-keras inspect``).

Example:
  >>> import numpy as np
  >>> from dc_keras import codec
  >>> w = np.where(np.arange(1000) % 13 == 0, 0.5, 0.0).astype(np.float32).reshape(10, 100)
  >>> packed = codec.encode(w)
  >>> codec.info(packed)["layout"], len(packed) < 100
  ('sparse', True)
  >>> bool(np.array_equal(codec.decode(packed), w))
  True
"""
from ._decode import decode, pack_subbyte, unpack_subbyte
from ._layouts import MaxBytesError, encode
from ._format import MAX_CODE_LENGTH, MAX_SYMBOLS, CorruptDataError, parse_header


def info(data):
    """Header facts of a packed tensor, without decoding (structure checked, not the checksum).

    Returns a dict with ``version`` (§10), ``dtype`` (numpy), ``dtype_name`` (TFLite's, e.g.
    'int4'), ``dtype_code``, ``shape``, ``num_elements``, ``layout`` ('dense', 'sparse',
    'grouped_dense', 'grouped_sparse', 'float_planes', 'context_sparse', 'int_planes' or
    'sparse_planes'),
    ``codebook_size`` (per group),
    ``codebook`` (numpy array; shape (groups, K) for grouped layouts), ``packed_bytes``,
    ``raw_bytes``, ``header_bytes``, ``codebook_bytes``, ``stream_bytes`` (list of 4),
    ``plane_bytes`` (§12), ``checksum``, ``index_code`` / ``gap_code`` (max code length and
    per-symbol lengths), for sparse layouts ``background``, ``background_index``, ``entries``
    and ``gap_alphabet``, for grouped ones ``axis`` and ``groups``, for ``'int_planes'`` (§17)
    ``predictor`` ('base' or 'previous'), ``base`` and ``element_bit_range`` (fewest and most
    bits of one element), for ``'sparse_planes'`` (§18) ``background`` (its value), ``background_bits``,
    ``entries``, ``stored_entries`` and ``gap_alphabet``.
    Raises ``CorruptDataError`` for malformed headers.

    Example:
      >>> import numpy as np
      >>> from dc_keras import codec
      >>> codec.info(codec.encode(np.ones((2, 3), np.float16)))["shape"]
      (2, 3)
    """
    return parse_header(data)


__all__ = ["encode", "decode", "info", "pack_subbyte", "unpack_subbyte", "CorruptDataError", "MaxBytesError",
           "MAX_SYMBOLS", "MAX_CODE_LENGTH"]
