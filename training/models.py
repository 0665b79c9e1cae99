"""Keras 3 model definitions and a parameter/MAC counter.

All image models take raw 0..255 pixels. For training they start with a scale-only ``Rescaling(1/255)``
layer named ``input_scaling``; :func:`fold_input_scaling` removes it by dividing the first convolution's
kernel by 255, which is exact (scale only, no offset, so zero padding stays zero). The folded model is
what the INT8 export sees, so the device model's input quantization is simply pixel - 128 (scale 1, zero
point -128, as in MLPerf Tiny) and no MUL operator reaches the microcontroller.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def _keras():
    import keras

    return keras


@dataclass(frozen=True)
class ModelStats:
    params: int
    trainable_params: int
    macs: int

    def as_dict(self) -> dict[str, int]:
        return {"params": self.params, "trainable_params": self.trainable_params, "macs": self.macs}


def _reg(weight_decay: float):
    keras = _keras()
    return keras.regularizers.L2(weight_decay) if weight_decay > 0 else None


def _input(input_shape, rescale: bool):
    keras = _keras()
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="input_scaling")(inputs) if rescale else inputs
    return inputs, x


def resnet8(num_classes: int = 10, input_shape=(32, 32, 3), *, weight_decay: float = 1e-4,
            rescale: bool = True, name: str = "resnet8"):
    """ResNet-8 exactly as MLPerf Tiny's image-classification reference (about 78k parameters, 12.5 M
    MACs): conv 3x3/16 + BN + ReLU, three residual stacks of 16, 32, 64 filters (strides 1, 2, 2; 1x1
    conv shortcut where the stride is 2), 8x8 average pool, dense + softmax."""
    keras = _keras()
    L = keras.layers
    inputs, x = _input(input_shape, rescale)
    kw = dict(padding="same", kernel_initializer="he_normal", kernel_regularizer=_reg(weight_decay))
    x = L.Conv2D(16, 3, strides=1, name="conv0", **kw)(x)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.Activation("relu", name="relu0")(x)
    for stage, (filters, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
        y = L.Conv2D(filters, 3, strides=stride, name=f"s{stage}_conv1", **kw)(x)
        y = L.BatchNormalization(name=f"s{stage}_bn1")(y)
        y = L.Activation("relu", name=f"s{stage}_relu1")(y)
        y = L.Conv2D(filters, 3, strides=1, name=f"s{stage}_conv2", **kw)(y)
        y = L.BatchNormalization(name=f"s{stage}_bn2")(y)
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride, name=f"s{stage}_shortcut", **kw)(x)
        x = L.Add(name=f"s{stage}_add")([x, y])
        x = L.Activation("relu", name=f"s{stage}_out")(x)
    pool = int(min(x.shape[1], x.shape[2]))
    x = L.AveragePooling2D(pool_size=pool, name="avgpool")(x)
    x = L.Flatten(name="flatten")(x)
    outputs = L.Dense(num_classes, activation="softmax", kernel_initializer="he_normal", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _basic_block(x, filters: int, stride: int, prefix: str, weight_decay: float, projection: bool):
    keras = _keras()
    L = keras.layers
    kw = dict(padding="same", use_bias=False, kernel_initializer="he_normal",
              kernel_regularizer=_reg(weight_decay))
    y = L.Conv2D(filters, 3, strides=stride, name=f"{prefix}_conv1", **kw)(x)
    y = L.BatchNormalization(name=f"{prefix}_bn1")(y)
    y = L.Activation("relu", name=f"{prefix}_relu1")(y)
    y = L.Conv2D(filters, 3, strides=1, name=f"{prefix}_conv2", **kw)(y)
    y = L.BatchNormalization(name=f"{prefix}_bn2")(y)
    if projection or stride != 1 or x.shape[-1] != filters:
        x = L.Conv2D(filters, 1, strides=stride, name=f"{prefix}_proj", **kw)(x)
        x = L.BatchNormalization(name=f"{prefix}_proj_bn")(x)
    x = L.Add(name=f"{prefix}_add")([x, y])
    return L.Activation("relu", name=f"{prefix}_out")(x)


def resnet_cifar(depth: int, num_classes: int = 10, input_shape=(32, 32, 3), *, width: int = 16,
                 weight_decay: float = 1e-4, rescale: bool = True, name: str | None = None):
    """He et al.'s CIFAR ResNet-(6n+2) (ResNet-20/32/56/110), with 1x1 projection shortcuts where the
    shape changes (TFLite-friendly, unlike zero-padding shortcuts)."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 56, 110), got {depth}")
    n = (depth - 2) // 6
    keras = _keras()
    L = keras.layers
    inputs, x = _input(input_shape, rescale)
    x = L.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                 kernel_regularizer=_reg(weight_decay), name="conv0")(x)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.Activation("relu", name="relu0")(x)
    for stage, mult in enumerate([1, 2, 4]):
        for b in range(n):
            stride = 2 if (stage > 0 and b == 0) else 1
            x = _basic_block(x, width * mult, stride, f"s{stage + 1}b{b + 1}", weight_decay, False)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, activation="softmax", kernel_regularizer=_reg(weight_decay), name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


def resnet18_imagenet(num_classes: int = 1000, input_shape=(224, 224, 3), *, weight_decay: float = 5e-5,
                      rescale: bool = True, name: str = "resnet18"):
    """ResNet-18 for ImageNet (224x224): 7x7/64 stride-2 stem, 3x3 max pool, four stages of two basic
    blocks (64, 128, 256, 512), global average pool, dense."""
    keras = _keras()
    L = keras.layers
    inputs, x = _input(input_shape, rescale)
    x = L.Conv2D(64, 7, strides=2, padding="same", use_bias=False, kernel_initializer="he_normal",
                 kernel_regularizer=_reg(weight_decay), name="conv0")(x)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.Activation("relu", name="relu0")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same", name="pool0")(x)
    for stage, filters in enumerate([64, 128, 256, 512]):
        for b in range(2):
            stride = 2 if (stage > 0 and b == 0) else 1
            x = _basic_block(x, filters, stride, f"s{stage + 1}b{b + 1}", weight_decay, False)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet9(num_classes: int = 10, input_shape=(32, 32, 3), *, width: int = 64, weight_decay: float = 5e-4,
            rescale: bool = True, name: str | None = None):
    """The fast CIFAR-10 ResNet-9 (Page's DAWNBench design): prep conv, three conv+pool stages with
    residual pairs after the first and third, max pool, dense. Wide and shallow, so it uses a CPU's
    vector units far better per MAC than the thin CIFAR ResNets; ``width`` scales every stage."""
    keras = _keras()
    L = keras.layers

    def cbr(x, f, nm, pool=False):
        x = L.Conv2D(f, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                     kernel_regularizer=_reg(weight_decay), name=f"{nm}_conv")(x)
        x = L.BatchNormalization(name=f"{nm}_bn")(x)
        x = L.Activation("relu", name=f"{nm}_relu")(x)
        if pool:
            x = L.MaxPooling2D(2, name=f"{nm}_pool")(x)
        return x

    inputs, x = _input(input_shape, rescale)
    x = cbr(x, width, "prep")
    x = cbr(x, width * 2, "layer1", pool=True)
    r = cbr(cbr(x, width * 2, "res1a"), width * 2, "res1b")
    x = L.Add(name="res1_add")([x, r])
    x = cbr(x, width * 4, "layer2", pool=True)
    x = cbr(x, width * 8, "layer3", pool=True)
    r = cbr(cbr(x, width * 8, "res3a"), width * 8, "res3b")
    x = L.Add(name="res3_add")([x, r])
    x = L.GlobalMaxPooling2D(name="gmp")(x)
    x = L.Dense(num_classes, use_bias=False, kernel_regularizer=_reg(weight_decay), name="dense")(x)
    # Page's net scales logits by 0.125 before the softmax; keep it as a layer so exports stay pure ops
    x = L.Rescaling(0.125, name="logit_scale")(x)
    outputs = L.Activation("softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet9_w{width}")


def logistic_regression(num_classes: int = 10, input_shape=(28, 28, 1), *, weight_decay: float = 0.0,
                        rescale: bool = True, name: str = "lr"):
    """Multinomial logistic (softmax) regression on the raw pixels: the paper's Fig. 1 model for
    microcontrollers (MNIST). Flatten, scale-only ``input_scaling``, one dense layer with softmax. The
    scaling sits after the flatten so that :func:`fold_input_scaling` can fold it into the dense kernel;
    the INT8 file is then RESHAPE, FULLY_CONNECTED and SOFTMAX, with no MUL."""
    keras = _keras()
    L = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    x = L.Flatten(name="flatten")(inputs)
    if rescale:
        x = L.Rescaling(1.0 / 255.0, name="input_scaling")(x)
    outputs = L.Dense(num_classes, activation="softmax", kernel_regularizer=_reg(weight_decay),
                      name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def tiny_cnn(num_classes: int = 10, input_shape=(32, 32, 3), *, weight_decay: float = 0.0,
             rescale: bool = True, name: str = "tiny_cnn"):
    """A few-thousand-parameter CNN for tests: trains in seconds, exercises conv, add, pool and dense."""
    keras = _keras()
    L = keras.layers
    inputs, x = _input(input_shape, rescale)
    x = L.Conv2D(8, 3, strides=2, padding="same", name="conv0")(x)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.Activation("relu", name="relu0")(x)
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = L.Add(name="add")([x, y])
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def with_flip_tta(model):
    """``model`` with horizontal-flip test-time augmentation: the mean of its softmax on the image and on
    the mirrored image. For the edge server only: it costs two forward passes per image, which a GPU
    batches for little latency, and it buys a few tenths of a point on CIFAR-10 (measured in the server's
    card). The mirrors are appended to the batch, so the graph holds the network once and runs it once on
    2N images (one kernel launch per layer; about 5-10% faster than two branches on this CPU, with
    bit-identical outputs). It contains Python Lambdas: for export, not for saving."""
    keras = _keras()
    L = keras.layers
    src = model.inputs[0]
    inputs = keras.Input(shape=tuple(src.shape[1:]), dtype=src.dtype, name="image")
    both = L.Lambda(lambda t: keras.ops.concatenate([t, keras.ops.flip(t, axis=2)], axis=0),
                    name="with_mirrors")(inputs)
    probs = model(both)
    outputs = L.Lambda(lambda t: keras.ops.mean(keras.ops.stack(keras.ops.split(t, 2, axis=0)), axis=0),
                       name="tta_mean")(probs)
    return keras.Model(inputs, outputs, name=f"{model.name}_fliptta")


TTA_WRAPPERS: dict[str, Callable[..., object]] = {"flip": with_flip_tta}


def ensemble(members: list, name: str | None = None):
    """One model that runs every member on the same image and returns the mean of their softmax outputs.

    For the edge server, where the accuracy of a few more networks costs little latency on a GPU: members
    trained with different widths or seeds make partly independent mistakes, so their averaged
    probabilities are better calibrated and usually more accurate than the best member (the server card
    records each member's accuracy beside the ensemble's). The mean is a plain ``Average`` layer, so the
    result saves, loads and exports like any functional model. Members must share the input shape and the
    number of classes; members with the same name are renamed, since Keras needs unique layer names."""
    keras = _keras()
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
    shapes = {tuple(m.inputs[0].shape[1:]) for m in members}
    classes = {int(m.outputs[0].shape[-1]) for m in members}
    if len(shapes) != 1 or len(classes) != 1:
        raise ValueError("ensemble members must share the input shape and the number of classes; got inputs "
                         f"{sorted(shapes)} and classes {sorted(classes)}")
    names = [m.name for m in members]
    if len(set(names)) < len(names):
        for i, m in enumerate(members):
            m.name = f"{names[i]}_{i}"
    inputs = keras.Input(shape=shapes.pop(), dtype=members[0].inputs[0].dtype, name="image")
    mean = keras.layers.Average(name="ensemble_mean")([m(inputs) for m in members])
    return keras.Model(inputs, mean, name=name or "ensemble_" + "_".join(m.name for m in members))


ARCHITECTURES: dict[str, Callable[..., object]] = {
    "resnet8": resnet8,
    "resnet20": lambda **kw: resnet_cifar(20, **kw),
    "resnet56": lambda **kw: resnet_cifar(56, **kw),
    "resnet18": resnet18_imagenet,
    "resnet9": resnet9,
    "resnet9_w32": lambda **kw: resnet9(width=32, **kw),
    "resnet9_w48": lambda **kw: resnet9(width=48, **kw),
    "tiny_cnn": tiny_cnn,
    "lr": logistic_regression,
}


def build_model(arch: str, num_classes: int = 10, input_shape=(32, 32, 3), **kwargs):
    """Build a registered architecture by name (see ``ARCHITECTURES``)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes=num_classes, input_shape=tuple(input_shape), **kwargs)


def dense_head_as_conv(model):
    """Return an equivalent model whose classifier, a Dense layer on a flattened 1x1 feature map (ResNet-8's
    8x8 average pool + flatten + dense), is a 1x1 Conv2D + reshape instead. Same function, same weights;
    the point is the INT8 file: TFLite Micro and LiteRT's reference kernels round FULLY_CONNECTED
    differently (one int8 step on about one image in seven for ResNet-8), while they agree on CONV_2D byte
    for byte, so with this head the whole network is bit-exact across TFLite Micro, LiteRT (BUILTIN_REF)
    and the generated firmware C. Models with any other head are returned unchanged. The result holds a
    Python Lambda (a reshape that keeps the batch dimension free), so it is for export, not for saving."""
    keras = _keras()
    L = keras.layers
    if len(model.outputs) != 1 or not isinstance(model.layers[-1], L.Dense):
        return model
    dense = model.layers[-1]
    flat = next((l for l in model.layers if l.output is dense.input), None)
    if not isinstance(flat, L.Flatten) or tuple(flat.input.shape[1:3]) != (1, 1):
        return model
    units = dense.units
    conv = L.Conv2D(units, 1, use_bias=dense.use_bias, name=f"{dense.name}_conv1x1")
    y = conv(flat.input)
    y = L.Lambda(lambda t: keras.ops.reshape(t, (-1, units)), name=f"{dense.name}_reshape")(y)
    y = L.Activation(dense.activation, name=dense.name)(y)
    converted = keras.Model(model.inputs, y, name=model.name)
    weights = dense.get_weights()
    conv.set_weights([weights[0].reshape(1, 1, *weights[0].shape), *weights[1:]])
    return converted


def fold_input_scaling(model):
    """Return an equivalent model whose ``input_scaling`` Rescaling layer is an Identity: the scale moves
    into the kernel of the convolution or dense layer it feeds (exact: scale only, no offset). The model's
    input stays raw 0..255 pixels. Models without the layer are returned unchanged."""
    keras = _keras()
    try:
        rescale = model.get_layer("input_scaling")
    except ValueError:
        return model
    if not isinstance(rescale, keras.layers.Rescaling) or float(getattr(rescale, "offset", 0.0)) != 0.0:
        return model
    scale = float(rescale.scale)
    consumers = [l for l in model.layers if l is not rescale and _takes_input_from(l, rescale)]
    if len(consumers) != 1 or not isinstance(consumers[0], (keras.layers.Conv2D, keras.layers.Dense)):
        raise ValueError("input_scaling must feed exactly one Conv2D or Dense layer to be folded into it")
    first = consumers[0].name

    def clone(layer):
        if layer.name == "input_scaling":
            return keras.layers.Identity(name="input_scaling")
        return layer.__class__.from_config(layer.get_config())

    # clone an uncompiled view: clone_model would otherwise recompile from the training config, whose
    # loss (label smoothing for sparse labels) is a closure that cannot be deserialized
    uncompiled = keras.Model(model.input, model.output, name=model.name)  # keeps dict/list output structure
    folded = keras.models.clone_model(uncompiled, clone_function=clone)
    for layer in folded.layers:
        weights = model.get_layer(layer.name).get_weights()
        if layer.name == first:
            weights = [weights[0] * scale] + weights[1:]
        if weights:
            layer.set_weights(weights)
    return folded


def _takes_input_from(layer, producer) -> bool:
    for node in getattr(layer, "_inbound_nodes", []):
        for t in getattr(node, "input_tensors", []):
            hist = getattr(t, "_keras_history", None)
            if hist is not None and hist[0] is producer:
                return True
    return False


def count_params_and_macs(model) -> ModelStats:
    """Parameters and multiply-accumulates of one forward pass of one sample.

    MACs count convolutions (including depthwise) and dense layers, the convention of MLPerf Tiny and
    the paper (12.5 M for ResNet-8); additions, pooling and activations are not counted."""
    keras = _keras()
    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a nested model (ensemble member, wrapped network)
            macs += count_params_and_macs(layer).macs
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            out = layer.output.shape
            kh, kw = layer.kernel_size
            macs += int(np.prod(out[1:3])) * kh * kw * int(out[-1])
        elif isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            kh, kw = layer.kernel_size
            cin = int(layer.input.shape[-1]) // layer.groups
            macs += int(np.prod(out[1:3])) * kh * kw * cin * int(out[-1])
        elif isinstance(layer, keras.layers.Dense):
            macs += int(np.prod(layer.input.shape[1:])) * int(layer.units)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    return ModelStats(params=total, trainable_params=trainable, macs=macs)
