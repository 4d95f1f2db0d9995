"""The binary tensor data extension of the Open Inference Protocol (KServe v2, Triton). Ray-free.

A request with the header ``Inference-Header-Content-Length: N`` carries its JSON header in
the body's first ``N`` bytes; the rest is the raw data of the tensors whose ``parameters``
hold a ``binary_data_size``, one after the other in ``inputs`` order. Numbers are
little-endian and row-major; a ``BYTES`` element is a 4-byte little-endian length followed
by that many bytes. An answer uses the same layout for the outputs asked for in binary.

Example:
    >>> raw = encode_tensor("FP32", [1.5, -2.0])
    >>> len(raw), decode_tensor("FP32", raw).tolist()
    (8, [1.5, -2.0])
    >>> decode_tensor("BYTES", encode_tensor("BYTES", ["F", "Mé"])).tolist()
    ['F', 'Mé']
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_MEDIA_TYPE = "application/octet-stream"
TEXT_DATATYPE = "BYTES"
# Every fixed-size datatype of the protocol, as a little-endian numpy dtype. BF16 has none:
# it is the upper half of a float32 and is widened by hand.
FIXED_DATATYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_BF16 = "BF16"
_LENGTH = struct.Struct("<I")


class TensorDataError(ValueError):
    """Binary tensor data that does not fit its datatype (the message says how)."""


def element_size(datatype: str) -> int | None:
    """Bytes per element of a fixed-size datatype; None for ``BYTES`` or an unknown one."""
    if datatype == _BF16:
        return 2
    dtype = FIXED_DATATYPES.get(datatype)
    return None if dtype is None else np.dtype(dtype).itemsize


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes | None]:
    """The JSON header and the binary part of a request body.

    Args:
        body: The whole request body.
        header_length: The ``Inference-Header-Content-Length`` header; None when absent.

    Returns:
        ``(body, None)`` without the header, else the first ``N`` bytes and the rest.

    Raises:
        TensorDataError: the header is not a length within the body.
    """
    if header_length is None:
        return body, None
    text = header_length.strip()
    if not text.isdigit() or int(text) > len(body):
        raise TensorDataError(
            f"{HEADER_LENGTH} is {header_length[:40]!r}; expected a byte count between 0 and "
            f"the body's {len(body)} bytes"
        )
    n = int(text)
    return body[:n], body[n:]


def decode_tensor(datatype: str, raw: bytes) -> np.ndarray:
    """The flat elements of one tensor's binary data.

    Args:
        datatype: The tensor's datatype (``FP64``, ``INT32``, ``BYTES``, ...).
        raw: Its ``binary_data_size`` bytes.

    Returns:
        A numeric array (BF16 widened to float32), or an object array of ``str`` for BYTES.

    Raises:
        TensorDataError: the bytes do not divide into elements, or a BYTES element is
            truncated or not UTF-8.
    """
    if datatype == TEXT_DATATYPE:
        return _decode_bytes(raw)
    size = element_size(datatype)
    if size is None:
        raise TensorDataError(f"datatype {datatype[:40]!r} has no binary layout")
    if len(raw) % size:
        raise TensorDataError(
            f"{len(raw)} bytes is not a whole number of {datatype} elements ({size} bytes each)"
        )
    if datatype == _BF16:
        halves = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
        return halves.view("<f4")
    return np.frombuffer(raw, dtype=FIXED_DATATYPES[datatype])


def encode_tensor(datatype: str, values: Sequence[Any] | np.ndarray) -> bytes:
    """One tensor's elements as binary data in the protocol's layout.

    Args:
        datatype: A fixed-size datatype or ``BYTES``.
        values: The flat elements (numbers; for BYTES, ``str`` or ``bytes``).

    Returns:
        The raw bytes, ``binary_data_size`` long.
    """
    if datatype == TEXT_DATATYPE:
        parts: list[bytes] = []
        for value in values:
            # A label that is not valid UTF-8 text (a lone surrogate) still goes out, escaped.
            data = (
                value
                if isinstance(value, bytes)
                else str(value).encode("utf-8", "backslashreplace")
            )
            parts += [_LENGTH.pack(len(data)), data]
        return b"".join(parts)
    if datatype == _BF16:
        widened = np.asarray(values, dtype="<f4").view("<u4")
        return (widened >> 16).astype("<u2").tobytes()
    return np.asarray(values, dtype=FIXED_DATATYPES[datatype]).tobytes()


def _decode_bytes(raw: bytes) -> np.ndarray:
    values: list[str] = []
    offset = 0
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            raise TensorDataError(
                f"element {len(values)}: {len(raw) - offset} byte(s) left, too few for its "
                "4-byte length"
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise TensorDataError(
                f"element {len(values)} declares {length} bytes; {len(raw) - offset} are left"
            )
        try:
            values.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise TensorDataError(f"element {len(values)} is not UTF-8 text") from None
        offset += length
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
