"""Keyword-only settings with one clear error: :func:`_model_only_positional` (``dc_keras.cluster``,
``ClusterWrapper``, ``dc_keras.pipeline``'s training steps). No keras import: ``dc_keras.pipeline``
imports it at its top and stays importable without loading Keras."""
import functools
import inspect
import numbers

# The packed format holds at most 4096 codebook entries per tensor (docs/FORMAT.md §2: K ≤ 4096);
# dc_keras.train._base imports them from here
MAX_BITS = 12
MAX_CODEBOOK = 4096


def _positional_refused(what, first, extra, names, bits_first=True):
    """The error of a call giving ``extra`` positionally after ``first`` (``names``: the keyword-only
    parameters in their order, which were positional before): each value by its name, and, when
    ``bits_first`` (the first of ``names`` is ``bits``), for a first int both readings of it (tfmot's
    habit: ``cluster_weights(model, 8)`` is 8 clusters, not 2**8)."""
    n = extra[0]
    count = (bits_first and isinstance(n, numbers.Integral) and not isinstance(n, bool)
             and 1 <= n <= MAX_CODEBOOK)
    by_name = [("clusters" if count and n > MAX_BITS else names[0], n)] + list(zip(names[1:], extra[1:]))
    text = (f"{what}() takes only {first} by position, got {len(extra)} more argument{'s' * (len(extra) > 1)} "
            f"({', '.join(repr(v) for v in extra)}): pass {'them' if len(extra) > 1 else 'it'} by name, "
            f"{what}(..., {', '.join(f'{k}={v!r}' for k, v in by_name)})")
    tfmot = f"tfmot's cluster_weights(model, number_of_clusters={n})"
    if count and n <= MAX_BITS:
        text += (f" (bits={n}: 2**{n} = {2 ** n} shared values per weight), or clusters={n} for {n} shared values "
                 f"({tfmot})")
    elif count:
        text += f" for {n} shared values ({tfmot}); `bits` is the index width, 1..{MAX_BITS}"
    return text + "."


def _model_only_positional(what, first, lead=1):
    """Decorates ``func`` (its parameters after the first ``lead`` keyword-only) so that more
    positional arguments raise :func:`_positional_refused`'s TypeError instead of Python's
    "takes 1 positional argument but 2 were given". The signature stays ``func``'s (``help()``,
    and Keras' automatic config, which reads ``__init__``'s). Also ``dc_keras.pipeline``'s training
    steps' (their data and required arguments by position, their settings by name); an int's two
    readings are given only where the first keyword-only parameter is ``bits``."""
    def decorate(func):
        signature = inspect.signature(func)
        names = [p.name for p in signature.parameters.values()
                 if p.kind is p.KEYWORD_ONLY and not p.name.startswith("_")]

        @functools.wraps(func)
        def call(*args, **kwargs):
            if len(args) > lead:
                raise TypeError(_positional_refused(what, first, args[lead:], names, names[:1] == ["bits"]))
            return func(*args, **kwargs)

        call.__signature__ = signature
        return call
    return decorate
