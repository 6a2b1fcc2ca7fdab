"""TensorBoard summaries of pruning and clustering, on ``keras.callbacks.TensorBoard``'s axes.

Keras's TensorBoard callback writes training summaries to ``<log_dir>/train``; its batch-level
scalars use a step that counts the ``on_train_batch_end`` calls of the current ``fit()`` (one per
batch, or one per execution with ``steps_per_execution > 1``), starting at 1. The writers here use
the same folder and the same step, so ``sparsity/...`` lines up with ``batch_loss`` when both
callbacks share a ``log_dir``.

- Pruning (:class:`dc_keras.PruningCallback` with ``log_dir``): ``sparsity/<layer>/<weight>`` at
  every call in which a mask update happened (the schedule says when, host-side, so the masks are
  read only then). With ``steps_per_execution > 1`` several updates of one execution give one point
  (the last one's masks). In a custom training loop, at each ``on_epoch_begin`` call, at the
  training step reached.
- Clustering (:class:`ClusteringSummaries`): ``clusters/<layer>/<weight>`` (distinct non-zero
  values in use) and ``centroid_drift/<layer>/<weight>`` (mean absolute change since the start of
  ``fit`` of the centroids that hold weights, see :func:`centroid_drift`), every ``update_freq``
  calls and at the end of each epoch.

Summaries are written with ``tf.summary.write`` (TensorFlow is installed with dc_keras on every
Keras backend; the ``tensorboard`` package is needed only to view them, and by
``keras.callbacks.TensorBoard``).
"""
import errno
import os

import keras
import numpy as np

from dc_keras._fileio import _nearest_existing, _read_only_mount, _writable
from dc_keras.train import _base


class instance_only:
    """Decorator for ``set_model`` of dc_keras's callbacks: looked up on the class itself, as
    Keras does with ``callbacks=[dc_keras.PruningCallback]`` (the class where fit() wants an
    instance), it raises one ``TypeError`` saying to pass ``PruningCallback()`` instead of Keras's
    "set_model() missing 1 required positional argument: 'model'". On an instance it is the method.
    """

    def __init__(self, function):
        self.function = function
        self.__doc__ = function.__doc__

    def __get__(self, obj, owner=None):
        if obj is not None:
            return self.function.__get__(obj, owner)
        name = owner.__name__

        def refuse(*_args, **_kwargs):
            raise TypeError(
                f"callbacks=[{name}] passes the class {name}, not a callback: pass an instance, "
                f"callbacks=[{name}()].")
        return refuse


def _check_log_dir(log_dir):
    """``log_dir`` as a string, checked when the callback is made: the writer creates
    ``<log_dir>/train`` (and missing folders) only inside ``fit()``, where a path under a regular
    file or in a read-only directory failed with TensorFlow's raw ``CreateSummaryFileWriter`` error
    after training had started. Raises the ``OSError`` ``to_tflite(path=)`` gives for such a path
    (errno, what to do, the path), naming ``log_dir``. Nothing is created here. A URL
    (``gs://bucket/logs``) is left to TensorFlow's file systems.

    Example:
        >>> _check_log_dir("logs")
        'logs'
    """
    if not isinstance(log_dir, (str, bytes)) and not hasattr(log_dir, "__fspath__"):
        raise ValueError(f"`log_dir` must be a path, got {log_dir!r}.")
    path = os.fsdecode(os.fspath(log_dir))
    if not path:  # would write into ./train, next to wherever the script runs
        raise ValueError("`log_dir` must be a non-empty path (the folder TensorBoard reads, e.g. 'logs'), got ''.")
    if "://" in path:
        return path
    existing = _nearest_existing(os.path.join(path, "train"))  # the writer creates the rest
    if not os.path.isdir(existing):
        raise OSError(errno.ENOTDIR, f"{os.strerror(errno.ENOTDIR)}; {existing} is a file, so `log_dir` cannot be "
                      f"created there (TensorBoard's summaries go to <log_dir>/train): choose a log_dir in a "
                      f"writable directory, e.g. 'logs'", path)
    if not _writable(existing, os.W_OK | os.X_OK):
        err = errno.EROFS if _read_only_mount(existing) else errno.EACCES
        raise OSError(err, f"{os.strerror(err)}; {existing} is not writable, so the summaries cannot be written to "
                      f"<log_dir>/train: choose a log_dir in a writable directory, e.g. 'logs'", path)
    return path


def sync_model_state(model):
    """On JAX, ``fit`` keeps the variables' values in a separate state during an epoch; write them
    back so callbacks read current values (``Trainer.jax_state_sync``, public). No-op elsewhere."""
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()


