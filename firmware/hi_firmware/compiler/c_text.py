"""Text from a model file (tensor names, file names) placed into generated C.

Tensor names come from whatever converter wrote the model, and TensorFlow's op names allow a backslash;
file names may hold anything. Written into a C string literal or a comment unescaped, a ``\\`` or ``"`` ends
the literal early and a ``*/`` ends the comment: the generated header no longer compiles, or a macro
expands to garbage. These two functions make any such text safe where it goes.
"""
from __future__ import annotations


def c_string(text: str) -> str:
    """``text`` as a C string literal, quotes included: backslash and double quote escaped, bytes outside
    printable ASCII as three-digit octal escapes (UTF-8), so the literal holds the same bytes."""
    out = []
    for b in text.encode("utf-8"):
        ch = chr(b)
        if ch in '\\"':
            out.append("\\" + ch)
        elif 0x20 <= b <= 0x7E and ch != "?":  # "?" too: "??x" would be a trigraph in older C dialects
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def c_comment(text: str) -> str:
    """``text`` safe inside ``/* ... */``: no ``*/`` (and no newline, so a one-line comment stays one)."""
    return text.replace("*/", "* /").replace("\r", " ").replace("\n", " ")
