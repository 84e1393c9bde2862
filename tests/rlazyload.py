"""Writes small R lazy-load databases (XDR serialization, as R's lazyLoadDBinsertValue does) for tests."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any


def _int(v: int) -> bytes:
    return struct.pack(">i", v)


def _charsxp(text: str) -> bytes:
    data = text.encode("utf-8")
    return _int(0x00040009) + _int(len(data)) + data  # CHARSXP, UTF-8 flag


def _symbol(name: str) -> bytes:
    return _int(1) + _charsxp(name)


def serialize_item(value: Any) -> bytes:
    """str lists -> STRSXP, int lists -> INTSXP, dicts -> named VECSXP."""
    if isinstance(value, dict):
        body = _int(0x213) + _int(len(value)) + b"".join(serialize_item(v) for v in value.values())
        names = serialize_item(list(value))
        return body + _int(0x402) + _symbol("names") + names + _int(254)  # pairlist (names=...), NILVALUE
    if all(isinstance(v, str) for v in value):
        return _int(16) + _int(len(value)) + b"".join(_charsxp(v) for v in value)
    return _int(13) + _int(len(value)) + struct.pack(f">{len(value)}i", *value)


def serialize(value: Any) -> bytes:
    return b"X\n" + _int(3) + _int(0x40201) + _int(0x30500) + _int(5) + b"UTF-8" + serialize_item(value)


def write_lazyload(prefix: Path, objects: dict[str, Any]) -> None:
    """``prefix.rdb`` / ``prefix.rdx`` holding ``objects`` by name."""
    blob, variables = b"", {}
    for name, value in objects.items():
        raw = serialize(value)
        chunk = _int(len(raw)) + zlib.compress(raw)
        variables[name] = [len(blob), len(chunk)]
        blob += chunk
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".rdb").write_bytes(blob)
    prefix.with_suffix(".rdx").write_bytes(gzip.compress(serialize({"variables": variables, "references": [],
                                                                     "compressed": [1]})))
