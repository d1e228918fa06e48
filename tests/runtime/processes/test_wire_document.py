"""docs/wire.md and the code agree: every hex example in the document is what the
runtime's encoder writes and what its decoder reads."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from edgeloop.runtime.messages import Message
from edgeloop.runtime.processes import transport
from edgeloop.runtime.processes.wire import MAGIC, decode, encode

DOCUMENT = Path(__file__).parents[3] / "docs" / "wire.md"


def examples() -> dict[str, list[bytes]]:
    """The document's hex examples by name, each as its frames (``# frame N`` starts
    one; a frame described as zero bytes is made here)."""
    found = {}
    for name, body in re.findall(r"```hex example=(\S+)\n(.*?)```", DOCUMENT.read_text(), re.S):
        frames: list[bytearray] = []
        for line in body.splitlines():
            if line.startswith("# frame"):
                zeros = re.search(r"(\d+) zero bytes", line)
                frames.append(bytearray(int(zeros.group(1))) if zeros else bytearray())
            elif line.strip() and not line.startswith("#"):
                if not frames:
                    frames.append(bytearray())
                frames[-1] += bytes.fromhex(line)
        found[name] = [bytes(f) for f in frames]
    return found


EXAMPLES = examples()


def test_the_document_has_an_example_of_every_frame_kind():
    assert set(EXAMPLES) == {"inline-array", "array-with-buffer", "json-tree", "notice", "release"}


def test_an_inline_array_decodes_and_encodes_as_the_document_shows():
    message = decode(EXAMPLES["inline-array"])
    assert (message.seq, message.created, message.sensed) == (7, 1.5, 1.25)
    assert message.data.dtype.str == "<f4" and message.data.tolist() == [1.0, -2.5]
    frames = encode(Message(np.array([1.0, -2.5], "<f4"), 7, 1.5, 1.25))
    assert [bytes(f) for f in frames] == EXAMPLES["inline-array"]


def test_an_array_with_its_buffer_frame_decodes_and_encodes_as_the_document_shows():
    message = decode(EXAMPLES["array-with-buffer"])
    assert (message.seq, message.created, message.sensed) == (8, 2.0, 1.75)
    assert message.data.shape == (64, 64, 4) and not message.data.any()
    frames = encode(Message(np.zeros((64, 64, 4), "<f4"), 8, 2.0, 1.75))
    assert [bytes(f) for f in frames] == EXAMPLES["array-with-buffer"]


def test_a_json_tree_decodes_and_encodes_as_the_document_shows():
    message = decode(EXAMPLES["json-tree"])
    data = message.data
    assert (message.seq, message.created, message.sensed) == (9, 3.0, 2.5)
    assert data["mode"] == "hold" and data["gains"].dtype.str == "<i2"
    assert data["gains"].tolist() == [1, 2] and math.isinf(data["limit"])
    assert data["tag"] == b"\x01\x02"
    payload = {"mode": "hold", "gains": np.array([1, 2], "<i2"), "limit": math.inf, "tag": b"\1\2"}
    frames = encode(Message(payload, 9, 3.0, 2.5))
    assert [bytes(memoryview(f)) for f in frames] == EXAMPLES["json-tree"]


def test_the_notice_and_release_are_the_layouts_the_transport_uses():
    (notice,) = EXAMPLES["notice"]
    name = b"edgeloop-4242-0a1b2c3d-0"
    head = transport._NOTICE.pack(8, 2.0, 1.75, b"<f4 ", 3, 0, 1, len(name))
    sizes = b"".join(struct.pack("<Q", n) for n in (64, 64, 4))
    assert notice == MAGIC + transport._KIND_NOTICE + head + name + sizes
    assert transport._NAME.fullmatch(name.decode())
    (release,) = EXAMPLES["release"]
    assert release == transport._KIND_RELEASE + transport._RELEASE.pack(0, 1)


def test_the_control_bytes_in_the_document_are_the_transports():
    text = DOCUMENT.read_text()
    assert transport._KIND_HELLO == bytes.fromhex("48") and "`48` (`H`, one byte)" in text
    assert MAGIC + transport._KIND_ASK == bytes.fromhex("454c573151")
    assert "`45 4c 57 31 51` (`ELW1Q`)" in text
    assert transport._KIND_OFFER == b"O" and transport._TOKEN_BYTES == 16


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: [b"ELW2" + f[0][4:]], "magic"),
        (lambda f: [f[0][:4] + b"x" + f[0][5:]], "header"),
        (lambda f: [f[0][:-1]], "shape"),  # a byte short of what the shape needs
        (lambda f: [f[0][:29] + b"<U4 " + f[0][33:]], "dtype"),
    ],
)
def test_what_the_document_says_a_receiver_must_reject_is_rejected(change, reason):
    from edgeloop.runtime.errors import WireError

    with pytest.raises(WireError) as caught:
        decode(change(EXAMPLES["inline-array"]))
    assert caught.value.reason == reason
