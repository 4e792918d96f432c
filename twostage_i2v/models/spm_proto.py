"""Read and write sentencepiece's ModelProto without the protobuf package.

GGUF text encoders carry their tokenizer as lists (pieces, scores, types)
plus a few flags; ComfyUI's tokenizer wants the serialized sentencepiece
model. sentencepiece's Python API loads a proto but cannot build one, and no
protobuf runtime is installed, so this module speaks the protobuf wire format
for the handful of fields a unigram tokenizer needs (field numbers from
sentencepiece's ``sentencepiece_model.proto``):

* ModelProto: pieces = 1 (repeated SentencePiece), trainer_spec = 2,
  normalizer_spec = 3.
* SentencePiece: piece = 1 (string), score = 2 (float), type = 3 (enum).
* TrainerSpec: model_type = 3, byte_fallback = 35, unk_id = 40, bos_id = 41, eos_id = 42,
  pad_id = 43, unk_piece = 45, bos_piece = 46, eos_piece = 47, pad_piece = 48.
* NormalizerSpec: name = 1, precompiled_charsmap = 2, add_dummy_prefix = 3,
  remove_extra_whitespaces = 4, escape_whitespaces = 5.

Other fields are skipped when reading and not written.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# SentencePiece.Type (the same numbers GGUF's tokenizer.ggml.token_type uses)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.ModelType
UNIGRAM, BPE, WORD, CHAR = 1, 2, 3, 4

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class SpmProtoError(ValueError):
    """The bytes are not a sentencepiece model this module can read."""


@dataclass
class SpmPiece:
    piece: str
    score: float = 0.0
    type: int = NORMAL


@dataclass
class SpmModel:
    pieces: list[SpmPiece] = field(default_factory=list)
    model_type: int = UNIGRAM
    # Unknown characters become <0xNN> byte pieces; sentencepiece refuses a
    # model that has byte pieces without this flag.
    byte_fallback: bool = False
    # Ids as the trainer recorded them (-1: none). sentencepiece itself finds
    # unk by piece type and bos/eos/pad by the *_piece strings below.
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"
    normalizer_name: str = "nmt_nfkc"
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


# ---------------------------------------------------------------- wire format


def _varint(value: int) -> bytes:
    if value < 0:  # int32/int64 negatives are sign-extended to 64 bits
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, _LEN) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + _varint(int(value))


def _float_field(number: int, value: float) -> bytes:
    return _key(number, _I32) + struct.pack("<f", value)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise SpmProtoError("sentencepiece model ends inside a number: the data is truncated")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise SpmProtoError("sentencepiece model holds a malformed number")


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    if value >= 1 << 63:
        value -= 1 << 64
    return value


def _fields(data: bytes):
    """Yield (field number, wire type, value) over one message's bytes."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == _LEN:
            size, pos = _read_varint(data, pos)
            if pos + size > end:
                raise SpmProtoError("sentencepiece model ends inside a field: the data is truncated")
            value, pos = data[pos : pos + size], pos + size
        elif wire == _I32:
            value, pos = data[pos : pos + 4], pos + 4
        elif wire == _I64:
            value, pos = data[pos : pos + 8], pos + 8
        else:
            raise SpmProtoError(f"sentencepiece model uses protobuf wire type {wire}, which it never writes: not a model file")
        if pos > end:
            raise SpmProtoError("sentencepiece model ends inside a field: the data is truncated")
        yield number, wire, value


# ------------------------------------------------------------------ messages


def _decode_piece(data: bytes) -> SpmPiece:
    p = SpmPiece("")
    for number, wire, value in _fields(data):
        if number == 1 and wire == _LEN:
            p.piece = bytes(value).decode("utf-8")
        elif number == 2 and wire == _I32:
            p.score = struct.unpack("<f", value)[0]
        elif number == 3 and wire == _VARINT:
            p.type = value
    return p


def _decode_trainer(data: bytes, m: SpmModel) -> None:
    ints = {3: "model_type", 40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}
    strings = {45: "unk_piece", 46: "bos_piece", 47: "eos_piece", 48: "pad_piece"}
    for number, wire, value in _fields(data):
        if number in ints and wire == _VARINT:
            setattr(m, ints[number], _signed32(value))
        elif number == 35 and wire == _VARINT:
            m.byte_fallback = bool(value)
        elif number in strings and wire == _LEN:
            setattr(m, strings[number], bytes(value).decode("utf-8"))


def _decode_normalizer(data: bytes, m: SpmModel) -> None:
    flags = {3: "add_dummy_prefix", 4: "remove_extra_whitespaces", 5: "escape_whitespaces"}
    for number, wire, value in _fields(data):
        if number == 1 and wire == _LEN:
            m.normalizer_name = bytes(value).decode("utf-8")
        elif number == 2 and wire == _LEN:
            m.precompiled_charsmap = bytes(value)
        elif number in flags and wire == _VARINT:
            setattr(m, flags[number], bool(value))


def decode_model_proto(data: bytes) -> SpmModel:
    """The pieces, special ids and normalizer of a serialized sentencepiece model."""
    data = bytes(data)
    m = SpmModel()
    try:
        for number, wire, value in _fields(data):
            if wire != _LEN:
                continue
            if number == 1:
                m.pieces.append(_decode_piece(value))
            elif number == 2:
                _decode_trainer(value, m)
            elif number == 3:
                _decode_normalizer(value, m)
    except UnicodeDecodeError:
        raise SpmProtoError("sentencepiece model holds a piece that is not UTF-8: not a model file") from None
    if not m.pieces:
        raise SpmProtoError("the data holds no sentencepiece pieces: not a sentencepiece model")
    return m


def encode_model_proto(m: SpmModel) -> bytes:
    """Serialize ``m`` as a ModelProto that sentencepiece loads."""
    out = bytearray()
    for p in m.pieces:
        body = _len_field(1, p.piece.encode("utf-8")) + _float_field(2, p.score)
        if p.type != NORMAL:  # the proto default; sentencepiece writes it only when it differs
            body += _int_field(3, p.type)
        out += _len_field(1, body)

    trainer = bytearray(_int_field(3, m.model_type))
    if m.byte_fallback:
        trainer += _int_field(35, 1)
    for number, value in ((40, m.unk_id), (41, m.bos_id), (42, m.eos_id), (43, m.pad_id)):
        trainer += _int_field(number, value)
    for number, value in ((45, m.unk_piece), (46, m.bos_piece), (47, m.eos_piece), (48, m.pad_piece)):
        trainer += _len_field(number, value.encode("utf-8"))
    out += _len_field(2, bytes(trainer))

    normalizer = bytearray(_len_field(1, m.normalizer_name.encode("utf-8")))
    if m.precompiled_charsmap:
        normalizer += _len_field(2, m.precompiled_charsmap)
    normalizer += _int_field(3, m.add_dummy_prefix)
    normalizer += _int_field(4, m.remove_extra_whitespaces)
    normalizer += _int_field(5, m.escape_whitespaces)
    out += _len_field(3, bytes(normalizer))
    return bytes(out)
