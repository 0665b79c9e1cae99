"""Supervised training of the image models, resumable across sessions.

Why the pieces look the way they do:

* augmentation (random flip, 4-pixel pad-and-crop) runs batched inside the tf.data pipeline with integer
  gathers, so two CPU cores spend their time on the model rather than on per-image Python;
* the learning rate is a warm-up plus cosine decay that is a pure function of the optimizer's step, so a
  resumed run continues the exact schedule;
* ``keras.callbacks.BackupAndRestore`` checkpoints weights, optimizer state and the epoch counter after
  every epoch: a stopped run resumes where it stopped (``--resume``) instead of starting over;
* the best model by validation accuracy is kept; the test split is never looked at during training.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hi_runtime.datasets import Dataset


@dataclass
class TrainConfig:
    arch: str = "resnet8"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment: bool = True
    seed: int = 0
    ckpt_dir: str = ""
    extra_model_kwargs: dict = field(default_factory=dict)
    # "mixed_bfloat16" computes in bfloat16 with float32 weights: about half the step time on CPUs with
    # AVX512-BF16 (ResNet-9 here: 3.4 s against 6.8 s per batch of 128). The returned model is float32.
    precision: str = "float32"
    # knowledge distillation (Hinton et al.): a teacher's softened probabilities join the labels, e.g. the
    # edge server's model teaching the device model. teacher: .onnx or .tflite file; distill_weight: weight
    # of the distillation term (0 = off); temperature: softening of both distributions.
    teacher: str = ""
    distill_weight: float = 0.0
    temperature: float = 4.0

    def to_dict(self) -> dict:
        return asdict(self)


class TrainingError(Exception):
    pass


def augment_batch(images, pad: int = 4):
    """Random horizontal flip and pad-and-crop for a uint8 NHWC batch (a tf.Tensor), per image."""
    import tensorflow as tf

    b = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    x = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    oy = tf.random.uniform([b], 0, 2 * pad + 1, dtype=tf.int32)
    ox = tf.random.uniform([b], 0, 2 * pad + 1, dtype=tf.int32)
    rows = oy[:, None] + tf.range(h)[None, :]
    cols = ox[:, None] + tf.range(w)[None, :]
    x = tf.gather(x, rows, axis=1, batch_dims=1)
    x = tf.gather(x, cols, axis=2, batch_dims=1)
    flip = tf.random.uniform([b]) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)


def make_dataset(ds: Dataset, batch_size: int, *, training: bool, augment: bool, seed: int,
                 targets: np.ndarray | None = None):
    """Batches of (float32 images, targets); ``targets`` defaults to the labels (distillation passes
    labels packed with the teacher's probabilities)."""
    import tensorflow as tf

    d = tf.data.Dataset.from_tensor_slices((ds.images, ds.labels if targets is None else targets))
    if training:
        d = d.shuffle(len(ds), seed=seed, reshuffle_each_iteration=True)
    d = d.batch(batch_size, drop_remainder=training)
    if training and augment:
        d = d.map(lambda x, y: (augment_batch(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    d = d.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    return d.prefetch(tf.data.AUTOTUNE)


def lr_schedule(cfg: TrainConfig, steps_per_epoch: int):
    import keras

    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.lr * 0.1 if warm else cfg.lr,
        decay_steps=max(1, total - warm), alpha=0.0,
        warmup_target=cfg.lr if warm else None, warmup_steps=warm)


def format_duration(seconds: float) -> str:
    """``3h05m``, ``12m30s`` or ``45s``: an ETA a person reads at a glance in a background run's log."""
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def epoch_line(rec: dict, total_epochs: int, recent_seconds: list[float]) -> str:
    """One epoch's progress line: ``epoch k/N seconds=.. eta=.. metric=..``. The ETA is the median of the
    last few epochs' durations times the epochs left: a resumed run's first epoch (which also restores the
    checkpoint) or one slowed by a neighbour on a shared machine does not swing it."""
    left = total_epochs - int(rec["epoch"])
    parts = [f"epoch {rec['epoch']}/{total_epochs}", f"seconds={rec['seconds']:.1f}"]
    if left > 0 and recent_seconds:
        parts.append(f"eta={format_duration(float(np.median(recent_seconds[-5:])) * left)}")
    parts += [f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()
              if k not in ("epoch", "seconds")]
    return " ".join(parts)


class _EpochLog:
    """A compact per-epoch progress line with an ETA (for logs of background runs) plus a JSONL history."""

    def __init__(self, path: Path | None, total_epochs: int):
        import keras

        outer = self
        durations: list[float] = []

        class CB(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.t0 = time.time()

            def on_epoch_end(self, epoch, logs=None):
                logs = dict(logs or {})
                rec = {"epoch": epoch + 1, "seconds": round(time.time() - outer.t0, 1),
                       **{k: float(v) for k, v in logs.items()}}
                durations.append(rec["seconds"])
                print(epoch_line(rec, total_epochs, durations), flush=True)
                if path is not None:
                    with open(path, "a") as fh:
                        fh.write(json.dumps(rec) + "\n")

        self.t0 = time.time()
        self.callback = CB()


def train_model(cfg: TrainConfig, train: Dataset, val: Dataset, *, resume: bool = False,
                verbose: int | None = None):
    """Train ``cfg.arch`` on ``train``; returns the model with the best validation accuracy.

    With ``cfg.ckpt_dir`` set, every epoch is checkpointed there; ``resume=True`` continues a stopped
    run, and a leftover checkpoint without ``resume`` is an error rather than a silent restart.
    """
    import keras
    import tensorflow as tf

    from training.models import build_model

    keras.utils.set_random_seed(cfg.seed)
    check_precision(cfg)

    def build():
        return build_model(cfg.arch, num_classes=train.num_classes, input_shape=train.images.shape[1:],
                           weight_decay=cfg.weight_decay, **cfg.extra_model_kwargs)

    if cfg.precision == "float32":
        model = build()
    else:
        keras.mixed_precision.set_global_policy(cfg.precision)
        try:
            model = _float32_output(build())
        finally:
            keras.mixed_precision.set_global_policy("float32")
    train_targets, val_targets = train.labels, val.labels
    if cfg.distill_weight:
        train_targets, val_targets = teacher_targets(cfg, train, val)
        loss = distillation_loss_fn(train.num_classes, cfg.distill_weight, cfg.temperature, cfg.label_smoothing)
        metrics = [packed_accuracy]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="acc")]
        if cfg.label_smoothing:
            n = train.num_classes

            def loss(y_true, y_pred):  # noqa: F811 - label smoothing for sparse labels
                y = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), n)
                return keras.losses.categorical_crossentropy(y, tf.cast(y_pred, tf.float32),
                                                             label_smoothing=cfg.label_smoothing)

    fit(model, cfg, train, val, loss=loss, metrics=metrics, train_targets=train_targets,
        val_targets=val_targets, resume=resume, verbose=verbose)
    if cfg.precision != "float32":
        trained, model = model, build()  # the same network in float32 for saving and export
        model.set_weights(trained.get_weights())
    return model


