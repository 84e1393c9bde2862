"""A small reader for R's lazy-load databases (``data/Rdata.rdx`` + ``Rdata.rdb``) of character data.

Debian ships text corpora as R packages (``r-cran-janeaustenr``: Jane Austen's six novels, one
character vector of lines each). This reads them without R: the ``.rdx`` index is a gzip'd
serialized list naming each object's (offset, length) in the ``.rdb`` file, where each object is a
4-byte big-endian length followed by a zlib stream of R's XDR serialization. Only the types such
data uses are decoded (character, integer, logical, double and generic vectors, pairlists with
symbols); anything else raises ``ValueError`` naming the type.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

NILVALUE, REFSXP = 254, 255
SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 1, 2, 9, 10, 13, 14, 16, 19
NA_INT = -(2**31)


class _Reader:
    def __init__(self, data: bytes):
        if data[:2] != b"X\n":
            raise ValueError(f"not an R XDR serialization (starts with {data[:2]!r})")
        self.data, self.pos = data, 2
        version = self.int()
        self.int(), self.int()  # writer and minimal reader R versions
        if version == 3:
            length = self.int()
            self.pos += length  # native encoding name
        self.refs: list[Any] = []

    def int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def item(self) -> Any:
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind == NILVALUE:
            return None
        if kind == REFSXP:
            return self.refs[(flags >> 8) - 1]
        if kind == SYMSXP:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == CHARSXP:
            n = self.int()
            if n == -1:
                return None
            text = self.data[self.pos : self.pos + n].decode("utf-8", errors="replace")
            self.pos += n
            return text
        if kind == LISTSXP:
            if has_attr:
                self.item()  # a pairlist's own attributes are not needed
            tag = self.item() if has_tag else None
            head, tail = self.item(), self.item()
            return [(tag, head)] + (tail if isinstance(tail, list) else [])
        n = self.int()
        if kind == STRSXP:
            value: Any = [self.item() for _ in range(n)]
        elif kind == VECSXP:
            value = [self.item() for _ in range(n)]
        elif kind in (INTSXP, LGLSXP):
            value = [None if v == NA_INT else v for v in struct.unpack_from(f">{n}i", self.data, self.pos)]
            self.pos += 4 * n
        elif kind == REALSXP:
            value = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        else:
            raise ValueError(f"R serialization type {kind} is not supported by this reader")
        if has_attr:
            attrs = dict(self.item() or [])
            names = attrs.get("names")
            if kind == VECSXP and names:
                value = dict(zip(names, value))
        return value


def unserialize(data: bytes) -> Any:
    """One R object from its XDR serialization (character vectors -> lists of str, named lists -> dicts)."""
    return _Reader(data).item()


def read_lazyload(prefix: str | Path) -> dict[str, Any]:
    """Every object of the lazy-load database ``prefix.rdx`` / ``prefix.rdb`` by name."""
    prefix = Path(prefix)
    index = unserialize(gzip.decompress(prefix.with_suffix(".rdx").read_bytes()))
    blob = prefix.with_suffix(".rdb").read_bytes()
    objects = {}
    for name, (offset, length) in index["variables"].items():
        chunk = blob[offset : offset + length]
        if chunk[4:5] in (b"2", b"3", b"Z", b"0"):
            raise ValueError(f"{prefix}.rdb: object {name!r} uses a compression this reader does not decode")
        objects[name] = unserialize(zlib.decompress(chunk[4:]))
    return objects
