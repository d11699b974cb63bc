"""TFRecord files without TensorFlow: a reader that checks the CRCs and a writer.

Framing of one record (little-endian), as TensorFlow writes it:

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

with CRC-32C (Castagnoli) and `masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)`.
Only uncompressed files are supported (the Robotic Pushing and BAIR files are uncompressed).

Corruption is never passed on silently. `read_records` either raises `CorruptRecordError`, whose
message names the file and the record index, or, with `skip_corrupt=True`, skips the record and
appends a `CorruptRecord` to the caller's `skipped` list. A record whose *length* field is corrupt
or that is cut short cannot be stepped over (the next record's start is unknown): in skip mode the
rest of that file is abandoned and this is recorded as one `CorruptRecord` with that reason.
"""

import dataclasses
import os
import struct
from typing import BinaryIO, Iterable, Iterator, List, Optional, Tuple, Union

import google_crc32c

PathLike = Union[str, os.PathLike]

_MASK_DELTA = 0xa282ead8
_HEADER = struct.Struct('<QI')  # length, masked CRC of the 8 length bytes.
_FOOTER = struct.Struct('<I')  # masked CRC of the data.


def masked_crc32c(data: bytes) -> int:
    """TensorFlow's masked CRC-32C of `data`, a uint32 as a Python int."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xffffffff


@dataclasses.dataclass(frozen=True)
class CorruptRecord:
    """Where and why a record was rejected."""
    path: str
    index: int  # 0-based position of the record in its file.
    reason: str

    def __str__(self) -> str:
        return f'{self.path}: record {self.index}: {self.reason}'


SKIP_CORRUPT_HINT = ('To skip and count such records instead, prepare the dataset with its '
                     '`skip_corrupt` config (e.g. --dataset=robotic_pushing/skip_corrupt).')


class CorruptRecordError(ValueError):
    """A record that cannot be read or parsed; the message names the file and record index, and
    the datasets' `skip_corrupt` config that skips such records."""

    def __init__(self, record: CorruptRecord):
        super().__init__(f'{record}. {SKIP_CORRUPT_HINT}')
        self.record = record


def _open(path: PathLike) -> BinaryIO:
    # etils.epath (a TFDS dependency) also opens gs:// and other remote paths.
    from etils import epath
    return epath.Path(path).open('rb')


def read_records(path: PathLike,
                 *,
                 skip_corrupt: bool = False,
                 skipped: Optional[List[CorruptRecord]] = None) -> Iterator[Tuple[int, bytes]]:
    """Yields `(index, data)` for each record of an uncompressed TFRecord file, CRCs checked.

    Args:
      path: the file.
      skip_corrupt: if False (default), a corrupt record raises `CorruptRecordError`. If True it is
        skipped and described in `skipped` (see the module docstring for framing damage).
      skipped: list that receives a `CorruptRecord` per skipped record (required if skip_corrupt).

    Yields:
      index: int, the record's 0-based position in the file (skipped records keep their index).
      data: bytes, the record's payload (e.g. a serialized `tf.train.Example`).
    """
    if skip_corrupt and skipped is None:
        raise ValueError('skip_corrupt=True needs a `skipped` list to report what was skipped.')
    name = os.fspath(path)

    def fail(index: int, reason: str) -> None:
        record = CorruptRecord(name, index, reason)
        if not skip_corrupt:
            raise CorruptRecordError(record)
        skipped.append(record)

    with _open(path) as f:
        index = 0
        while True:
            header = f.read(_HEADER.size)
            if not header:
                return
            if len(header) < _HEADER.size:
                fail(
                    index, f'truncated header ({len(header)} of {_HEADER.size} bytes); '
                    'rest of file abandoned')
                return
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                fail(index, 'length CRC mismatch; rest of file abandoned')
                return
            data = f.read(length)
            footer = f.read(_FOOTER.size)
            if len(data) < length or len(footer) < _FOOTER.size:
                fail(
                    index, f'truncated record (length field says {length} bytes); '
                    'rest of file abandoned')
                return
            if masked_crc32c(data) != _FOOTER.unpack(footer)[0]:
                fail(index, 'data CRC mismatch')
            else:
                yield index, data
            index += 1


def encode_record(data: bytes) -> bytes:
    """One record's bytes in TFRecord framing."""
    length = struct.pack('<Q', len(data))
    return (length + struct.pack('<I', masked_crc32c(length)) + data +
            struct.pack('<I', masked_crc32c(data)))


def write_records(path: PathLike, records: Iterable[bytes]) -> int:
    """Writes `records` (bytes each) to an uncompressed TFRecord file; returns how many."""
    count = 0
    with open(path, 'wb') as f:
        for data in records:
            f.write(encode_record(data))
            count += 1
    return count
