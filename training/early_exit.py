"""BranchyNet early-exit models: build, train with the joint loss, and export as a chain of INT8 segments.

Branch placement (``EXIT_PRESETS``):

* ResNet-8: one exit after the second residual stack (``s2_out``), as in the paper;
* ResNet-56: two exits, after residual block 2 (``s1b2_out``) and residual block 19 (``s3b1_out``, the
  first block of the third stage). The paper says "after layer 2 and after layer 19"; ResNet-56 has 27
  residual blocks, and we read its layers as those blocks (a branch inside a block would cut a skip
  connection, which a segment chain cannot do);
* tiny_cnn (tests): one exit after its residual ``add``.

A branch is small and uses only operators the firmware compiler supports: a 3x3 depthwise convolution
(stride 2 while the map is larger than 8x8) + BN + ReLU, a 1x1 convolution + BN + ReLU, global average
pooling (MEAN), a dense layer and softmax. BN folds into the convolutions and ReLU fuses into them, so the
INT8 file holds DEPTHWISE_CONV_2D, CONV_2D, MEAN, FULLY_CONNECTED, SOFTMAX.

An exit placed very early (ResNet-56's block 2 of 27 sees 16 channels of edges and colours) learns little
through that head alone, so a branch can start with ``convs`` full 3x3 convolutions + BN + ReLU (stride 2
while the map is larger than 8x8, channels doubling from the tap's): a few cheap layers of its own that
turn low-level features into class evidence (``--branch-convs``, one count per exit; default 0).

Training uses the joint weighted loss over all exits (BranchyNet), ``sum_k w_k * CE(exit_k)``. To save
CPU the trunk can start from a trained plain model (``--init``, weights copied by layer name): first the
branches alone are trained with the trunk frozen, then everything is fine-tuned jointly at a low rate.

Export: the model is converted ONCE to full-integer INT8 with every exit's scores and every cut's trunk
features as outputs; the segments are then cut out of that one flatbuffer. So a feature tensor's
quantization at the end of segment k is by construction the input quantization of segment k+1, and the
chain computes bit for bit what the single model computes. Output tensors are renamed to fixed names
(``exit{k}_scores``, ``features{k}``, ``final_scores``; segment k+1's input is ``features{k}``) and every
reader resolves them by name.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hi_runtime.early_exit import NEVER, ExitPolicy, Quant, SegmentChain, SegmentSpec
from hi_runtime.tflite_schema import opcode_name, read_model, write_model
from hi_runtime.datasets import Dataset

EXIT_PRESETS: dict[str, tuple[str, ...]] = {
    "resnet8": ("s2_out",),
    "resnet56": ("s1b2_out", "s3b1_out"),
    "resnet20": ("s2b1_out",),
    "tiny_cnn": ("add",),
}
FIRMWARE_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D",
                          "MAX_POOL_2D", "MEAN", "PAD", "RESHAPE", "SOFTMAX"})
FINAL = "final"


class EarlyExitExportError(Exception):
    pass


def exit_names(num_exits: int) -> list[str]:
    """Output names of the exits: exit1, exit2, ..., final."""
    return [f"exit{k + 1}" for k in range(num_exits - 1)] + [FINAL]


def scores_name(k: int, num_exits: int) -> str:
    return "final_scores" if k == num_exits - 1 else f"exit{k + 1}_scores"


def features_name(k: int) -> str:
    return f"features{k + 1}"


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------

def _branch(x, num_classes: int, name: str, width: int, weight_decay: float, convs: int = 0):
    import keras

    L = keras.layers
    reg = keras.regularizers.L2(weight_decay) if weight_decay > 0 else None
    y = x
    for i in range(convs):
        stride = 2 if min(int(y.shape[1]), int(y.shape[2])) > 8 else 1
        y = L.Conv2D(2 * int(y.shape[-1]), 3, strides=stride, padding="same", use_bias=False,
                     kernel_initializer="he_normal", kernel_regularizer=reg, name=f"{name}_c{i + 1}")(y)
        y = L.BatchNormalization(name=f"{name}_c{i + 1}_bn")(y)
        y = L.Activation("relu", name=f"{name}_c{i + 1}_relu")(y)
    stride = 2 if min(int(y.shape[1]), int(y.shape[2])) > 8 else 1
    y = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, depthwise_regularizer=reg,
                          name=f"{name}_dw")(y)
    y = L.BatchNormalization(name=f"{name}_dw_bn")(y)
    y = L.Activation("relu", name=f"{name}_dw_relu")(y)
    y = L.Conv2D(width, 1, use_bias=False, kernel_initializer="he_normal", kernel_regularizer=reg,
                 name=f"{name}_pw")(y)
    y = L.BatchNormalization(name=f"{name}_pw_bn")(y)
    y = L.Activation("relu", name=f"{name}_pw_relu")(y)
    y = L.GlobalAveragePooling2D(name=f"{name}_gap")(y)
    return L.Dense(num_classes, activation="softmax", kernel_regularizer=reg, name=name)(y)


def build_early_exit_model(arch: str, *, exits: Sequence[str] | None = None, num_classes: int = 10,
                           input_shape=(32, 32, 3), branch_width: int = 64, weight_decay: float = 1e-4,
                           branch_convs: Sequence[int] | None = None):
    """The base architecture with exit branches at the named layers. Outputs, in order:
    exit1, ..., final (softmax each). The trunk keeps the base model's layer names, so weights of a
    trained plain model load by name (:func:`copy_trunk_weights`). ``branch_convs`` gives each branch's
    number of leading 3x3 convolutions (one count per exit; default none)."""
    import keras

    from training.models import build_model

    taps = tuple(exits) if exits else EXIT_PRESETS.get(arch, ())
    if not taps:
        raise ValueError(f"no exit preset for {arch!r}; pass exits=[layer names] (presets: {sorted(EXIT_PRESETS)})")
    convs = [int(c) for c in branch_convs] if branch_convs else [0] * len(taps)
    if len(convs) != len(taps) or min(convs) < 0:
        raise ValueError(f"{len(taps)} exit branch(es) need {len(taps)} non-negative conv counts, got {list(convs)}")
    base = build_model(arch, num_classes=num_classes, input_shape=input_shape, weight_decay=weight_decay)
    outs = []
    for k, tap in enumerate(taps):
        try:
            t = base.get_layer(tap).output
        except ValueError as exc:
            raise ValueError(f"{arch} has no layer {tap!r} to branch from") from exc
        outs.append(_branch(t, num_classes, f"exit{k + 1}", branch_width, weight_decay, convs[k]))
    final = keras.layers.Identity(name=FINAL)(base.output)
    model = keras.Model(base.inputs, outs + [final], name=f"ee_{arch}")
    model._hi_exit_taps = taps
    return model


def exit_taps(model) -> tuple[str, ...]:
    taps = getattr(model, "_hi_exit_taps", None)
    if taps:
        return tuple(taps)
    # a reloaded model: the taps are the trunk layers the exit branches read (a branch's first layer is
    # its first conv, or its depthwise conv when it has none)
    found: dict[int, str] = {}
    for layer in model.layers:
        m = re.fullmatch(r"exit(\d+)_(c1|dw)", layer.name)
        if m:
            src = layer.input._keras_history[0]
            if not src.name.startswith("exit"):
                found[int(m.group(1))] = src.name
    if not found:
        raise ValueError(f"{model.name} has no exit branches")
    return tuple(found[k] for k in sorted(found))


def export_model(model):
    """The same network with named outputs for the converter: ``exit{k}_scores``, ``features{k}`` (the
    trunk tensor at each cut) and ``final_scores``."""
    import keras

    taps = exit_taps(model)
    n = len(taps) + 1
    outs: dict[str, Any] = {}
    for k, name in enumerate(exit_names(n)):
        outs[scores_name(k, n)] = model.get_layer(name).output
    for k, tap in enumerate(taps):
        outs[features_name(k)] = model.get_layer(tap).output
    return keras.Model(model.inputs, outs, name=model.name)


def copy_trunk_weights(ee_model, base_model) -> list[str]:
    """Copy weights of every layer of ``base_model`` into the same-named layer of ``ee_model``."""
    copied = []
    names = {layer.name for layer in ee_model.layers}
    for layer in base_model.layers:
        w = layer.get_weights()
        if w and layer.name in names:
            ee_model.get_layer(layer.name).set_weights(w)
            copied.append(layer.name)
    if not copied:
        raise ValueError(f"no layer of {base_model.name} matches a layer of {ee_model.name}")
    return copied


def branch_layer_names(model) -> list[str]:
    return [layer.name for layer in model.layers if layer.name.startswith("exit")]


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------

@dataclass
class EETrainConfig:
    arch: str = "resnet8"
    exits: list[str] = field(default_factory=list)
    loss_weights: list[float] = field(default_factory=list)  # one per exit, final last; default all 1
    branch_width: int = 64
    branch_convs: list[int] = field(default_factory=list)  # leading 3x3 convs per exit branch; default none
    init: str = ""  # a trained plain .keras model to copy the trunk from
    epochs_branch: int = 1  # branches only, trunk frozen
    epochs_joint: int = 2  # everything, joint weighted loss
    lr_branch: float = 0.05
    lr_joint: float = 0.005
    batch_size: int = 64
    weight_decay: float = 1e-4
    augment: bool = True
    seed: int = 0
    # distillation from a teacher (the edge server's model): in both phases every trained exit learns
    # (1 - distill_weight) CE + distill_weight T^2 KL(teacher_T || exit_T), so a frozen-trunk branch is
    # taught by the 91% server rather than by the labels alone; "" = labels only
    teacher: str = ""
    distill_weight: float = 0.5
    temperature: float = 4.0

    def to_dict(self) -> dict:
        return asdict(self)


def _multi_target(ds: Dataset, n_out: int, batch: int, *, training: bool, augment: bool, seed: int):
    from training.train import make_dataset

    d = make_dataset(ds, batch, training=training, augment=augment, seed=seed)
    return d.map(lambda x, y: (x, tuple([y] * n_out)))


def _say(*parts) -> None:
    """Progress lines, flushed: a run under nohup or a pipe shows each epoch as it ends."""
    print(*parts, flush=True)


def train_early_exit(cfg: EETrainConfig, train: Dataset, val: Dataset, *, verbose: int | None = None,
                     log=_say):
    """Train an early-exit model per ``cfg``; returns (model, history list)."""
    import sys

    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = build_early_exit_model(cfg.arch, exits=cfg.exits or None, num_classes=train.num_classes,
                                   input_shape=train.images.shape[1:], branch_width=cfg.branch_width,
                                   weight_decay=cfg.weight_decay, branch_convs=cfg.branch_convs or None)
    n_out = len(model.outputs)
    weights = list(cfg.loss_weights) if cfg.loss_weights else [1.0] * n_out
    if len(weights) != n_out:
        raise ValueError(f"{n_out} exits need {n_out} loss weights, got {len(weights)}")
    if cfg.init:
        from training.cli_checks import load_keras

        base = load_keras(cfg.init, "--init", f"give a trained plain .keras model of {cfg.arch} to copy the trunk from")
        copied = copy_trunk_weights(model, base)
        log(f"trunk initialized from {cfg.init} ({len(copied)} layers)")
    elif cfg.epochs_branch:
        log("note: no --init model; the 'branch-only' phase trains branches on a random trunk")
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 0
    branches = set(branch_layer_names(model))
    steps = max(1, len(train) // cfg.batch_size)
    history: list[dict] = []
    if cfg.teacher:
        from training.train import TrainConfig, make_dataset, teacher_targets

        tt, vt = teacher_targets(TrainConfig(arch=cfg.arch, teacher=cfg.teacher, distill_weight=cfg.distill_weight,
                                             temperature=cfg.temperature), train, val)
        # the exits side by side against packed [label, teacher probabilities] targets (one loss)
        fitted = keras.Model(model.inputs, keras.layers.Concatenate(name="exits_side_by_side")(model.outputs),
                             name=f"{model.name}_taught")
        loss: Any = early_exit_loss_fn(n_out, train.num_classes, weights, distill_weight=cfg.distill_weight,
                                       temperature=cfg.temperature, teach_exits=True)
        metrics: Any = [_exit_accuracy(k, train.num_classes, nm) for k, nm in enumerate(exit_names(n_out))]
        loss_weights = None
        tr = make_dataset(train, cfg.batch_size, training=True, augment=cfg.augment, seed=cfg.seed, targets=tt)
        va = make_dataset(val, 256, training=False, augment=False, seed=0, targets=vt)
    else:
        fitted, loss_weights = model, weights
        loss = [keras.losses.SparseCategoricalCrossentropy()] * n_out
        metrics = [[keras.metrics.SparseCategoricalAccuracy(name="acc")] for _ in range(n_out)]
        tr = _multi_target(train, n_out, cfg.batch_size, training=True, augment=cfg.augment, seed=cfg.seed)
        va = _multi_target(val, n_out, 256, training=False, augment=False, seed=0)
    for phase, epochs, lr, freeze in (("branches", cfg.epochs_branch, cfg.lr_branch, True),
                                      ("joint", cfg.epochs_joint, cfg.lr_joint, False)):
        if epochs <= 0:
            continue
        for layer in model.layers:
            layer.trainable = (layer.name in branches) if freeze else True
        sched = keras.optimizers.schedules.CosineDecay(lr, decay_steps=epochs * steps, alpha=0.0)
        fitted.compile(optimizer=keras.optimizers.SGD(sched, momentum=0.9, nesterov=True), loss=loss,
                       loss_weights=loss_weights, metrics=metrics)
        log(f"phase {phase}: {epochs} epoch(s) at lr {lr} ({'trunk frozen' if freeze else 'all layers'})")

        def epoch_done(e, logs, phase=phase):  # logged as each epoch ends: the progress of a long run
            rec = {"phase": phase, "epoch": e + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            history.append(rec)
            log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))

        fitted.fit(tr, validation_data=va, epochs=epochs, verbose=verbose,
                  callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=epoch_done)])
    for layer in model.layers:
        layer.trainable = True
    return model, history


@dataclass
class EEJointConfig:
    """Joint training of an early-exit model from scratch, on the plain trainer's loop (``training.train.fit``:
    warm-up + cosine schedule, a checkpoint every epoch, resumable, best weights by the final exit's
    validation accuracy). ``train`` carries the schedule, the checkpoint directory and the optional teacher.

    ``self_distill`` (a) is the "Be Your Own Teacher" term (Zhang et al., 2019): every earlier exit also
    learns the final exit's softened output (gradient stopped at the final exit), so the shallow exits
    inherit the deep head's knowledge of which classes resemble which. A teacher (the edge server's model,
    ``train.teacher`` with weight ``train.distill_weight``) teaches the final exit the same way."""

    train: Any = None  # training.train.TrainConfig
    exits: list[str] = field(default_factory=list)
    loss_weights: list[float] = field(default_factory=list)
    branch_width: int = 64
    branch_convs: list[int] = field(default_factory=list)
    self_distill: float = 0.0
    # a trained early-exit model of the same architecture and exits whose weights start the run instead of a
    # random initialization: a warm restart (Loshchilov & Hutter, "SGDR", 2017), i.e. one more warm-up +
    # cosine cycle on a converged model, which extends a finished schedule without repeating it
    restart_from: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train"] = self.train.to_dict() if self.train is not None else None
        return d


class RestartMismatch(ValueError):
    """A --restart-from model that is not built like the model to train (other exits, branches or arch)."""


def restart_weights(model, source) -> None:
    """Copy every weight of ``source`` (a trained early-exit Keras model) into ``model``, built with the same
    architecture, exits and branches; anything else is a ValueError naming the first difference, since a
    partial copy would silently train a different network than the card says (:class:`RestartMismatch`)."""
    mine, theirs = model.weights, source.weights
    if list(model.output_names) != list(source.output_names) or len(mine) != len(theirs):
        raise RestartMismatch(f"the restart model has outputs {list(source.output_names)} and {len(theirs)} weights, "
                         f"the model to train {list(model.output_names)} and {len(mine)}: give an early-exit "
                         "model trained with the same --arch, --exits, --branch-width and --branch-convs")
    for a, b in zip(mine, theirs):
        if tuple(a.shape) != tuple(b.shape):
            raise RestartMismatch(f"the restart model's weight {b.path} has shape {tuple(b.shape)} where the model to "
                             f"train has {tuple(a.shape)}: give an early-exit model trained with the same --arch, "
                             "--exits, --branch-width and --branch-convs")
    model.set_weights(source.get_weights())


def early_exit_loss_fn(num_exits: int, num_classes: int, weights: Sequence[float], *, self_distill: float = 0.0,
                       distill_weight: float = 0.0, temperature: float = 4.0, label_smoothing: float = 0.0,
                       teach_exits: bool = False):
    """The joint loss over the exits' probabilities laid side by side (``y_pred`` [B, E*C], final last) and
    packed targets (``y_true`` [B, 1] labels, or [B, 1 + C] labels and a teacher's probabilities):

        L = sum_k w_k L_k
        L_final = (1 - b) CE(y, p_E) + b T^2 KL(t_T || p_E,T)           b = distill_weight (0 without teacher)
        L_k     = (1 - a) CE(y, p_k) + a T^2 KL(sg(p_E)_T || p_k,T)     a = self_distill, k < E

    where q_T = softmax(log q / T) and sg stops the gradient. With a = b = 0 it is BranchyNet's weighted
    sum of cross-entropies. ``teach_exits`` lets the teacher teach every exit the way it teaches the final
    one (L_k = (1 - b) CE(y, p_k) + b T^2 KL(t_T || p_k,T)), for branches trained on a frozen trunk whose
    final exit cannot learn anything new."""
    import keras
    import tensorflow as tf

    from training.train import softened_kl

    E, C, T = int(num_exits), int(num_classes), float(temperature)
    w = [float(v) for v in weights]
    if len(w) != E:
        raise ValueError(f"{E} exits need {E} loss weights, got {len(w)}")
    a, b = float(self_distill), float(distill_weight)
    if not (0.0 <= a <= 1.0 and 0.0 <= b <= 1.0):
        raise ValueError(f"self-distillation and distillation weights must be in [0, 1], got {a} and {b}")

    def early_exit_loss(y_true, y_pred):
        y_pred = tf.cast(y_pred, tf.float32)
        label = tf.one_hot(tf.cast(y_true[:, 0], tf.int32), C)
        probs = [y_pred[:, k * C:(k + 1) * C] for k in range(E)]
        final = probs[-1]
        total = 0.0
        for k, p in enumerate(probs):
            ce = keras.losses.categorical_crossentropy(label, p, label_smoothing=label_smoothing)
            if k == E - 1 or (teach_exits and b > 0.0):
                if b > 0.0:
                    ce = (1.0 - b) * ce + b * T * T * softened_kl(y_true[:, 1:], p, T)
            elif a > 0.0:
                ce = (1.0 - a) * ce + a * T * T * softened_kl(tf.stop_gradient(final), p, T)
            total = total + w[k] * ce
        return total

    return early_exit_loss


def _exit_accuracy(k: int, num_classes: int, name: str):
    import tensorflow as tf

    def metric(y_true, y_pred):
        p = y_pred[:, k * num_classes:(k + 1) * num_classes]
        return tf.cast(tf.equal(tf.argmax(p, axis=-1, output_type=tf.int32), tf.cast(y_true[:, 0], tf.int32)),
                       tf.float32)

    metric.__name__ = f"acc_{name}"
    return metric


def train_early_exit_joint(cfg: EEJointConfig, train: Dataset, val: Dataset, *, resume: bool = False,
                           verbose: int | None = None, log=_say):
    """Train an early-exit model from scratch per ``cfg`` (see :class:`EEJointConfig`); returns the model
    (exits and final head as separate softmax outputs, as :func:`build_early_exit_model` makes it)."""
    import keras

    from training.train import check_precision, fit, pack_targets, teacher_targets

    tc = cfg.train
    keras.utils.set_random_seed(tc.seed)
    check_precision(tc, ("float32",))
    model = build_early_exit_model(tc.arch, exits=cfg.exits or None, num_classes=train.num_classes,
                                   input_shape=train.images.shape[1:], branch_width=cfg.branch_width,
                                   weight_decay=tc.weight_decay, branch_convs=cfg.branch_convs or None)
    if cfg.restart_from:
        restart_weights(model, keras.models.load_model(cfg.restart_from, compile=False))
    n_out = len(model.outputs)
    names = exit_names(n_out)
    weights = list(cfg.loss_weights) if cfg.loss_weights else [1.0] * n_out
    if tc.distill_weight:
        train_targets, val_targets = teacher_targets(tc, train, val)
    else:
        train_targets, val_targets = pack_targets(train.labels), pack_targets(val.labels)
    loss = early_exit_loss_fn(n_out, train.num_classes, weights, self_distill=cfg.self_distill,
                              distill_weight=tc.distill_weight, temperature=tc.temperature,
                              label_smoothing=tc.label_smoothing)
    side_by_side = keras.Model(model.inputs, keras.layers.Concatenate(name="exits_side_by_side")(model.outputs),
                               name=f"{model.name}_joint")
    metrics = [_exit_accuracy(k, train.num_classes, nm) for k, nm in enumerate(names)]
    start = f"restarted from {cfg.restart_from}" if cfg.restart_from else "from scratch"
    log(f"joint training {start}: {tc.epochs} epochs, exits {list(exit_taps(model))}, loss weights "
        f"{weights}, self-distillation {cfg.self_distill}, teacher {tc.teacher or 'none'}")
    fit(side_by_side, tc, train, val, loss=loss, metrics=metrics, train_targets=train_targets,
        val_targets=val_targets, monitor=f"val_acc_{FINAL}", resume=resume, verbose=verbose)
    return model


# ----------------------------------------------------------------------------------------------------
# Flatbuffer surgery: cut segments out of one converted model
# ----------------------------------------------------------------------------------------------------

def _name(t) -> str:
    n = t.name
    return n.decode() if isinstance(n, (bytes, bytearray)) else str(n)


def _has_data(model, t) -> bool:
    buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def _quant_of(t) -> Quant | None:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    return Quant(float(q.scale[0]), int(q.zeroPoint[0]))


def extract_subgraph(data: bytes, inputs: Sequence[int], outputs: Sequence[int],
                     rename: dict[int, str] | None = None) -> bytes:
    """A new flatbuffer computing tensors ``outputs`` from tensors ``inputs`` (indices in subgraph 0),
    with only the operators, tensors, buffers and opcodes it needs."""
    import copy

    model = read_model(data)
    if len(model.subgraphs) != 1:
        raise EarlyExitExportError(f"expected one subgraph, found {len(model.subgraphs)}")
    sg = model.subgraphs[0]
    producer = {}
    for i, op in enumerate(sg.operators):
        for t in op.outputs:
            producer[int(t)] = i
    stop = {int(i) for i in inputs}
    needed_ops: set[int] = set()
    stack = [int(o) for o in outputs]
    seen: set[int] = set()
    while stack:
        t = stack.pop()
        if t in seen or t < 0:
            continue
        seen.add(t)
        if t in stop:
            continue
        if t not in producer:
            if not _has_data(model, sg.tensors[t]):
                raise EarlyExitExportError(
                    f"tensor {_name(sg.tensors[t])!r} is needed but is neither computed, constant nor an input: "
                    "the exit is not a cut point of the graph (a skip connection crosses it)")
            continue
        i = producer[t]
        if i not in needed_ops:
            needed_ops.add(i)
            stack.extend(int(x) for x in sg.operators[i].inputs)
    ops = [sg.operators[i] for i in sorted(needed_ops)]  # original order is a valid topological order
    used = {int(i) for i in inputs} | {int(o) for o in outputs}
    for op in ops:
        used |= {int(x) for x in op.inputs if x >= 0} | {int(x) for x in op.outputs}
        used |= {int(x) for x in (op.intermediates if op.intermediates is not None else []) if x >= 0}
    tmap = {old: new for new, old in enumerate(sorted(used))}
    new_tensors = []
    buf_used = sorted({sg.tensors[t].buffer for t in used} | {0} |
                      {m.buffer for m in (model.metadata or [])})
    bmap = {old: new for new, old in enumerate(buf_used)}
    for old in sorted(used):
        t = copy.copy(sg.tensors[old])
        t.buffer = bmap[t.buffer]
        if rename and old in rename:
            t.name = rename[old]
        new_tensors.append(t)
    code_used = sorted({op.opcodeIndex for op in ops})
    cmap = {old: new for new, old in enumerate(code_used)}
    new_ops = []
    for op in ops:
        op2 = copy.copy(op)
        op2.inputs = [tmap[int(x)] if x >= 0 else -1 for x in op.inputs]
        op2.outputs = [tmap[int(x)] for x in op.outputs]
        if op.intermediates is not None:
            op2.intermediates = [tmap[int(x)] if x >= 0 else -1 for x in op.intermediates]
        op2.opcodeIndex = cmap[op.opcodeIndex]
        new_ops.append(op2)
    sg.tensors = new_tensors
    sg.operators = new_ops
    sg.inputs = [tmap[int(i)] for i in inputs]
    sg.outputs = [tmap[int(o)] for o in outputs]
    model.operatorCodes = [model.operatorCodes[i] for i in code_used]
    model.buffers = [model.buffers[i] for i in buf_used]
    for m in model.metadata or []:
        m.buffer = bmap[m.buffer]
    model.signatureDefs = []  # the single signature of the full model does not describe a segment
    return write_model(model)


def tflite_ops_and_macs(data: bytes) -> tuple[list[str], int]:
    """Operators and multiply-accumulates (conv, depthwise conv, dense; MLPerf Tiny's convention) of
    one inference of a TFLite file, counted from its tensors' shapes."""
    model = read_model(data)
    sg = model.subgraphs[0]
    names, macs = [], 0
    for op in sg.operators:
        name = opcode_name(model, op)
        names.append(name)
        out = [int(v) for v in sg.tensors[op.outputs[0]].shape]
        w = [int(v) for v in sg.tensors[op.inputs[1]].shape] if len(op.inputs) > 1 and op.inputs[1] >= 0 else []
        if name == "CONV_2D":  # weights [cout, kh, kw, cin]
            macs += int(np.prod(out[1:])) * w[1] * w[2] * w[3]
        elif name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, cout]
            macs += int(np.prod(out[1:])) * w[1] * w[2]
        elif name == "FULLY_CONNECTED":  # weights [units, in]
            macs += int(np.prod(out[:-1]) // max(1, out[0])) * w[0] * w[1]
    return sorted(set(names)), int(macs)


# ----------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------

@dataclass
class ChainExport:
    chain: SegmentChain
    single_model: Path
    segment_files: list[Path]
    ops: list[str]
    macs_per_segment: list[int]


def _output_tensor_map(full: bytes, names_in_order: list[str], check_model, check_images: np.ndarray) -> dict[str, int]:
    """Map each named output of the Keras export model to its tensor index in the converted file.

    The converter names outputs Identity, Identity_1, ... in the order of the flattened (key-sorted)
    output dict; that mapping is verified numerically against Keras so a reordering cannot go unnoticed."""
    model = read_model(full)
    sg = model.subgraphs[0]
    by_name = {_name(sg.tensors[t]): int(t) for t in sg.outputs}
    flat = sorted(names_in_order)
    mapping = {}
    for i, key in enumerate(flat):
        cand = "Identity" if i == 0 else f"Identity_{i}"
        if cand not in by_name:
            raise EarlyExitExportError(f"converted model has no output {cand}; outputs are {sorted(by_name)}")
        mapping[key] = by_name[cand]
    verify_output_map(full, mapping, check_model, check_images)
    return mapping


def verify_output_map(full: bytes, mapping: dict[str, int], check_model, check_images: np.ndarray) -> None:
    """Check numerically, on one image, that each output key's tensor in the converted file computes what
    the source model's output of that key computes (so a reordering cannot go unnoticed).

    An INT8 model may legitimately drift from its float source on an ambiguous image (a softmax near a
    tie moves by several quantization steps), so an output beyond the tight tolerance is refused as
    misordered only when another output's reference is closer to it, and as broken only when it is far
    from its own reference: more than a quarter of the output's quantized range (of the reference's
    largest magnitude for a float output). The range, not the image's top score, sets "far": on an image
    whose softmax is flat a drift of 0.1 is ordinary INT8 behaviour, yet it is half the top score."""
    from hi_runtime.backends import TFLiteBackend

    # the core's runner (default kernels: the check has a tolerance, it looks for misordered outputs)
    backend = TFLiteBackend(full)
    raw = backend.run(backend.input.quantize(check_images[:1].astype(np.float32)))
    by_index = {spec.index: spec for spec in backend.outputs}
    ref = check_model(check_images[:1].astype(np.float32), training=False)
    refs = {k: np.asarray(ref[k], dtype=np.float64) for k in mapping}
    for key, t in mapping.items():
        spec = by_index[t]
        os_ = spec.scale or 0.0
        got = spec.dequantize(raw[spec.name]).astype(np.float64)
        want = refs[key]
        if got.shape != want.shape:
            raise EarlyExitExportError(f"output {key}: converted shape {got.shape} != Keras {want.shape}")
        own = float(np.abs(got - want).max())
        if own <= 3 * os_ + 0.05 * float(np.abs(want).max()):
            continue
        closer = sorted(k for k, r in refs.items() if k != key and r.shape == got.shape
                        and float(np.abs(got - r).max()) < own)
        if spec.quantized:
            info = np.iinfo(spec.dtype)
            span = (int(info.max) - int(info.min)) * os_
        else:
            span = float(np.abs(want).max())
        if closer or own > 3 * os_ + 0.25 * span:
            why = f"it is closer to Keras' {closer[0]}" if closer else "far from its own Keras output"
            raise EarlyExitExportError(f"output {key} of the converted model does not match Keras "
                                       f"(max diff {own:.3g}; {why}); outputs may be misordered")


def _strip_requantize(model, sg, t: int) -> int:
    """If output ``t`` is produced by a QUANTIZE op (a requantization the converter appended for the
    output), return the internal tensor it reads, which is what the rest of the graph consumes."""
    for op in sg.operators:
        if int(t) in [int(o) for o in op.outputs] and opcode_name(model, op) == "QUANTIZE":
            return int(op.inputs[0])
    return int(t)


def export_early_exit(model, representative_images: np.ndarray, out_prefix: str | Path, *,
                      class_names: Sequence[str] = (), policy: ExitPolicy | None = None,
                      decider_file: str | None = None, check_images: np.ndarray | None = None,
                      allowed_ops: frozenset[str] | None = FIRMWARE_OPS) -> ChainExport:
    """Write ``<prefix>_int8.tflite`` (single model: every exit's scores), ``<prefix>_seg{k}_int8.tflite``
    (the chain) and ``<prefix>.json`` (the chain description)."""
    import tempfile

    from training.export import export_int8_tflite

    emodel = export_model(model)
    taps = exit_taps(model)
    n = len(taps) + 1
    with tempfile.TemporaryDirectory(prefix="hi-ee-") as tmp:
        full = export_int8_tflite(emodel, representative_images, Path(tmp) / "full.tflite").read_bytes()
    from training.models import fold_input_scaling

    check = check_images if check_images is not None else representative_images[:1]
    keys = [scores_name(k, n) for k in range(n)] + [features_name(k) for k in range(n - 1)]
    omap = _output_tensor_map(full, keys, fold_input_scaling(emodel), check)
    return cut_chain(full, omap, n, out_prefix, class_names=class_names, policy=policy, decider_file=decider_file,
                     meta={"exit_taps": list(taps), "model": model.name}, allowed_ops=allowed_ops)


def cut_chain(full: bytes, omap: dict[str, int], n: int, out_prefix: str | Path, *,
              class_names: Sequence[str] = (), policy: ExitPolicy | None = None, decider_file: str | None = None,
              meta: dict[str, Any] | None = None, allowed_ops: frozenset[str] | None = FIRMWARE_OPS) -> ChainExport:
    """Cut the chain out of ONE converted INT8 model whose outputs are every exit's scores and every cut's
    trunk features (``omap``: output key -> tensor index, keys as :func:`scores_name`/:func:`features_name`),
    and write ``<prefix>_int8.tflite`` (every exit's scores), ``<prefix>_seg{k}_int8.tflite`` and
    ``<prefix>.json``. Shared by :func:`export_early_exit` and ``training.split_ee``."""
    out_prefix = Path(out_prefix)
    out_dir, stem = out_prefix.parent, out_prefix.name
    out_dir.mkdir(parents=True, exist_ok=True)
    fm = read_model(full)
    sg = fm.subgraphs[0]
    image_t = int(sg.inputs[0])
    cut = [_strip_requantize(fm, sg, omap[features_name(k)]) for k in range(n - 1)]
    scores_t = [omap[scores_name(k, n)] for k in range(n)]
    ops, _ = tflite_ops_and_macs(full)
    if allowed_ops is not None:
        extra = sorted(set(ops) - allowed_ops - {"QUANTIZE"})
        if extra:
            raise EarlyExitExportError(f"the converted model uses operators the firmware does not support: {extra}")

    # single model: every exit's scores, named
    rename = {scores_t[k]: scores_name(k, n) for k in range(n)}
    rename[image_t] = "image"
    single = out_dir / f"{stem}_int8.tflite"
    single.write_bytes(extract_subgraph(full, [image_t], scores_t, rename))

    seg_files, specs, macs_list = [], [], []
    for k in range(n):
        inp_t = image_t if k == 0 else cut[k - 1]
        outs = [scores_t[k]] + ([cut[k]] if k < n - 1 else [])
        ren = {scores_t[k]: scores_name(k, n), inp_t: "image" if k == 0 else features_name(k - 1)}
        if k < n - 1:
            ren[cut[k]] = features_name(k)
        data = extract_subgraph(full, [inp_t], outs, ren)
        seg_ops, macs = tflite_ops_and_macs(data)
        if "QUANTIZE" in seg_ops or "DEQUANTIZE" in seg_ops:
            raise EarlyExitExportError(f"segment {k + 1} contains a (de)quantize operator: {seg_ops}")
        path = out_dir / f"{stem}_seg{k + 1}_int8.tflite"
        path.write_bytes(data)
        seg_files.append(path)
        macs_list.append(macs)
        specs.append(SegmentSpec(file=path, input=ren[inp_t], scores=scores_name(k, n),
                                 features=features_name(k) if k < n - 1 else None,
                                 input_quant=_quant_of(sg.tensors[inp_t]),
                                 scores_quant=_quant_of(sg.tensors[scores_t[k]]),
                                 features_quant=_quant_of(sg.tensors[cut[k]]) if k < n - 1 else None,
                                 macs=macs))
    chain = SegmentChain(segments=specs, policy=policy or ExitPolicy([NEVER] * (n - 1)),
                         path=out_dir / f"{stem}.json", decider_file=decider_file,
                         class_names=list(class_names),
                         single_model={"file": single.name, "input": "image",
                                       "outputs": [scores_name(k, n) for k in range(n)],
                                       "note": "desktop evaluation: every exit's scores from one invocation; "
                                               "bit-identical to the chain (cut from the same converted model)"},
                         meta=dict(meta or {}))
    problems = chain.check_feature_quantization()
    if problems:
        raise EarlyExitExportError("feature quantization differs between segments: " + "; ".join(problems))
    chain.save()
    return ChainExport(chain, single, seg_files, sorted(set(ops) - {"QUANTIZE"}), macs_list)


# ----------------------------------------------------------------------------------------------------
# Evaluation helpers
# ----------------------------------------------------------------------------------------------------

def exit_probabilities(single_model_path: str | Path, images: np.ndarray, names: Sequence[str], *,
                       batch: int = 256, reference: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(raw int8 scores, dequantized probabilities) of each named output of the single-model file."""
    from hi_runtime.backends import BackendError, TFLiteBackend

    tm = TFLiteBackend(single_model_path, reference=reference)
    try:
        specs = [tm.output(nm) for nm in names]
    except BackendError as exc:
        raise EarlyExitExportError(str(exc)) from exc
    raw = tm.predict_raw(images, [s.name for s in specs], batch)
    raws = [raw[s.name] for s in specs]
    return raws, [s.dequantize(r) for s, r in zip(specs, raws)]


def chain_macs_ms(macs: Sequence[int], full_ms: float, ref_macs: int) -> list[float]:
    """Device time per segment, scaled by MACs from a reference model's measured time."""
    return [full_ms * m / ref_macs for m in macs]


def save_history(path: Path, history: list[dict]) -> None:
    path.write_text("\n".join(json.dumps(h) for h in history) + ("\n" if history else ""))


def env_quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
