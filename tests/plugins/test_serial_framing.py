"""Serial framing: whole frames out of a byte stream cut anywhere, the rest counted."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.plugins.serial_framing import (
    FRAMINGS,
    Deframer,
    cobs_decode,
    cobs_encode,
    encode_frame,
)

LAYOUT = "<fff"
VALUES = [[1.5, -2.25, 3.0], [0.0, 0.5, -1.0], [10.0, 20.0, 30.0]]


@given(st.binary(max_size=600))
def test_cobs_round_trips_and_never_holds_a_zero(data):
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert cobs_decode(encoded) == data


@settings(max_examples=60)
@given(framing=st.sampled_from(FRAMINGS), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_frames_cut_anywhere_come_out_whole_and_in_order(framing, cuts):
    stream = b"".join(encode_frame(framing, v, LAYOUT) for v in VALUES)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    deframer = Deframer(framing, LAYOUT)
    got = [value for a, b in itertools.pairwise(points) for value in deframer.feed(stream[a:b])]
    np.testing.assert_array_equal(np.array(got), np.array(VALUES, dtype=np.float32))
    assert deframer.counts.frames == 3 and deframer.counts.skipped == {}


@pytest.mark.parametrize("framing", FRAMINGS)
def test_garbage_and_a_damaged_frame_are_skipped_and_counted_never_raised(framing):
    good = encode_frame(framing, VALUES[0], LAYOUT)
    damaged = bytearray(encode_frame(framing, VALUES[1], LAYOUT))
    damaged[len(damaged) // 2] ^= 0x10
    # A device joined mid-stream: the tail of a frame, ended as its framing ends one.
    garbage = b"\xff\x13 noise" + (b"\x00" if framing == "cobs" else b"\n")
    stream = garbage + good + bytes(damaged) + encode_frame(framing, VALUES[2], LAYOUT)
    deframer = Deframer(framing, LAYOUT)
    got = [v.tolist() for v in deframer.feed(stream)]
    assert got[0] == pytest.approx(VALUES[0]) and got[-1] == pytest.approx(VALUES[2])
    assert len(got) == 2 and sum(deframer.counts.skipped.values()) >= 1


def test_an_nmea_sentence_checks_its_checksum_and_a_csv_line_its_field_count():
    deframer = Deframer("nmea", fields=2)
    sentence = encode_frame("nmea", [1.0, 2.0], name="GPXYZ")
    assert sentence.startswith(b"$GPXYZ,1.0,2.0*")
    tampered = sentence.replace(b"2.0", b"3.0")
    values = list(deframer.feed(sentence + tampered))
    assert [v.tolist() for v in values] == [[1.0, 2.0]]
    assert deframer.counts.skipped == {"bad checksum": 1}
    lines = Deframer("csv", fields=3)
    assert [v.tolist() for v in lines.feed(b"1,2,3\n4,5\nx,y,z\n")] == [[1.0, 2.0, 3.0]]
    assert lines.counts.skipped == {"wrong field count": 1, "not numbers": 1}
