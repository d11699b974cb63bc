"""TFRecord framing: round trip, CRC-32C, and corruption reported with file and record index."""

import os

import google_crc32c
import pytest

import pushing_fixtures
from vpn_jax.data import tfrecord

PAYLOADS = [b'', b'a', b'hello world' * 100, bytes(range(256)) * 40]


def _write(tmp_path, payloads=PAYLOADS):
    path = os.path.join(tmp_path, 'data.tfrecord')
    tfrecord.write_records(path, payloads)
    return path


def test_crc32c_is_castagnoli_with_c_implementation():
    assert google_crc32c.value(b'123456789') == 0xe3069283  # The CRC-32C check value.
    assert google_crc32c.implementation == 'c'


def test_masked_crc_formula():
    crc = google_crc32c.value(b'abc')
    assert tfrecord.masked_crc32c(b'abc') == ((((crc >> 15) | (crc << 17)) + 0xa282ead8)
                                              & 0xffffffff)


def test_framing_layout():
    data = b'payload'
    record = tfrecord.encode_record(data)
    assert len(record) == 8 + 4 + len(data) + 4
    assert int.from_bytes(record[:8], 'little') == len(data)
    assert int.from_bytes(record[8:12], 'little') == tfrecord.masked_crc32c(record[:8])
    assert record[12:-4] == data
    assert int.from_bytes(record[-4:], 'little') == tfrecord.masked_crc32c(data)


def test_round_trip(tmp_path):
    path = _write(tmp_path)
    assert list(tfrecord.read_records(path)) == list(enumerate(PAYLOADS))


def test_data_crc_mismatch_names_file_and_index(tmp_path):
    path = _write(tmp_path)
    pushing_fixtures.flip_payload_byte(path, 2)
    with pytest.raises(tfrecord.CorruptRecordError, match=r'data\.tfrecord: record 2: data CRC'):
        list(tfrecord.read_records(path))


def test_data_crc_mismatch_skipped_and_counted(tmp_path):
    path = _write(tmp_path)
    pushing_fixtures.flip_payload_byte(path, 2)
    skipped = []
    records = list(tfrecord.read_records(path, skip_corrupt=True, skipped=skipped))
    assert records == [(i, p) for i, p in enumerate(PAYLOADS) if i != 2]
    assert [(s.path, s.index) for s in skipped] == [(path, 2)]


def test_length_crc_mismatch(tmp_path):
    path = _write(tmp_path)
    pushing_fixtures.flip_length_byte(path, 1)
    with pytest.raises(tfrecord.CorruptRecordError, match=r'record 1: length CRC'):
        list(tfrecord.read_records(path))
    skipped = []
    records = list(tfrecord.read_records(path, skip_corrupt=True, skipped=skipped))
    assert records == [(0, PAYLOADS[0])]  # The rest of the file cannot be located.
    assert len(skipped) == 1 and 'rest of file abandoned' in skipped[0].reason


def test_truncated_file(tmp_path):
    path = _write(tmp_path)
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(size - 3)
    with pytest.raises(tfrecord.CorruptRecordError, match=r'record 3: truncated'):
        list(tfrecord.read_records(path))


def test_skip_needs_a_list(tmp_path):
    with pytest.raises(ValueError, match='skipped'):
        list(tfrecord.read_records(_write(tmp_path), skip_corrupt=True))
