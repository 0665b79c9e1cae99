"""The decider part of a generated application: hi_app_decider.h.

WHY its own module: the integers come from the one Python implementation (hi_runtime.decider:
Decider.to_c_header for the model's actual output quantization); the C side only compares them.
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import UsageError


def read_header(path: Path) -> str:
    """An exported decider header's text; a binary file is one line."""
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise UsageError(f"--decider {path} is not a text file, so not a header from `hi-train decider`; pass the "
                         "decider JSON or its exported .h") from None


def header_model_name(path: Path) -> str | None:
    """The model file an exported header was made for (its first line: "Source: NAME.tflite [output]"), or
    None when it names none: a header carries the file name only, no hash."""
    m = re.search(r"Source: (\S+\.tflite)\b", read_header(path).split("\n", 1)[0])
    return Path(m.group(1)).name if m else None


def write_decider_header(decider_path: Path | None, scores_quant: tuple[float, int], out_dir: Path,
                   decider_obj=None) -> dict | None:
    """Write out_dir/hi_app_decider.h: the decider's exact integer form for the final exit's output
    quantization (a JSON from `hi-train decider`, a Decider object, or an exported header copied after its
    zero point is checked). Returns the app.json block describing it, or None without a decider."""
    if decider_path is None and decider_obj is None:
        return None
    scale, zp = scores_quant
    if decider_path is not None and decider_path.suffix == ".h":
        text = read_header(decider_path)
        m = re.search(r"#define\s+(\w+)_TOP_K\s+(\d+)", text)
        z = re.search(r"#define\s+(\w+)_ZERO_POINT\s+\((-?\d+)\)", text)
        if not m or not z:
            raise UsageError(f"{decider_path} does not look like a header from `hi-train decider` "
                             "(no <PREFIX>_TOP_K / <PREFIX>_ZERO_POINT); pass the decider JSON instead")
        if int(z.group(2)) != zp:
            raise UsageError(f"decider header {decider_path} was exported for output zero point {z.group(2)} but the "
                             f"model's scores have zero point {zp}; re-export it for this model")
        # under the app's own prefix: an export named HI_DECIDER (`--out DIR/decider`) would define
        # hi_decider_accept, which hi_decider.h already declares, and no board would build
        prefix = m.group(1)
        text = re.sub(rf"\b{prefix}_", "HI_APP_DECIDER_", text)
        text = re.sub(rf"\b{prefix.lower()}_", "hi_app_decider_", text)
        (out_dir / "hi_app_decider.h").write_text(text)
        return {"source": str(decider_path), "prefix": "HI_APP_DECIDER", "top_k": int(m.group(2)), "zero_point": zp}
    from hi_runtime.decider import Decider, DeciderError

    try:
        dec = decider_obj if decider_obj is not None else Decider.load(decider_path)
        form = dec.int8 if dec.int8 is not None and dec.int8.matches(scale, zp) else dec.compile_int8(scale, zp)
        dec = dec.with_int8(scale, zp) if dec.int8 is None or not dec.int8.matches(scale, zp) else dec
        header = dec.to_c_header(prefix="HI_APP_DECIDER", source=str(decider_path or "chain final decider"))
    except DeciderError as exc:
        raise UsageError(f"decider {decider_path or 'of the chain'}: {exc}") from exc
    (out_dir / "hi_app_decider.h").write_text(header)
    return {"source": str(decider_path) if decider_path else "chain", "prefix": "HI_APP_DECIDER",
            "top_k": form.top_k, "A": list(form.coef), "B": form.bias, "zero_point": form.zero_point,
            "exact": form.exact, "grid_disagreements": form.grid_disagreements}
