"""Single-file early-exit models with control flow (issue 18, item 3): hi-agent runs the IF model and logs
the exit it returns; --ee-chain takes only chain JSONs; hi-train split-ee turns the IF model into an INT8
segment chain that agrees with it, runs in the agent, and compiles with hi-firmware byte-exact with
TFLite Micro; hi-firmware compile on the IF model names the converter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from foreign_kit import foreign, samples  # noqa: F401 - fixture
from test_agent_kit import server_config, tiny_kit  # noqa: F401 - fixture

from hi_runtime.early_exit_graph import EarlyExitGraphError, analyze

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(tiny_kit):  # noqa: F811
    from offload_server.server import run_server_in_thread

    with run_server_in_thread(server_config(tiny_kit / "server.onnx")) as handle:
        yield handle


def _litert_exits(model: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exit index, class) per image from LiteRT directly: the IF executes inside the interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    scores = next(o for o in outs if int(np.prod(o["shape"])) > 1)
    index = next(o for o in outs if int(np.prod(o["shape"])) == 1)
    exits, classes = [], []
    for img in images:
        interp.set_tensor(inp["index"], img[None].astype(np.float32))
        interp.invoke()
        exits.append(int(interp.get_tensor(index["index"]).reshape(-1)[0]))
        classes.append(int(interp.get_tensor(scores["index"]).argmax()))
    return np.array(exits), np.array(classes)


def _records(log: Path):
    from measurements.logs import read_run_log

    run = read_run_log(log)
    return run, sorted(run.records, key=lambda r: int(r.sample_id))


@pytest.fixture(scope="module")
def split(foreign, tmp_path_factory):  # noqa: F811
    """The IF model split by `hi-train split-ee` (its threshold read from the comparison constant)."""
    from training.cli import main

    out = tmp_path_factory.mktemp("split") / "ee_split"
    rc = main(["split-ee", str(foreign / "ee_if.tflite"), "--out", str(out), "--data", str(foreign / "samples.npz"),
               "--calibration", "200", "--check", "300"])
    assert rc == 0
    return out


# ---- the model's structure ----------------------------------------------------------------------------

def test_the_if_structure_is_read_from_the_flatbuffer(foreign: Path, repo_root: Path) -> None:  # noqa: F811
    info = json.loads((foreign / "info.json").read_text())
    for name in ("ee_if.tflite", "ee_if_int8main.tflite"):
        ee = analyze((foreign / name).read_bytes(), name=name)
        assert ee.num_exits == 2
        assert ee.thresholds == [pytest.approx(info["ee_threshold"], abs=1e-6)]
        assert ee.levels[0].comparison.startswith("exit iff max(scores) >= ")
    with pytest.raises(EarlyExitGraphError, match="no IF operator"):
        analyze((repo_root / "models" / "cifar10" / "resnet8_int8.tflite").read_bytes(), name="resnet8")


def _with_opaque_exit_test(src: Path, dst: Path) -> Path:
    """The IF model with its comparison made max >= max (not against a constant)."""
    from hi_runtime.tflite_schema import opcode_name, read_model, write_model

    m = read_model(src.read_bytes())
    for op in m.subgraphs[0].operators:
        if opcode_name(m, op) == "GREATER_EQUAL":
            op.inputs = [op.inputs[0], op.inputs[0]]
    dst.write_bytes(write_model(m))
    return dst


def test_split_needs_exit_threshold_when_the_test_is_not_a_plain_constant(foreign: Path, tmp_path: Path,  # noqa: F811
                                                                          capsys) -> None:
    from training.cli import main

    odd = _with_opaque_exit_test(foreign / "ee_if.tflite", tmp_path / "odd.tflite")
    level = analyze(odd.read_bytes()).levels[0]
    assert level.threshold is None and "one constant" in level.problem
    argv = ["split-ee", str(odd), "--out", str(tmp_path / "odd"), "--data", str(foreign / "samples.npz"),
            "--calibration", "50", "--check", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--exit-threshold" in err and len(err.strip().splitlines()) == 1
    assert main(argv + ["--exit-threshold", "0.7"]) == 0
    chain = json.loads((tmp_path / "odd.json").read_text())
    assert chain["policy"]["exit_thresholds"] == [0.7] and chain["threshold_sources"][0].startswith("--exit-threshold")


# ---- the agent on the single file ------------------------------------------------------------------------

def test_ee_hi_runs_the_single_file_model_and_logs_its_exit_indices(foreign: Path, server, tmp_path: Path,  # noqa: F811
                                                                    capsys) -> None:
    from hi_runtime.agent.cli import main
    from hi_runtime.decider import Decider

    model = foreign / "ee_if.tflite"
    images, _ = samples(foreign)
    n = 120
    want_exit, want_class = _litert_exits(model, images[:n])
    assert 0 < want_exit.mean() < 1  # both exits are taken
    base = ["run", "--strategy", "ee-hi", "--model", str(model), "--server", f"127.0.0.1:{server.port}",
            "--input", f"npz:{foreign / 'samples.npz'}", "--limit", str(n), "--no-progress",
            "--latency-budget-ms", "5000"]
    rc = main(base + ["--log", str(tmp_path / "ee.jsonl")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "single-file early-exit model ee_if.tflite: 2 exits" in err and "no --decider" in err
    run, recs = _records(tmp_path / "ee.jsonl")
    assert run.header["model"] == "ee_if.tflite" and run.header["ee_model"] == "single file (IF)"
    assert [r.exit_index for r in recs] == list(want_exit)
    assert [r.local_class for r in recs] == list(want_class)
    assert not any(r.offloaded for r in recs)  # no decider: the final exit accepts

    # with a final-exit decider, only samples that reach the final exit can be offloaded
    Decider.max_softmax(0.9).save(tmp_path / "dec.json")
    rc = main(base + ["--decider", str(tmp_path / "dec.json"), "--log", str(tmp_path / "ee_hi.jsonl")])
    assert rc == 0, capsys.readouterr().err
    _, recs = _records(tmp_path / "ee_hi.jsonl")
    offloaded = [r for r in recs if r.offloaded]
    assert offloaded and all(r.exit_index == 1 for r in offloaded)
    assert all(r.server_class is not None for r in offloaded)
    assert [r.exit_index for r in recs] == list(want_exit)


def test_ee_chain_and_model_errors_are_one_line(foreign: Path, tiny_kit: Path, repo_root: Path,  # noqa: F811
                                               capsys) -> None:
    from hi_runtime.agent.cli import main

    common = ["--input", f"npz:{foreign / 'samples.npz'}", "--server", "127.0.0.1:1", "--no-progress"]
    cases = [
        (["--ee-chain", str(foreign / "ee_if.tflite")], ["takes a chain JSON", "--model", "hi-train split-ee"]),
        (["--ee-chain", str(foreign / "samples.npz")], ["not a chain JSON"]),
        (["--ee-chain", str(tiny_kit / "decider.json")], ["not a usable chain JSON"]),
        (["--model", str(foreign / "normalized_int8.tflite")], ["has no early exits", "--ee-chain"]),
        (["--model", str(foreign / "ee_if.tflite"), "--ee-chain", str(tiny_kit / "ee.json")], ["not both"]),
        (["--model", str(foreign / "ee_if.tflite"), "--exit-thresholds", "0.5"], ["inside its IF tests"]),
        # a decider is bound to its model on ee-hi too, and a chain never silently ignores --decider
        (["--model", str(foreign / "ee_if.tflite"), "--decider",
          str(repo_root / "models" / "cifar10" / "decider_resnet8.json")],
         ["does not fit ee_if.tflite", "--force-decider", "hi-train decider"]),
        (["--ee-chain", str(tiny_kit / "ee.json"), "--decider", str(tiny_kit / "decider.json")],
         ["uses the decider inside the chain JSON", "drop --decider"]),
    ]
    for extra, needles in cases:
        rc = main(["run", "--strategy", "ee-hi", *extra, *common])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("hi-agent run: error:")]
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (extra, err)
        assert all(n in lines[0] for n in needles), (extra, lines[0])


def test_local_strategy_on_the_single_file_model_uses_its_scores(foreign: Path, capsys) -> None:  # noqa: F811
    from hi_runtime.agent.cli import main

    rc = main(["run", "--strategy", "local", "--model", str(foreign / "ee_if.tflite"), "--decider", "",
               "--input", f"npz:{foreign / 'samples.npz'}", "--limit", "40", "--no-progress"])
    assert rc == 0, capsys.readouterr().err


# ---- the split chain ---------------------------------------------------------------------------------------

def test_split_chain_agrees_with_the_if_model_and_runs_in_the_agent(foreign: Path, split: Path, server,  # noqa: F811
                                                                   tmp_path: Path, capsys) -> None:
    from hi_runtime.agent.cli import main
    from hi_runtime.early_exit import SegmentChain

    info = json.loads((foreign / "info.json").read_text())
    chain = SegmentChain.load(split.with_suffix(".json"))
    assert chain.num_exits == 2 and chain.policy.thresholds == [pytest.approx(info["ee_threshold"], abs=1e-6)]
    check = chain.meta["split_check"]
    assert check["images"] == 300 and check["same_exit"] >= 0.9 and check["same_class"] >= 0.9
    assert check["accuracy_chain"] >= check["accuracy_model"] - 0.05
    rc = main(["run", "--strategy", "ee-hi", "--ee-chain", str(split.with_suffix(".json")), "--server",
               f"127.0.0.1:{server.port}", "--input", f"npz:{foreign / 'samples.npz'}", "--limit", "60",
               "--no-progress", "--log", str(tmp_path / "chain.jsonl")])
    assert rc == 0, capsys.readouterr().err
    _, recs = _records(tmp_path / "chain.jsonl")
    assert {r.exit_index for r in recs} == {0, 1}


def test_split_of_a_model_whose_graph_is_already_quantized(foreign: Path, tmp_path: Path) -> None:  # noqa: F811
    """The same function converted to INT8: the converter quantized the main graph and (here) the branch
    too, with the branch's weights quantized like activations, which LiteRT refuses to run. The split
    dequantizes the constants and re-quantizes properly: its chain agrees with the float IF model."""
    from hi_runtime.backends import BackendError, open_backend
    from training.split_ee import compare, split_early_exit

    with pytest.raises(BackendError):
        open_backend(foreign / "ee_if_int8main.tflite")
    images, labels = samples(foreign)
    report = split_early_exit(foreign / "ee_if_int8main.tflite", tmp_path / "q", images[:150], log=lambda m: None)
    assert report.unsupported_ops == [] and report.thresholds == analyze(
        (foreign / "ee_if.tflite").read_bytes()).thresholds  # the int8 threshold constant, dequantized
    check = compare(foreign / "ee_if.tflite", report.export.chain.path, images[150:350], labels[150:350])
    assert check["same_exit"] >= 0.85 and check["same_class"] >= 0.9, check


@pytest.mark.firmware
def test_split_segments_compile_and_match_tflite_micro_byte_for_byte(foreign: Path, split: Path,  # noqa: F811
                                                                     tmp_path: Path, capsys) -> None:
    from hi_firmware.cli import main as firmware
    from hi_firmware.compiler.hostbuild import build_host_model
    from hi_runtime.backends import ChainRunner, TflmBackend
    from hi_runtime.early_exit import SegmentChain

    # the IF model itself: the compiler's error names the converter
    assert firmware(["compile", str(foreign / "ee_if.tflite"), "--out", str(tmp_path / "if")]) == 2
    assert "hi-train split-ee" in capsys.readouterr().err
    chain = SegmentChain.load(split.with_suffix(".json"))
    for k, seg in enumerate(chain.segments):
        assert firmware(["compile", str(seg.file), "--out", str(tmp_path / f"seg{k + 1}")]) == 0
    capsys.readouterr()
    runner = ChainRunner(chain)
    images, _ = samples(foreign)
    seg_bytes = [s.file.read_bytes() for s in chain.segments]
    hosts = [build_host_model(b, f"ee_seg{k + 1}", tmp_path / "host")[0] for k, b in enumerate(seg_bytes)]
    tflm = [TflmBackend(b) for b in seg_bytes]
    rng = np.random.default_rng(3)
    inputs = [runner.preprocess(img) for img in images[:25]] + [
        rng.integers(-128, 128, (1, 32, 32, 3), dtype=np.int8) for _ in range(10)]
    for i, x in enumerate(inputs):
        ours, theirs = hosts[0].run(x), tflm[0].run_many(x)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs)), f"segment 1, input {i}"
        feats = next(a for a in theirs if a.ndim == 4)
        ours2, theirs2 = hosts[1].run(feats), tflm[1].run_many(feats)
        assert all(np.array_equal(a, b) for a, b in zip(ours2, theirs2)), f"segment 2, input {i}"


def test_a_chain_json_carries_its_input_spec_to_the_agent(split: Path, tmp_path: Path) -> None:
    """split-ee stores a non-identity input spec in the chain JSON ('input'); ee-hi applies it."""
    import argparse
    import shutil

    from hi_runtime.agent.cli import open_early_exit
    from hi_runtime.agent.options import load_chain_arg
    from hi_runtime.input_spec import InputSpec

    for f in split.parent.glob(split.name + "*"):
        shutil.copy(f, tmp_path / f.name)
    path = tmp_path / (split.name + ".json")
    data = json.loads(path.read_text())
    data["input"] = InputSpec(pixel_scale=0.5).to_dict()
    path.write_text(json.dumps(data))
    said: list[str] = []
    args = argparse.Namespace(model=None, ee_chain=str(path), decider=None, backend="auto", input_spec=None,
                              input_scale=None, input_mean=None, input_std=None, input_layout=None)
    runner = open_early_exit(args, load_chain_arg(str(path)), False, {}, said.append)
    assert runner.input_format == InputSpec(pixel_scale=0.5)
    assert any("pixel * 0.5" in s and path.name in s for s in said)
    args.input_scale = 0.25  # a flag overrides the chain's setting
    assert open_early_exit(args, load_chain_arg(str(path)), False, {}, said.append).input_format.pixel_scale == 0.25
