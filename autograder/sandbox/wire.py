"""The wire between the trusted grader and the untrusted worker.

Only data crosses it: JSON for structure and raw bytes for tensors. Nothing is ever
unpickled, so a hostile worker can at worst send wrong numbers, which the tests then
mark wrong. Objects that are not data (a module instance, a function) stay where they
live and cross as handles: small integers the owner resolves.

A frame is an 8-byte length, a 4-byte header length, the JSON header, then the blobs.
"""

from __future__ import annotations

import json
import math
import socket
import struct
from typing import Any, Callable, Protocol

import numpy as np
import torch

MAX_FRAME_BYTES = 4 << 30
MAX_HEADER_BYTES = 64 << 20
MAX_DEPTH = 64
MAX_ITEMS = 1_000_000

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class WireError(Exception):
    """The other side sent something that is not a valid message."""


class FrameTooLarge(WireError):
    """A frame over the receiver's limit, refused before it is read."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"frame of {size} bytes is over the limit of {limit}")
        self.size, self.limit = size, limit


def encode(value: Any, blobs: list[bytes], to_handle: Callable[[Any], dict] | None = None,
           depth: int = 0) -> Any:
    """Turn a value into JSON-able structure, appending tensor bytes to `blobs`.

    `to_handle` is called for anything that is not data; without it such values are an error.
    """
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply to send")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__t": "float", "repr": repr(value)}
    if isinstance(value, torch.Tensor):
        return _encode_tensor(value, blobs, numpy=False)
    if isinstance(value, np.ndarray):
        return _encode_tensor(torch.from_numpy(np.array(value, order="C", copy=True)), blobs, numpy=True)
    if isinstance(value, np.generic):
        return encode(value.item(), blobs, to_handle, depth + 1)
    if isinstance(value, torch.dtype):
        return {"__t": "dtype", "name": DTYPE_NAMES.get(value, str(value))}
    if isinstance(value, torch.device):
        return {"__t": "device", "name": str(value)}
    if isinstance(value, (list, tuple)) and not _is_handle_worthy(value):
        items = [encode(v, blobs, to_handle, depth + 1) for v in value]
        return items if isinstance(value, list) else {"__t": "tuple", "items": items}
    if isinstance(value, dict):
        return {"__t": "dict", "items": [[encode(k, blobs, to_handle, depth + 1),
                                          encode(v, blobs, to_handle, depth + 1)]
                                         for k, v in value.items()]}
    if to_handle is None:
        raise WireError(f"cannot send a {type(value).__name__}")
    return to_handle(value)


def _is_handle_worthy(value: Any) -> bool:
    """nn.Sequential-like containers are objects, not data; plain lists and tuples are data."""
    return type(value) not in (list, tuple) and not _is_namedtuple(value)


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def _encode_tensor(t: torch.Tensor, blobs: list[bytes], numpy: bool) -> dict:
    t = t.detach()
    if t.is_sparse or t.layout != torch.strided:
        t = t.to_dense()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    name = DTYPE_NAMES.get(t.dtype)
    if name is None:
        raise WireError(f"cannot send a tensor of dtype {t.dtype}")
    raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
    blobs.append(raw.numpy().tobytes() if t.numel() else b"")
    return {"__t": "tensor", "blob": len(blobs) - 1, "dtype": name, "shape": list(t.shape),
            "numpy": numpy}


def decode(obj: Any, blobs: list[bytes], from_handle: Callable[[dict], Any] | None = None) -> Any:
    """Rebuild a value from `encode`'s output, checking every field of it.

    Whatever a hostile sender puts in the message, the only exception is `WireError`.
    """
    try:
        return _decode(obj, blobs, from_handle, 0)
    except (TypeError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        raise WireError(f"malformed message ({type(exc).__name__}: {str(exc)[:200]})") from None


def _decode(obj: Any, blobs: list[bytes], from_handle: Callable[[dict], Any] | None, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("message nested too deeply")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        if len(obj) > MAX_ITEMS:
            raise WireError("list too long")
        return [_decode(v, blobs, from_handle, depth + 1) for v in obj]
    if not isinstance(obj, dict) or "__t" not in obj:
        raise WireError("malformed value")
    tag = obj["__t"]
    if tag == "tuple":
        return tuple(_decode(v, blobs, from_handle, depth + 1) for v in _list(obj, "items"))
    if tag == "dict":
        out = {}
        for pair in _list(obj, "items"):
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("malformed dict item")
            key = _decode(pair[0], blobs, from_handle, depth + 1)
            if not isinstance(key, (str, int, float, bool, tuple, type(None))):
                raise WireError("dict keys must be plain values")
            try:
                hash(key)
            except TypeError:
                raise WireError("unhashable dict key") from None
            out[key] = _decode(pair[1], blobs, from_handle, depth + 1)
        return out
    if tag == "tensor":
        return _decode_tensor(obj, blobs)
    if tag == "float":
        text = obj.get("repr")
        if text not in ("nan", "inf", "-inf"):
            raise WireError("malformed float")
        return float(text)
    if tag == "dtype":
        name = obj.get("name")
        if not isinstance(name, str) or name not in DTYPES:
            raise WireError(f"unknown dtype {name!r}")
        return DTYPES[name]
    if tag == "device":
        return torch.device("cpu") if not isinstance(obj.get("name"), str) else _device(obj["name"])
    if tag in ("handle", "ref"):
        if from_handle is None:
            raise WireError("unexpected object handle")
        return from_handle(obj)
    raise WireError(f"unknown tag {tag!r}")


def _device(name: str) -> torch.device:
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        return torch.device("cpu")


def _list(obj: dict, key: str) -> list:
    value = obj.get(key)
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise WireError(f"malformed {key}")
    return value


def _decode_tensor(obj: dict, blobs: list[bytes]) -> torch.Tensor | np.ndarray:
    name = obj.get("dtype")
    dtype = DTYPES.get(name) if isinstance(name, str) else None
    shape = obj.get("shape")
    index = obj.get("blob")
    if dtype is None or not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**48 for s in shape):
        raise WireError("malformed tensor")
    if not isinstance(index, int) or not 0 <= index < len(blobs):
        raise WireError("tensor refers to a missing blob")
    numel = math.prod(shape)
    item = torch.empty((), dtype=dtype).element_size()
    raw = blobs[index]
    if len(raw) != numel * item:
        raise WireError(f"tensor of shape {shape} and dtype {obj['dtype']} has {len(raw)} bytes")
    storage_dtype = torch.int16 if dtype == torch.bfloat16 else dtype
    t = torch.frombuffer(bytearray(raw), dtype=storage_dtype) if numel else torch.empty(0, dtype=storage_dtype)
    t = t.reshape(shape)
    if dtype == torch.bfloat16:
        t = t.view(torch.bfloat16)
    return t.numpy() if obj.get("numpy") and dtype != torch.bfloat16 else t


class Readable(Protocol):
    """What `receive` reads from: a socket, or a wrapper that adds a deadline."""

    def recv_into(self, buffer: memoryview, nbytes: int) -> int: ...


def send(sock: socket.socket, message: Any, blobs: list[bytes]) -> None:
    header = json.dumps({"msg": message, "blobs": [len(b) for b in blobs]}).encode()
    total = 4 + len(header) + sum(len(b) for b in blobs)
    sock.sendall(struct.pack(">QI", total, len(header)) + header)
    for blob in blobs:
        if blob:
            sock.sendall(blob)


def receive(sock: Readable, max_bytes: int = MAX_FRAME_BYTES) -> tuple[Any, list[bytes]]:
    """Read one frame; raises EOFError when the other side closed the connection."""
    total, header_len = struct.unpack(">QI", _read_exact(sock, 12))
    if total > max_bytes:
        raise FrameTooLarge(total, max_bytes)
    if header_len > MAX_HEADER_BYTES or header_len + 4 > total:
        raise WireError(f"malformed frame (a header of {header_len} bytes in a frame of {total})")
    try:
        header = json.loads(_read_exact(sock, header_len))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, absurd numbers, deep nesting
        raise WireError(f"header is not usable JSON: {str(exc)[:200]}") from None
    sizes = header.get("blobs") if isinstance(header, dict) else None
    if not isinstance(sizes, list) or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise WireError("malformed header")
    if 4 + header_len + sum(sizes) != total:
        raise WireError("blob sizes do not add up to the frame length")
    blobs = [_read_exact(sock, s) for s in sizes]
    return header.get("msg"), blobs


def _read_exact(sock: Readable, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError("connection closed")
        got += k
    return bytes(buf)