def fit(model, cfg: TrainConfig, train: Dataset, val: Dataset, *, loss, metrics, train_targets=None,
        val_targets=None, monitor: str = "val_acc", resume: bool = False, verbose: int | None = None) -> None:
    """The one training loop every trainer here uses: SGD with the warm-up + cosine schedule of ``cfg``,
    a checkpoint after every epoch in ``cfg.ckpt_dir`` (``resume`` continues it; a leftover one without
    ``resume`` is refused), a JSONL history, and at the end the weights with the best ``monitor`` on the
    validation split (never the test split) loaded back into ``model``."""
    import keras

    steps = len(train) // cfg.batch_size
    if steps == 0:
        raise TrainingError(f"training split has {len(train)} images, fewer than one batch of {cfg.batch_size}")
    opt = keras.optimizers.SGD(learning_rate=lr_schedule(cfg, steps), momentum=cfg.momentum,
                               nesterov=cfg.nesterov)
    model.compile(optimizer=opt, loss=loss, metrics=metrics)

    callbacks = []
    history_path = None
    best_path = None
    start_epoch = 0
    if cfg.ckpt_dir:
        ck = Path(cfg.ckpt_dir)
        backup = ck / "backup"
        if backup.exists() and not resume:
            raise TrainingError(f"a checkpoint of an earlier run exists in {ck}; pass --resume to continue "
                                f"it, or delete {ck} to start over")
        if resume and not backup.exists():
            print(f"note: --resume given but no checkpoint in {ck}; starting a new run", file=sys.stderr)
        ck.mkdir(parents=True, exist_ok=True)
        (ck / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        # double_checkpoint: the previous epoch's backup is kept, so a kill while this one is written
        # resumes from it instead of failing on a truncated file
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup), save_freq="epoch", double_checkpoint=True,
                                                          delete_checkpoint=False))
        best_path = ck / "best.weights.h5"
        history_path = ck / "history.jsonl"
        callbacks.append(_best_weights_callback(best_path, monitor, best_in_history(history_path, monitor)
                                                if resume and best_path.exists() else None))
        start_epoch = restored_epoch(backup) if resume else 0
    callbacks.append(_EpochLog(history_path, cfg.epochs).callback)

    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 0
    # a resumed run shuffles from a seed of its own: with the run's seed it would replay epoch 1's order
    data_seed = cfg.seed + start_epoch
    model.fit(make_dataset(train, cfg.batch_size, training=True, augment=cfg.augment, seed=data_seed,
                           targets=train_targets),
              validation_data=make_dataset(val, 256, training=False, augment=False, seed=0, targets=val_targets),
              epochs=cfg.epochs, callbacks=callbacks, verbose=verbose)
    if best_path is not None and best_path.exists():
        model.load_weights(str(best_path))


