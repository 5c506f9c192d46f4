"""The RFC 6455 frame tracker a WebSocket relay follows each direction with, and the close frame
it speaks: frame ends wherever the bytes are split, the first end in a read, close frames seen,
and a close frame of its own that a peer parses back."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.wire.websocket import (
    CLOSE_OPCODE,
    MAX_CLOSE_REASON,
    FrameTracker,
    close_frame,
    header_length,
    payload_length,
)

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# --- building frames ---------------------------------------------------------------------------


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    width: int | None = None,
) -> bytes:
    """One frame as RFC 6455 §5.2 lays it out; `width` forces a length encoding (7, 16 or 64
    bits) where the minimal one is the rule."""
    size = len(payload)
    if width is None:
        width = 7 if size < 126 else 16 if size < 65536 else 64
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if mask is not None else 0
    if width == 7:
        head = bytes((first, mask_bit | size))
    elif width == 16:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", size)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", size)
    if mask is None:
        return head + payload
    return head + mask + unmask(mask, payload)


def unmask(mask: bytes, data: bytes) -> bytes:
    """RFC 6455 §5.3: XOR with the key, byte i with key byte i mod 4 (its own inverse)."""
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))


@dataclass(frozen=True)
class Stream:
    """Frames laid end to end, and what a reader of them should see."""

    data: bytes
    ends: tuple[int, ...]  # where each frame ends, in order
    header_ends: tuple[int, ...]  # where each frame's header ends
    close_header_end: int | None  # where the first close frame's header ends


def stream(frames: list[bytes]) -> Stream:
    ends, header_ends, close_at = [], [], None
    position = 0
    for one in frames:
        head = header_length(one)
        assert head is not None
        header_ends.append(position + head)
        if one[0] & 0x0F == CLOSE and close_at is None:
            close_at = position + head
        position += len(one)
        ends.append(position)
    return Stream(b"".join(frames), tuple(ends), tuple(header_ends), close_at)


#: Payload sizes across the three length encodings: 7 bits (0-125), 16 bits (126-65535, its
#: edges weighted) and 64 bits (65536 and up, kept modest).
short_sizes = st.one_of(
    st.integers(0, 125),
    st.sampled_from([0, 1, 124, 125, 126, 127, 65534, 65535]),
    st.integers(126, 2000),
    st.integers(126, 65535),
)
big_sizes = st.integers(65536, 70_000)

#: Small payloads for byte-by-byte feeding, both sides of the 7/16-bit edge.
small_sizes = st.integers(0, 130) | st.sampled_from([125, 126, 127, 300])

#: Control frames carry at most 125 bytes (RFC 6455 §5.5).
control_sizes = st.integers(0, 125)

#: Masks, the all-zero one (which hides nothing) among them; None for a server's frames.
mask_keys = st.binary(min_size=4, max_size=4)
masks = st.none() | mask_keys


@st.composite
def payloads(draw: st.DrawFn, sizes: st.SearchStrategy[int]) -> bytes:
    """A payload of a drawn size, filled with a drawn pattern: bytes that look like frame
    headers (0x81 0xFE, 0x88 0x7F, ...) as often as not, so that a tracker that lost its place
    would misread them."""
    size = draw(sizes)
    pattern = draw(
        st.one_of(
            st.binary(min_size=1, max_size=16),
            st.sampled_from([b"\x81\xfe", b"\x88\x7f", b"\x82\xff\x00", b"\x89\x80", b"\x00"]),
        )
    )
    return (pattern * (size // len(pattern) + 1))[:size]


@st.composite
def control_frames(draw: st.DrawFn, opcode: int, masked: bool) -> bytes:
    mask = draw(mask_keys) if masked else None
    if opcode == CLOSE:
        body = draw(
            st.one_of(
                st.just(b""),
                st.builds(
                    lambda code, reason: struct.pack("!H", code) + reason,
                    st.integers(1000, 4999),
                    st.text(max_size=20).map(lambda text: text.encode()[:123]),
                ),
            )
        )
    else:
        body = draw(payloads(control_sizes))
    return frame(opcode, body, mask=mask)


@st.composite
def messages(
    draw: st.DrawFn, masked: bool, sizes: st.SearchStrategy[int], big_left: list[int]
) -> list[bytes]:
    """One text or binary message, whole or in fragments (continuation frames), with pings and
    pongs between its fragments as RFC 6455 §5.4 allows. `big_left` bounds the frames of more
    than 16 bits of length a stream may hold."""
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    parts = draw(st.integers(1, 3))
    compressed = draw(st.booleans())  # permessage-deflate sets RSV1 on the first frame only
    out: list[bytes] = []
    for index in range(parts):
        body = draw(payloads(sizes | big_sizes if big_left[0] > 0 else sizes))
        if len(body) > 65535:
            big_left[0] -= 1
        mask = draw(mask_keys) if masked else None
        out.append(
            frame(
                opcode if index == 0 else CONTINUATION,
                body,
                fin=index == parts - 1,
                rsv=4 if compressed and index == 0 else 0,
                mask=mask,
            )
        )
        if index < parts - 1 and draw(st.booleans()):
            out.append(draw(control_frames(draw(st.sampled_from([PING, PONG])), masked)))
    return out


@st.composite
def streams(
    draw: st.DrawFn,
    *,
    sizes: st.SearchStrategy[int] = short_sizes,
    max_messages: int = 6,
    max_big: int = 2,
) -> Stream:
    """One direction of a connection: a client's (every frame masked) or a server's (none),
    messages and controls in any order, ending with a close frame or not."""
    masked = draw(st.booleans())
    big_left = [max_big]
    frames: list[bytes] = []
    for _ in range(draw(st.integers(0, max_messages))):
        if draw(st.integers(0, 3)) == 0:
            frames.append(draw(control_frames(draw(st.sampled_from([PING, PONG])), masked)))
        else:
            frames += draw(messages(masked, sizes, big_left))
    if draw(st.booleans()):
        frames.append(draw(control_frames(CLOSE, masked)))
    return stream(frames)


@st.composite
def cuts(draw: st.DrawFn, layout: Stream) -> list[int]:
    """Where the stream is split between reads: anywhere, and often at a frame's start or end,
    a byte either side of it, or inside its header."""
    total = len(layout.data)
    near = [
        point + offset
        for start, head in zip((0, *layout.ends), layout.header_ends, strict=False)
        for point in (start, head)
        for offset in (-1, 0, 1, 2, 5)
    ]
    anywhere = draw(st.lists(st.integers(0, total), max_size=25))
    chosen = draw(st.lists(st.sampled_from(near), max_size=25)) if near else []
    return sorted({c for c in (*anywhere, *chosen) if 0 < c < total} | {total})


def chunks(data: bytes, points: list[int]) -> list[tuple[int, bytes]]:
    """`data` split at `points` (sorted, the last one its length), each piece with its start."""
    out, start = [], 0
    for point in points:
        out.append((start, data[start:point]))
        start = point
    return out


# --- examples ----------------------------------------------------------------------------------


class TestLengths:
    @pytest.mark.parametrize(
        ("start", "expected"),
        [
            (b"", None),
            (b"\x81", None),
            (b"\x81\x05", 2),
            (b"\x81\x85", 6),
            (b"\x82\x7e", 4),
            (b"\x82\xfe", 8),
            (b"\x82\x7f", 10),
            (b"\x82\xff", 14),
        ],
    )
    def test_header_length_from_the_first_two_bytes(
        self, start: bytes, expected: int | None
    ) -> None:
        assert header_length(start) == expected

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (b"\x81\x05", 5),
            (b"\x81\xfd" + b"MASK", 125),
            (b"\x82\x7e\x01\x00", 256),
            (b"\x82\xfe\xff\xff" + b"MASK", 65535),
            (b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 65536),
            (b"\x82\x7f" + struct.pack("!Q", 2**40 + 3), 2**40 + 3),
        ],
    )
    def test_payload_length_in_each_encoding(self, header: bytes, expected: int) -> None:
        assert payload_length(header) == expected


#: The frames of RFC 6455 §5.7, byte for byte.
RFC_EXAMPLES = {
    "unmasked text": bytes.fromhex("810548656c6c6f"),
    "masked text": bytes.fromhex("818537fa213d7f9f4d5158"),
    "fragmented text, first": bytes.fromhex("010348656c"),
    "fragmented text, last": bytes.fromhex("80026c6f"),
    "unmasked ping": bytes.fromhex("890548656c6c6f"),
    "masked pong": bytes.fromhex("8a8537fa213d7f9f4d5158"),
    "256 bytes binary": bytes.fromhex("827e0100") + bytes(256),
    "64 KiB binary": bytes.fromhex("827f0000000000010000") + bytes(65536),
}


def state(tracker: FrameTracker) -> tuple[bool, bool]:
    """(at a boundary, close seen), read afresh each time."""
    return tracker.at_boundary, tracker.close_seen


class TestTrackerExamples:
    @pytest.mark.parametrize("name", list(RFC_EXAMPLES))
    def test_each_rfc_example_is_one_frame_whole_and_byte_by_byte(self, name: str) -> None:
        data = RFC_EXAMPLES[name]
        whole = FrameTracker()
        whole.feed(data)
        assert state(whole) == (True, False)
        tracker = FrameTracker()
        for i in range(len(data)):
            tracker.feed(data[i : i + 1])
            assert tracker.at_boundary == (i == len(data) - 1)

    def test_a_new_tracker_is_at_a_boundary_with_no_close_seen(self) -> None:
        tracker = FrameTracker()
        assert state(tracker) == (True, False)
        assert tracker.until_boundary(b"\x81\x05Hello") == 0
        assert state(tracker) == (True, False)  # nothing was read

    def test_an_empty_read_changes_nothing(self) -> None:
        tracker = FrameTracker()
        tracker.feed(b"")
        assert state(tracker) == (True, False)
        tracker.feed(b"\x81")
        tracker.feed(b"")
        assert state(tracker) == (False, False)
        assert tracker.until_boundary(b"") is None
        assert tracker.until_boundary(b"\x00") == 1  # an empty text frame, header completed

    def test_the_header_split_at_every_byte_of_a_masked_64_bit_frame(self) -> None:
        data = frame(BINARY, b"x" * 65536, mask=b"\x01\x02\x03\x04") + b"\x89\x00"
        for cut in range(1, 15):
            tracker = FrameTracker()
            tracker.feed(data[:cut])
            assert state(tracker) == (False, False)
            assert tracker.until_boundary(data[cut:]) == 14 + 65536 - cut
            assert state(tracker) == (True, False)
            tracker.feed(data[14 + 65536 :])
            assert state(tracker) == (True, False)

    def test_until_boundary_stops_at_the_first_end_and_leaves_the_rest_unread(self) -> None:
        tracker = FrameTracker()
        tracker.feed(b"\x82\x04ab")  # two of four payload bytes
        data = b"cd" + b"\x88\x02\x03\xe8"
        assert tracker.until_boundary(data) == 2
        assert state(tracker) == (True, False)  # the close frame after the end was not read
        tracker.feed(data[2:])
        assert state(tracker) == (True, True)

    def test_until_boundary_is_none_when_the_frame_goes_on(self) -> None:
        tracker = FrameTracker()
        tracker.feed(b"\x82\x7e\x01\x00")  # 256 bytes to come
        assert tracker.until_boundary(b"x" * 255) is None
        assert state(tracker) == (False, False)
        assert tracker.until_boundary(b"x\x81\x00") == 1

    def test_zero_length_frames_end_with_their_header(self) -> None:
        tracker = FrameTracker()
        tracker.feed(b"\x89")
        data = b"\x00\x8a\x00"
        assert tracker.until_boundary(data) == 1
        tracker.feed(data[1:])
        assert state(tracker) == (True, False)
        tracker.feed(b"\x8a\x80")
        assert state(tracker) == (False, False)  # its mask key is still to come
        tracker.feed(b"MASK")
        assert state(tracker) == (True, False)

    def test_close_is_seen_once_its_header_is_read_whatever_the_mask(self) -> None:
        tracker = FrameTracker()
        tracker.feed(b"\x88")
        assert state(tracker) == (False, False)
        tracker.feed(b"\x82")  # masked, two bytes: the mask key still to come
        tracker.feed(b"MAS")
        assert state(tracker) == (False, False)
        tracker.feed(b"K")
        assert state(tracker) == (False, True)
        tracker.feed(b"\x00\x00")
        assert state(tracker) == (True, True)

    @pytest.mark.parametrize("opcode", [0x0, 0x1, 0x2, 0x3, 0x7, 0x9, 0xA, 0xB, 0xF])
    def test_no_other_opcode_counts_as_close(self, opcode: int) -> None:
        tracker = FrameTracker()
        tracker.feed(frame(opcode, b"\x03\xe8", rsv=7))
        assert state(tracker) == (True, False)

    def test_a_close_in_a_payload_is_not_a_close(self) -> None:
        tracker = FrameTracker()
        tracker.feed(frame(BINARY, b"\x88\x00" * 100))
        assert state(tracker) == (True, False)


class TestCloseFrameExamples:
    def test_unmasked_as_a_server_sends_it(self) -> None:
        assert close_frame(1001, "", masked=False) == b"\x88\x02\x03\xe9"
        assert close_frame(1008, "token expired", masked=False) == (
            b"\x88\x0f\x03\xf0token expired"
        )

    def test_masked_with_the_key_it_drew(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("os.urandom", lambda n: b"\x37\xfa\x21\x3d"[:n])
        sent = close_frame(1008, "token expired", masked=True)
        payload = b"\x03\xf0token expired"
        assert sent == b"\x88\x8f\x37\xfa\x21\x3d" + unmask(b"\x37\xfa\x21\x3d", payload)

    def test_a_long_reason_is_cut_to_123_bytes_between_characters(self) -> None:
        _, reason = parse_close(close_frame(1000, "é" * 100, masked=False))
        assert reason == "é" * 61  # 122 bytes: a 62nd would need byte 124
        _, reason = parse_close(close_frame(1000, "a" + "€" * 50, masked=True))
        assert reason == "a" + "€" * 40  # 121 bytes; a 41st would end at byte 124
        _, reason = parse_close(close_frame(1000, "x" * 200, masked=True))
        assert reason == "x" * 123


# --- properties --------------------------------------------------------------------------------


class TestTrackerProperties:
    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_at_boundary_exactly_at_frame_ends_wherever_the_bytes_are_split(
        self, data: st.DataObject
    ) -> None:
        layout = data.draw(streams())
        ends = {0, *layout.ends}
        tracker = FrameTracker()
        for start, piece in chunks(layout.data, data.draw(cuts(layout))):
            tracker.feed(piece)
            fed = start + len(piece)
            assert tracker.at_boundary == (fed in ends), fed
            seen = layout.close_header_end is not None and fed >= layout.close_header_end
            assert tracker.close_seen == seen, fed
        assert tracker.at_boundary

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_until_boundary_returns_the_first_frame_end_in_each_read(
        self, data: st.DataObject
    ) -> None:
        """As a relay uses it: before passing a read on, how much of it ends the frame under
        way; the rest of the read is then fed whole."""
        layout = data.draw(streams())
        ends = sorted({0, *layout.ends})
        tracker = FrameTracker()
        for start, piece in chunks(layout.data, data.draw(cuts(layout))):
            stop = start + len(piece)
            if start in ends:
                expected: int | None = 0
            else:
                first = next((end for end in ends if start < end <= stop), None)
                expected = None if first is None else first - start
            assert tracker.until_boundary(piece) == expected, start
            if expected is not None:
                assert tracker.at_boundary
                tracker.feed(piece[expected:])
            assert tracker.at_boundary == (stop in ends), stop
            seen = layout.close_header_end is not None and stop >= layout.close_header_end
            assert tracker.close_seen == seen, stop
        assert tracker.at_boundary

    @settings(max_examples=100, deadline=None)
    @given(st.data())
    def test_byte_by_byte_is_the_same_as_all_at_once(self, data: st.DataObject) -> None:
        layout = data.draw(streams(sizes=small_sizes, max_messages=4, max_big=0))
        ends = {0, *layout.ends}
        tracker = FrameTracker()
        for i in range(len(layout.data)):
            tracker.feed(layout.data[i : i + 1])
            assert tracker.at_boundary == (i + 1 in ends), i + 1
        whole = FrameTracker()
        whole.feed(layout.data)
        assert whole.at_boundary
        assert whole.close_seen == tracker.close_seen == (layout.close_header_end is not None)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([TEXT, BINARY, PING]),
                st.integers(0, 300),
                st.sampled_from([7, 16, 64]),
                masks,
            ),
            min_size=1,
            max_size=6,
        ),
        st.data(),
    )
    def test_wider_length_encodings_than_needed_are_followed_too(
        self, specs: list[tuple[int, int, int, bytes | None]], data: st.DataObject
    ) -> None:
        """RFC 6455 asks for the minimal encoding, but a peer that spells a short length in 16
        or 64 bits must not lose the tracker its place."""
        frames = [
            frame(opcode, b"\x81\x7f" * (size // 2), mask=mask, width=max(width, _minimal(size)))
            for opcode, size, width, mask in specs
        ]
        layout = stream(frames)
        ends = {0, *layout.ends}
        tracker = FrameTracker()
        for start, piece in chunks(layout.data, data.draw(cuts(layout))):
            tracker.feed(piece)
            assert tracker.at_boundary == (start + len(piece) in ends)


def _minimal(size: int) -> int:
    return 7 if size < 126 else 16 if size < 65536 else 64


def parse_close(data: bytes) -> tuple[int, str]:
    """A close frame read as its peer reads it: one whole frame, FIN set, opcode 8, a control
    payload of at most 125 bytes, unmasked with its key if it has one."""
    assert data[0] == 0x80 | CLOSE_OPCODE
    masked = bool(data[1] & 0x80)
    size = data[1] & 0x7F
    assert size <= 125
    head = 2 + (4 if masked else 0)
    assert len(data) == head + size
    payload = unmask(data[2:6], data[6:]) if masked else data[2:]
    tracker = FrameTracker()
    tracker.feed(data)
    assert tracker.at_boundary
    assert tracker.close_seen
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8")


#: Reasons of any length and any characters UTF-8 can encode, one to four bytes each.
reasons = st.text(st.characters(codec="utf-8"), max_size=150) | st.text(
    st.characters(min_codepoint=0x80, codec="utf-8"), min_size=30, max_size=130
)


class TestCloseFrameProperties:
    @settings(max_examples=500, deadline=None)
    @given(st.integers(0, 65535), reasons, st.booleans())
    def test_a_close_frame_parses_back_to_its_code_and_reason(
        self, code: int, reason: str, masked: bool
    ) -> None:
        sent = close_frame(code, reason, masked=masked)
        assert bool(sent[1] & 0x80) == masked
        got_code, got_reason = parse_close(sent)
        assert got_code == code
        assert len(got_reason.encode()) <= MAX_CLOSE_REASON
        # cut only as much as it must, and only between whole characters
        kept = 0
        while kept < len(reason) and len(reason[: kept + 1].encode()) <= MAX_CLOSE_REASON:
            kept += 1
        assert got_reason == reason[:kept]

    @settings(max_examples=100, deadline=None)
    @given(st.integers(1000, 4999), st.text(max_size=10))
    def test_masked_close_frames_draw_a_new_key_each_time(self, code: int, reason: str) -> None:
        keys = {close_frame(code, reason, masked=True)[2:6] for _ in range(8)}
        assert len(keys) > 1
