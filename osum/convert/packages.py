"""Locating converter inputs: files, folders, or installed (not imported) packages that ship model files."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path


def _package_dir(name: str) -> Path | None:
    """Directory of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(name.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _package_dirs(name: str) -> list[Path]:
    """The package itself, or its numbered ``<name>_partN`` siblings (a model split over wheels)."""
    found = _package_dir(name)
    if found is not None:
        return [found]
    parts: list[Path] = []
    while (part := _package_dir(f"{name}_part{len(parts) + 1}")) is not None:
        parts.append(part)
    return parts


def _part_index(path: Path) -> int:
    match = re.search(r"part(\d+)$", path.name)
    return int(match.group(1)) if match else 0


def find_ct2_parts(sources: Sequence[str]) -> list[Path]:
    """Resolve ``--src`` items (model.bin files, parts, folders, package names) into ordered parts."""
    parts: list[Path] = []
    for src in sources:
        path = Path(src)
        if path.is_file():
            parts.append(path)
            continue
        roots = [path] if path.is_dir() else _package_dirs(src)
        if not roots:
            raise FileNotFoundError(f"{src!r} is neither a file, a folder nor an installed package")
        found = [p for root in roots for p in root.rglob("model.bin*") if p.is_file()]
        if not found:
            raise FileNotFoundError(f"no model.bin or model.bin.partN under {[str(r) for r in roots]}")
        parts.extend(found)
    if len(parts) > 1 and all(_part_index(p) > 0 for p in parts):
        parts.sort(key=_part_index)
    return parts



def find_sibling(parts: Sequence[Path], name: str) -> Path | None:
    """The first file ``name`` beside one of ``parts``."""
    for part in parts:
        candidate = part.parent / name
        if candidate.is_file():
            return candidate
    return None


def find_gguf(src: str) -> Path:
    """A .gguf file given directly, inside a folder, or inside an installed package."""
    path = Path(src)
    if path.is_file():
        return path
    roots = [path] if path.is_dir() else _package_dirs(src)
    found = sorted(p for root in roots for p in root.rglob("*.gguf"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected exactly one .gguf for {src!r}, found {[str(p) for p in found]}")
    return found[0]

