"""The sequential tar reader gives what tarfile gives, and refuses corrupt or cut-short shards."""

import gzip
import io
import tarfile

import pytest

from osum.data.tar_stream import _number, plain_tar_members, tar_members

MEMBERS = [("a/key0.json", b'{"txt": "one"}'), ("a/key0.wav", bytes(range(256)) * 5),
           ("d" * 40 + "/" + "long" * 30 + ".flac", b"x" * 513), ("empty.txt", b""),
           ("caf\u00e9/n\u00e4me.json", b"{}")]


def make_tar(fmt: int, members=MEMBERS) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        directory = tarfile.TarInfo("a")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_members_equal_tarfiles(fmt):
    members = list(MEMBERS)
    if fmt == tarfile.USTAR_FORMAT:  # a long path fits only as prefix (155) + name (100)
        members[2] = ("p" * 120 + "/key.flac", members[2][1])
    data = make_tar(fmt, members)
    assert list(plain_tar_members(io.BufferedReader(io.BytesIO(data)))) == members
    assert list(tar_members(io.BufferedReader(io.BytesIO(data)))) == members


def test_compressed_tar_goes_through_tarfile():
    data = gzip.compress(make_tar(tarfile.GNU_FORMAT))
    assert list(tar_members(io.BufferedReader(io.BytesIO(data)))) == MEMBERS


@pytest.mark.parametrize("cut", [100, 512 + 10, 3000])
def test_cut_short_tar_is_an_error_after_the_complete_members(cut):
    data = make_tar(tarfile.GNU_FORMAT)[:cut]
    got = []
    with pytest.raises(tarfile.ReadError, match="unexpected end of data"):
        for member in plain_tar_members(io.BufferedReader(io.BytesIO(data))):
            got.append(member)
    assert got == MEMBERS[: len(got)]


def test_corrupt_header_is_an_error():
    data = bytearray(make_tar(tarfile.GNU_FORMAT))
    data[512 + 20] ^= 0xFF  # a byte of the first file's name
    with pytest.raises(tarfile.ReadError, match="checksum"):
        list(plain_tar_members(io.BufferedReader(io.BytesIO(bytes(data)))))


def test_header_numbers_octal_and_base256():
    assert _number(b"0000644\0") == 0o644
    assert _number(b"\0" * 8) == 0
    assert _number(bytes([0x80, 0, 0, 0, 0, 0, 0x01, 0x00])) == 256
    with pytest.raises(tarfile.ReadError):
        _number(b"12x4\0\0\0\0")