def best_in_history(history_path: Path | None, monitor: str) -> float | None:
    """The best ``monitor`` value a checkpointed run reached so far (its JSONL history), or None."""
    if history_path is None or not history_path.exists():
        return None
    values = []
    for line in history_path.read_text().splitlines():
        if line.strip():
            value = json.loads(line).get(monitor)
            if isinstance(value, (int, float)):
                values.append(float(value))
    return max(values) if values else None


def restored_epoch(backup: Path) -> int:
    """How many epochs a checkpoint in ``backup`` had finished (0 without one)."""
    meta = backup / "training_metadata.json"
    try:
        return max(0, int(json.loads(meta.read_text()).get("epoch", 0)))  # Keras records epochs done
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def _best_weights_callback(path: Path, monitor: str, best_so_far: float | None):
    """Keep the weights with the best ``monitor`` in ``path``, written to a temporary file and renamed (a
    kill mid-write leaves the previous best intact), starting from the best a resumed run already has (a
    fresh callback would take the first epoch after a restart as the best, whatever it scored)."""
    import keras

    class BestWeights(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best = -math.inf if best_so_far is None else best_so_far

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(monitor)
            if value is None or not float(value) > self.best:
                return
            partial = path.with_name(path.name.replace(".weights.h5", ".partial.weights.h5"))
            self.model.save_weights(str(partial))
            os.replace(partial, path)
            self.best = float(value)

    return BestWeights()


def check_precision(cfg: TrainConfig, allowed: tuple[str, ...] | None = None) -> None:
    allowed = allowed or PRECISIONS
    if cfg.precision not in allowed:
        raise TrainingError(f"precision {cfg.precision!r} is not one of {', '.join(allowed)}")


PRECISIONS = ("float32", "mixed_bfloat16")


def distillation_loss_fn(num_classes: int, weight: float, temperature: float, label_smoothing: float = 0.0):
    """The distillation loss over packed targets [label, teacher p_1..p_C] and student probabilities:
    (1 - w) * CE(label, student) + w * T^2 * KL(softmax(log t / T) || softmax(log s / T))."""
    import keras
    import tensorflow as tf

    n, w, temp = int(num_classes), float(weight), float(temperature)

    def distillation_loss(y_true, y_pred):
        label = tf.one_hot(tf.cast(y_true[:, 0], tf.int32), n)
        student = tf.cast(y_pred, tf.float32)
        hard = keras.losses.categorical_crossentropy(label, student, label_smoothing=label_smoothing)
        return (1.0 - w) * hard + w * temp * temp * softened_kl(y_true[:, 1:], student, temp)

    return distillation_loss


def softened_kl(teacher, student, temperature: float):
    """KL(softmax(log t / T) || softmax(log s / T)) per row, for probability inputs (the models end in a
    softmax, and softmax(log p / T) = softmax(logits / T))."""
    import tensorflow as tf

    log_s = tf.math.log(tf.clip_by_value(tf.cast(student, tf.float32), 1e-7, 1.0)) / temperature
    log_t = tf.math.log(tf.clip_by_value(tf.cast(teacher, tf.float32), 1e-7, 1.0)) / temperature
    return tf.reduce_sum(tf.nn.softmax(log_t) * (tf.nn.log_softmax(log_t) - tf.nn.log_softmax(log_s)), axis=-1)


def teacher_targets(cfg: TrainConfig, train: Dataset, val: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Targets for knowledge distillation: one row per image, [label, teacher p_1..p_C].

    The teacher's probabilities are computed once per image (without augmentation; flips and 4-pixel
    crops hardly move a good teacher's posterior) and cached with the decider tools' predictions. The
    models end in a softmax, and softmax(log p / T) = softmax(logits / T), so the losses soften the
    probabilities directly."""
    from training.decider import DeciderTrainingError, server_probabilities

    if not cfg.teacher:
        raise TrainingError("distillation needs a teacher model (--teacher FILE.onnx or .tflite)")
    if not 0.0 < cfg.distill_weight <= 1.0 or cfg.temperature <= 0:
        raise TrainingError(f"distill weight must be in (0, 1] and temperature > 0, got {cfg.distill_weight} "
                            f"and {cfg.temperature}")
    try:
        t_train = server_probabilities(cfg.teacher, train.images)
        t_val = server_probabilities(cfg.teacher, val.images)
    except (DeciderTrainingError, OSError) as exc:
        raise TrainingError(f"teacher {cfg.teacher}: {exc}") from exc
    if t_train.shape[1] != train.num_classes:
        raise TrainingError(f"teacher {cfg.teacher} has {t_train.shape[1]} outputs, the data {train.num_classes} "
                            "classes")
    teacher_acc = float((t_val.argmax(1) == val.labels).mean())
    print(f"teacher {Path(cfg.teacher).name}: validation accuracy {teacher_acc:.4f}", flush=True)
    return pack_targets(train.labels, t_train), pack_targets(val.labels, t_val)


def pack_targets(labels: np.ndarray, probs: np.ndarray | None = None) -> np.ndarray:
    """[label] or [label, p_1..p_C] rows (float32), the target layout of the packed losses."""
    cols = [labels[:, None].astype(np.float32)]
    if probs is not None:
        cols.append(probs.astype(np.float32))
    return np.concatenate(cols, axis=1)


def packed_accuracy(y_true, y_pred):
    """Accuracy against the label column of packed targets."""
    import tensorflow as tf

    return tf.cast(tf.equal(tf.argmax(y_pred, axis=-1, output_type=tf.int32), tf.cast(y_true[:, 0], tf.int32)),
                   tf.float32)


packed_accuracy.__name__ = "acc"


def _float32_output(model):
    """A mixed-precision model whose output layer (the softmax) computes in float32, as Keras advises: a
    bfloat16 softmax has about three significant digits, too few for the loss."""
    import keras

    last = model.layers[-1].name

    def clone(layer):
        cfg = layer.get_config()
        if layer.name == last:
            cfg["dtype"] = "float32"
        return layer.__class__.from_config(cfg)

    return keras.models.clone_model(model, clone_function=clone)


def evaluate_keras(model, ds: Dataset, batch_size: int = 500) -> float:
    probs = model.predict(ds.images.astype(np.float32), batch_size=batch_size, verbose=0)
    return float((probs.argmax(1) == ds.labels).mean())


def remove_checkpoints(ckpt_dir: str | Path) -> None:
    shutil.rmtree(ckpt_dir, ignore_errors=True)


COMPLETE_MARK = "complete.json"


def claim_checkpoint(ckpt_dir: str | Path, resume: bool, command: str) -> str | None:
    """Decide what a (re)start may do with ``ckpt_dir``; returns an error line, or None to go on.

    An earlier run's checkpoint may be hours of work or the base of a longer run (``--resume`` with more
    epochs), so a start without ``--resume`` refuses to touch it, with one exception: the same command
    again after that run finished (marked by :func:`mark_checkpoint_complete` once its model and card
    were written). Then the checkpoint holds nothing the exported files do not, and running a command a
    second time means doing it again."""
    ck = Path(ckpt_dir)
    if resume or not (ck / "backup").exists():
        return None
    mark = ck / COMPLETE_MARK
    if mark.exists():
        try:
            done = json.loads(mark.read_text())
        except (OSError, ValueError):
            done = {}
        if done.get("command") == command:
            print(f"note: starting over; {ck} held a finished run of this same command (its model and card "
                  f"are in {done.get('out')})", file=sys.stderr)
            remove_checkpoints(ck)
            return None
    return (f"a checkpoint of an earlier run exists in {ck}; pass --resume to continue it, or delete {ck} "
            f"to start over")


def mark_checkpoint_complete(ckpt_dir: str | Path, out: str | Path, command: str) -> None:
    """Record that the run in ``ckpt_dir`` finished and exported to ``out`` (see claim_checkpoint)."""
    ck = Path(ckpt_dir)
    if ck.is_dir():
        (ck / COMPLETE_MARK).write_text(json.dumps({"command": command, "out": str(out), "time": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")


def steps_to_epochs(steps: int, n: int, batch: int) -> float:
    return steps / max(1, math.floor(n / batch))


def threads_hint() -> None:
    """Use every core for one training process (TensorFlow's default on some images is fewer), unless
    ``TF_NUM_INTRAOP_THREADS`` says how many (e.g. 1 each for two runs side by side on two cores)."""
    n = int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or os.cpu_count() or 1
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass
