"""`hi-train member`: one member of an exported ensemble as a model of its own, for a smaller server.

The shipped edge model (`server.onnx`) is an ensemble of ResNet-9s with flip test-time augmentation:
the most accurate model these cores could train, and the right one for a GPU box, but ~949 M MACs per
image is the wrong load for a CPU server. Its members were trained separately and only their ONNX graph
ships, so this command cuts one member out of the ONNX file (``onnx.utils.Extractor``) instead of
retraining it: from the member's input (the image, or the image-and-mirror batch when the ensemble has
test-time augmentation, which the member then no longer sees) to the member's own softmax. The result is
the very network that trained, scored again on the validation and test splits, with a card that names
the source file and its hash.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import time
from pathlib import Path

from hi_runtime.cli_support import UsageError, at_least, need_file
from training.cli_checks import check_out_prefix


class MemberError(ValueError):
    pass


def register_cli(sub) -> None:
    p = sub.add_parser(
        "member", help="cut one member out of an ensemble ONNX (e.g. a CPU-sized edge model) and write its card",
        description="Extract one member network of an ensemble ONNX exported by `hi-train export --keras A B "
                    "...` (default: without the ensemble's test-time augmentation), score it on the validation "
                    "and test splits and write <out>.onnx and <out>.json.")
    p.add_argument("--onnx", required=True, help="the ensemble, e.g. models/cifar10/server.onnx")
    p.add_argument("--member", required=True,
                   help="member architecture name as on the ensemble's card (e.g. resnet9_w32) or its 1-based index")
    p.add_argument("--data", required=True, help="dataset path, e.g. ../shared/datasets/cifar10-jpeg")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "mnist", "folder", "imagenet"])
    p.add_argument("--split-seed", type=at_least(0), default=0, help="seed of the validation split (default 0)")
    p.add_argument("--out", required=True, help="output prefix, e.g. models/cifar10/server_cpu")
    p.set_defaults(func=cmd_member)


def extract_member(src: Path, member: str, dst: Path) -> dict:
    """Write member ``member`` of the ensemble ``src`` to ``dst`` (input ``image`` float32 NHWC pixels,
    output ``probabilities``); returns what was cut (tensor names, TTA dropped or not)."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx import utils

    try:
        model = onnx.load(str(src))
    except DecodeError as exc:
        raise MemberError(f"--onnx {src} is not an ONNX model ({exc}); give the ensemble .onnx that `hi-train export "
                          "--keras A B ... --export onnx` wrote, e.g. models/cifar10/server.onnx") from None
    model = onnx.shape_inference.infer_shapes(model)  # the extractor needs every tensor's type
    g = model.graph
    softmaxes = [n for n in g.node if n.op_type == "Softmax"]
    # node names are <ensemble>/<member>_<k>/<layer>/Softmax: the member is the graph's name for that network
    names = [_strip_suffix(n.name.split("/")[-3]) if n.name.count("/") >= 2 else n.name for n in softmaxes]
    if member.isdigit():
        k = int(member) - 1
        if not 0 <= k < len(softmaxes):
            raise MemberError(f"--member {member}: {src.name} has {len(softmaxes)} member(s) ({', '.join(names)})")
    else:
        hits = [i for i, n in enumerate(names) if n == member]
        if len(hits) != 1:
            raise MemberError(f"--member {member!r}: {src.name}'s members are {', '.join(names)}")
        k = hits[0]
    out_tensor = softmaxes[k].output[0]
    # the members' common input: the image, or the image-and-mirror batch of flip test-time augmentation
    mirror = [n for n in g.node if n.op_type == "Concat" and "with_mirrors" in n.name]
    in_tensor = mirror[0].output[0] if mirror else g.input[0].name
    sub = utils.Extractor(model).extract_model([in_tensor], [out_tensor])
    rename = {in_tensor: "image", out_tensor: "probabilities"}
    for node in sub.graph.node:
        node.input[:] = [rename.get(t, t) for t in node.input]
        node.output[:] = [rename.get(t, t) for t in node.output]
    for vi in list(sub.graph.input) + list(sub.graph.output):
        vi.name = rename.get(vi.name, vi.name)
    dim = sub.graph.input[0].type.tensor_type.shape.dim
    if dim:
        dim[0].dim_param = "N"
    sub.graph.name = names[k]
    onnx.checker.check_model(sub)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(sub, str(dst))
    return {"member_index": k + 1, "member": names[k], "members": names, "input_tensor": in_tensor,
            "output_tensor": out_tensor, "test_time_augmentation_dropped": bool(mirror)}


def _strip_suffix(name: str) -> str:
    """``resnet9_w32_1`` -> ``resnet9_w32``: Keras numbers a model's name when it is called inside another."""
    import re

    return re.sub(r"_\d+$", "", name)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cmd_member(args) -> int:
    from hi_runtime.backends import open_backend
    from hi_runtime.datasets import load_dataset
    from training.cards import JPEG_NOTE, git_commit, write_card
    from training.export import accuracy

    src, out = Path(args.onnx), check_out_prefix(args.out, "server_cpu")
    need_file("--onnx", src, "the ensemble .onnx that `hi-train export --keras A B ...` writes")
    dst = out.with_suffix(".onnx")
    try:
        cut = extract_member(src, args.member, dst)
    except MemberError as exc:
        raise UsageError(str(exc)) from None
    kw = {"seed": args.split_seed}
    val = load_dataset(args.dataset, args.data, "val", **kw)
    test = load_dataset(args.dataset, args.data, "test", **kw)
    model = open_backend(dst, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    test_probs = model.predict(test.images, batch=500)
    seconds = time.perf_counter() - t0
    val_acc = accuracy(model.predict(val.images, batch=500), val.labels)
    test_acc = accuracy(test_probs, test.labels)
    src_card_path = src.with_suffix(".json")
    src_card = json.loads(src_card_path.read_text()) if src_card_path.exists() else {}
    member_card = next((m for m in src_card.get("ensemble", {}).get("members", [])
                        if m.get("architecture") == cut["member"]), None)
    card = {
        "card_version": 1,
        "name": out.name,
        "architecture": cut["member"],
        "params": member_card.get("params") if member_card else None,
        "macs": member_card.get("macs") if member_card else None,
        "dataset": {"name": args.dataset, "path": str(args.data), "val_images": len(val), "test_images": len(test),
                    "note": JPEG_NOTE if args.dataset == "cifar10" else ""},
        "source": {"file": src.name, "sha256": _sha256(src), "card": src_card_path.name if src_card else None,
                   **cut,
                   "why": "one member of the GPU ensemble, sized for a CPU edge server (a single network, one "
                          "forward pass per image)"},
        "training": (member_card or {}).get("training", {}),
        "command": "hi-train " + " ".join(shlex.quote(a) for a in getattr(args, "argv", [])),
        "git_commit": git_commit(),
        "val_accuracy": val_acc,
        "artifacts": [{
            "file": dst.name, "kind": "onnx float32 (server), one member of " + src.name + ", no test-time "
            "augmentation", "bytes": dst.stat().st_size, "test_accuracy": test_acc,
            "evaluated_with": "onnxruntime CPUExecutionProvider",
            "input": {"dtype": "float32", "shape": ["N", *test.images.shape[1:]], "layout": "NHWC",
                      "meaning": "raw pixels 0..255"},
            "output": {"meaning": "softmax probabilities [N, classes]"},
            "cpu_seconds_test_split": round(seconds, 1),
        }],
    }
    card_path = write_card(out.with_suffix(".json"), card)
    print(f"{cut['member']} (member {cut['member_index']} of {len(cut['members'])}): test {100 * test_acc:.2f}%, "
          f"val {100 * val_acc:.2f}%; wrote {dst} and {card_path}", flush=True)
    return 0
