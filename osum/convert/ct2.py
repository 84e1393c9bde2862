"""Reader of the CTranslate2 ``model.bin`` layout (version >= 4: typed variables, aliases), with dequantization."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CT2_DTYPES: dict[int, str] = {0: "<f4", 1: "i1", 2: "<i2", 3: "<i4", 4: "<f2", 5: "bfloat16"}


@dataclass
class Ct2Model:
    """The parsed content of a CTranslate2 ``model.bin``."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)


class _Reader:
    """Little-endian cursor over a bytes buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        length = self.unpack("H")
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated model.bin (missing a part, or parts out of order?)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


def _decode_array(raw: bytes, dtype_code: int, shape: list[int]) -> np.ndarray:
    if dtype_code not in CT2_DTYPES:
        raise ValueError(f"unknown CTranslate2 dtype code {dtype_code}")
    if CT2_DTYPES[dtype_code] == "bfloat16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        array = bits.view(np.float32)
    else:
        array = np.frombuffer(raw, dtype=CT2_DTYPES[dtype_code]).copy()
    return array.reshape(shape)


def parse_ct2(data: bytes) -> Ct2Model:
    """Parse the CTranslate2 binary layout (version >= 4: typed variables)."""
    reader = _Reader(data)
    version = reader.unpack("I")
    if version < 4:
        raise ValueError(f"CTranslate2 model.bin version {version} is too old (need >= 4)")
    spec, revision = reader.string(), reader.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = [reader.unpack("I") for _ in range(reader.unpack("B"))]
        dtype_code = reader.unpack("B")
        variables[name] = _decode_array(reader.raw(reader.unpack("I")), dtype_code, shape)
    aliases = {}
    if reader.pos < len(data):
        for _ in range(reader.unpack("I")):
            alias = reader.string()
            aliases[alias] = reader.string()
    if reader.pos != len(data):
        raise ValueError(f"{len(data) - reader.pos} trailing bytes after the model.bin content")
    return Ct2Model(spec, revision, variables, aliases)


def read_ct2(parts: Sequence[Path]) -> Ct2Model:
    """Read (and concatenate, in order) the parts of a CTranslate2 ``model.bin``."""
    return parse_ct2(b"".join(Path(p).read_bytes() for p in parts))


def dequantize_ct2(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Floats as float32; int8/int16 weights divided by their ``<name>_scale`` (consumed)."""
    out: dict[str, np.ndarray] = {}
    for name, array in variables.items():
        if name.endswith("_scale") and name[: -len("_scale")] in variables:
            continue
        scale = variables.get(f"{name}_scale")
        if scale is not None:
            scale = scale.astype(np.float32)
            scale = scale.reshape(-1, *([1] * (array.ndim - 1))) if scale.ndim else scale
            out[name] = array.astype(np.float32) / scale
        elif np.issubdtype(array.dtype, np.floating):
            out[name] = array.astype(np.float32)
        else:
            out[name] = array
    return out