def repeated_call(callback, hook, *args):
    """True for the second call of a hook when one callback instance is listed twice in a fit()'s
    callbacks: Keras calls the list in order, so each event reaches the instance twice in a row,
    with the same arguments and the same ``params`` dict (one per fit()). Inside fit() only
    (``params`` set): a custom training loop's calls are taken as they come.

    Example:
        >>> def on_epoch_end(self, epoch, logs=None):
        ...     if repeated_call(self, "on_epoch_end", epoch):
        ...         return
    """
    last = getattr(callback, "_dc_last_call", None)
    if callback.params and last is not None and last[0] is callback.params and last[1:] == (hook, args):
        return True
    callback._dc_last_call = (callback.params, hook, args)
    return False


class SummaryLog:
    """Owns a ``tf.summary`` writer for ``<log_dir>/train`` and Keras's batch step counter."""

    def __init__(self, log_dir):
        self.log_dir = _check_log_dir(log_dir)
        self.train_dir = os.path.join(self.log_dir, "train")
        self._writer = None
        self.calls = 0  # on_train_batch_end calls in this fit() (Keras TensorBoard's step)

    def begin(self):
        self.calls = 0

    def write(self, values, step):
        """Write ``{tag: float}`` at ``step``."""
        import tensorflow as tf

        if self._writer is None:
            try:
                self._writer = tf.summary.create_file_writer(self.train_dir)
            except tf.errors.OpError:
                _check_log_dir(self.log_dir)  # the clear error, if log_dir became unwritable since the check
                raise
        # What tf.summary.scalar writes (a float32 tensor tagged for the "scalars" plugin), through
        # the public tf.summary.write: tf.summary.scalar itself needs the tensorboard package.
        metadata = tf.compat.v1.SummaryMetadata(
            plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars"))
        with self._writer.as_default():
            for tag, value in values.items():
                tf.summary.write(tag, tf.constant(float(value), tf.float32), step=int(step), metadata=metadata)
        self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class PruningLog(SummaryLog):
    """Per-update-step sparsity of a model's :class:`~dc_keras.train.PruneWrapper` layers."""

    def begin(self, wrappers, start_steps):
        super().begin()
        self.wrappers = wrappers
        self.start_steps = start_steps
        self.done = 0  # training steps of this fit() done (host-side count)
        self.epoch_base = 0

    def epoch_begin(self):
        self.epoch_base = self.done

    def write_now(self, wrappers):
        """Outside fit() (a custom training loop): every wrapper's sparsity now, at the training
        step its ``pruning_step`` has reached (tfmot's ``PruningSummaries`` writes at the optimizer's
        step count)."""
        step = max(int(_base.to_numpy(w.pruning_step)) if w.built else 0 for w in wrappers)
        self.write_sparsity(wrappers, step)

    def write_sparsity(self, wrappers, step):
        """Each of ``wrappers``' weights' sparsity, as ``sparsity/<wrapper>/<weight>``, at ``step``."""
        self.write({f"sparsity/{w.name}/{name}": v for w in wrappers for name, v in w.sparsity().items()}, step)

    def batch_end(self, model, batch):
        """After the call that ran batches up to ``batch`` (index in the epoch)."""
        self.calls += 1
        done = self.epoch_base + int(batch) + 1
        prev, self.done = self.done, max(self.done, done)
        updated = [w for w, s0 in zip(self.wrappers, self.start_steps)
                   if done > prev and w.schedule.last_update(s0 + prev, done - prev) is not None]
        if not updated:
            return
        sync_model_state(model)
        self.write_sparsity(updated, self.calls)


def centroid_drift(start, now, assignments):
    """Mean absolute change ``|now - start|`` of the centroids that hold at least one weight in
    ``assignments`` (the ones that train: a centroid's gradient is the sum of its weights'). A
    centroid no weight is assigned to is left out: the unused last centroid of a kernel with zeros
    under ``zero_takes_a_cluster`` (tfmot's count, kept at 0), or a cluster k-means left empty;
    counting them scaled the drift down (by 7/8 with 8 clusters, one of them the zero). The zero
    slot (index ``len(centroids)``) is not a centroid. 0.0 when no centroid holds a weight (an
    all-zero kernel with ``preserve_sparsity``).

    Example:
        >>> centroid_drift([0.25, 0.5, 0.0], [0.5, 0.0, 0.0], [[0, 1], [3, 1]])  # centroid 2 holds none
        0.375
    """
    start, now = np.asarray(start, np.float64), np.asarray(now, np.float64)
    held = np.bincount(np.asarray(assignments).ravel(), minlength=now.size + 1)[:now.size] > 0
    return float(np.mean(np.abs(now[held] - start[held]))) if held.any() else 0.0


class ClusteringSummaries(keras.callbacks.Callback):
    """Writes cluster count and centroid drift of a clustered model to ``<log_dir>/train``.

    Per clustered weight: ``clusters/<layer>/<weight>``, the number of distinct non-zero values
    the weight holds (the zeros a ``preserve_sparsity`` kernel keeps are not counted), and
    ``centroid_drift/<layer>/<weight>``, the mean absolute change since the start of ``fit`` of
    the centroids that hold weights (:func:`centroid_drift`: a centroid no weight uses, such as
    the spare one of tfmot's ``preserve_sparsity`` count, is left out).

    Args:
        log_dir: the same directory as ``keras.callbacks.TensorBoard(log_dir)``.
        update_freq: ``"epoch"`` (end of each epoch) or an int ``n``: also every ``n`` batches.

    Listed twice in one ``fit()``, the same instance writes each point once.

    Writing needs TensorFlow's summary writer (any backend); viewing, and Keras's own
    ``keras.callbacks.TensorBoard``, need the ``tensorboard`` package (``pip install dc_keras[tensorboard]``).

    Example (the second line needs the ``tensorboard`` package):
        >>> clustered.fit(x, y, epochs=2, callbacks=[dc_keras.train.ClusteringSummaries("logs")], verbose=0)
        >>> clustered.fit(x, y, epochs=2, callbacks=[keras.callbacks.TensorBoard("logs"),
        ...                                          dc_keras.train.ClusteringSummaries("logs")])  # doctest: +SKIP
    """

    @instance_only
    def set_model(self, model):
        super().set_model(model)

    def __init__(self, log_dir, update_freq="epoch"):
        super().__init__()
        if update_freq != "epoch" and (isinstance(update_freq, bool) or not isinstance(update_freq, int)
                                       or update_freq < 1):
            raise ValueError(f"`update_freq` must be 'epoch' or a positive int, got {update_freq!r}.")
        self.update_freq = update_freq
        self._log = SummaryLog(log_dir)
        self.log_dir = self._log.log_dir
        if update_freq != "epoch":
            self.on_train_batch_end = self._batch_end  # batch hook only when asked (it syncs)

    def _wrappers(self):
        from dc_keras.train.clustering import ClusterWrapper

        wrappers = _base.find_wrappers(self.model, ClusterWrapper)
        if not wrappers:
            raise ValueError(f"ClusteringSummaries: model {self.model.name!r} has no clustered layers.")
        return wrappers

    def on_train_begin(self, logs=None):
        if repeated_call(self, "on_train_begin"):
            return
        self._log.begin()
        self._start = {id(c): _base.to_numpy(c) for w in self._wrappers() for c in w._centroids}

    def _batch_end(self, batch, logs=None):
        if repeated_call(self, "on_train_batch_end", batch):
            return
        self._log.calls += 1
        if self._log.calls % self.update_freq == 0:
            self._write()

    def on_epoch_begin(self, epoch, logs=None):
        if repeated_call(self, "on_epoch_begin", epoch):
            return
        self._epoch_calls = self._log.calls

    def on_epoch_end(self, epoch, logs=None):
        if repeated_call(self, "on_epoch_end", epoch):
            return
        if self.update_freq == "epoch":  # no batch hook: count this epoch's calls as Keras does
            steps = (self.params or {}).get("steps") or 0
            per_call = max(int(getattr(self.model, "steps_per_execution", 1) or 1), 1)
            self._log.calls = self._epoch_calls + -(-steps // per_call)
        self._write()

    def _write(self):
        sync_model_state(self.model)
        values = {}
        for wrapper in self._wrappers():
            counts = wrapper.distinct_values()
            for (name, _, _), centroids, assignments in zip(wrapper._targets, wrapper._centroids,
                                                            wrapper._assignments):
                values[f"clusters/{wrapper.name}/{name}"] = counts[name]
                values[f"centroid_drift/{wrapper.name}/{name}"] = centroid_drift(
                    self._start[id(centroids)], _base.to_numpy(centroids), _base.to_numpy(assignments))
        self._log.write(values, max(self._log.calls, 1))

    def on_train_end(self, logs=None):
        if repeated_call(self, "on_train_end"):
            return
        self._log.close()
