"""The wire between grader and worker: round trips over a real socket, and hostile frames.

Every hostile frame here is forged byte by byte with struct, the way a compromised worker
would write it; the trusted side must answer each with `wire.WireError` and nothing else.
"""

from __future__ import annotations

import collections
import json
import math
import socket
import struct
import threading

import numpy as np
import pytest
import torch

from autograder.sandbox import wire

RECV_TIMEOUT_S = 5.0


# -- helpers ---------------------------------------------------------------------------------

@pytest.fixture
def pair():
    a, b = socket.socketpair()
    b.settimeout(RECV_TIMEOUT_S)  # a receive that waits for bytes never sent fails, not hangs
    yield a, b
    a.close()
    b.close()


def _send_in_thread(sock: socket.socket, message, blobs) -> threading.Thread:
    thread = threading.Thread(target=wire.send, args=(sock, message, blobs), daemon=True)
    thread.start()
    return thread


def roundtrip(pair, value, to_handle=None, from_handle=None):
    """encode -> send over the socket -> receive -> decode."""
    a, b = pair
    blobs: list[bytes] = []
    message = wire.encode(value, blobs, to_handle)
    thread = _send_in_thread(a, message, blobs)
    received, received_blobs = wire.receive(b)
    thread.join(RECV_TIMEOUT_S)
    assert not thread.is_alive()
    return wire.decode(received, received_blobs, from_handle)


def forge(header, blobs: list[bytes] = (), total: int | None = None, header_len: int | None = None) -> bytes:
    """A frame as raw bytes: 8-byte total, 4-byte header length, header, blobs."""
    if not isinstance(header, bytes):
        header = json.dumps(header).encode()
    body = b"".join(blobs)
    if total is None:
        total = 4 + len(header) + len(body)
    if header_len is None:
        header_len = len(header)
    return struct.pack(">QI", total, header_len) + header + body


def receive_raw(pair, data: bytes, max_bytes: int = wire.MAX_FRAME_BYTES, from_handle=None):
    """Write forged bytes (the writer stays open) and read them back as a value."""
    a, b = pair
    # written from a thread: a frame larger than the socket buffer would block a plain sendall
    writer = threading.Thread(target=_write_quietly, args=(a, data), daemon=True)
    writer.start()
    message, blobs = wire.receive(b, max_bytes)
    return wire.decode(message, blobs, from_handle)


def _write_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:  # the reader gave up and the pair was closed
        pass


def hostile(pair, msg, blobs: list[bytes] = (), **kwargs):
    """A well-framed message whose content is hostile."""
    blobs = list(blobs)
    return receive_raw(pair, forge({"msg": msg, "blobs": [len(b) for b in blobs]}, blobs), **kwargs)


def tensor_msg(dtype="float32", shape=(2, 3), blob=0, numpy=False):
    return {"__t": "tensor", "dtype": dtype, "shape": list(shape), "blob": blob, "numpy": numpy}


def sample(dtype: torch.dtype, shape=(2, 3)) -> torch.Tensor:
    n = math.prod(shape)
    if dtype == torch.bool:
        return (torch.arange(n) % 3 == 0).reshape(shape)
    if dtype.is_complex:
        return torch.complex(torch.arange(n, dtype=torch.float64), -torch.arange(n, dtype=torch.float64) / 2
                             ).to(dtype).reshape(shape)
    if dtype.is_floating_point:
        return (torch.arange(n, dtype=torch.float64) * 0.75 - 2).to(dtype).reshape(shape)
    return (torch.arange(n) - (0 if dtype == torch.uint8 else n // 2)).to(dtype).reshape(shape)


def assert_same_tensor(out, expected: torch.Tensor) -> None:
    assert isinstance(out, torch.Tensor)
    assert out.dtype == expected.dtype
    assert out.shape == expected.shape
    assert torch.equal(out, expected.detach().cpu())


# -- the frame layout --------------------------------------------------------------------------

def test_frame_layout_is_length_header_length_json_then_blobs(pair):
    a, b = pair
    t = torch.tensor([1.0, 2.0], dtype=torch.float32)
    blobs: list[bytes] = []
    message = wire.encode({"x": t}, blobs)
    wire.send(a, message, blobs)
    a.close()
    data = b""
    while chunk := b.recv(65536):
        data += chunk
    total, header_len = struct.unpack(">QI", data[:12])
    assert total == len(data) - 8
    header = json.loads(data[12:12 + header_len])
    assert header["blobs"] == [8]
    assert data[12 + header_len:] == t.numpy().tobytes()


def test_frames_back_to_back_on_one_socket(pair):
    a, b = pair
    for value in ([1, 2], "two", {"three": torch.ones(3)}):
        blobs: list[bytes] = []
        wire.send(a, wire.encode(value, blobs), blobs)
    assert wire.decode(*wire.receive(b)) == [1, 2]
    assert wire.decode(*wire.receive(b)) == "two"
    out = wire.decode(*wire.receive(b))
    assert torch.equal(out["three"], torch.ones(3))


def test_frame_exactly_at_the_limit_is_accepted(pair):
    data = forge({"msg": 7, "blobs": []})
    total = struct.unpack(">Q", data[:8])[0]
    assert receive_raw(pair, data, max_bytes=total) == 7


# -- round trips: plain data ----------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, True, False, 0, -1, 2**63 - 1, -(2**63) + 1, 1.5, -0.0, 1e-300,
                                   "", "hello", "ünïcödé ✓ 漢字", "line\nbreak\x00nul"])
def test_scalars_round_trip(pair, value):
    out = roundtrip(pair, value)
    assert out == value
    assert type(out) is type(value)


def test_negative_zero_keeps_its_sign(pair):
    assert math.copysign(1.0, roundtrip(pair, -0.0)) == -1.0


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinities_round_trip(pair, value):
    out = roundtrip(pair, value)
    assert out == value and isinstance(out, float)


def test_nan_round_trips(pair):
    out = roundtrip(pair, [math.nan, float("nan")])
    assert len(out) == 2 and all(isinstance(v, float) and math.isnan(v) for v in out)


def test_non_finite_floats_do_not_reach_json_as_bare_tokens():
    blobs: list[bytes] = []
    message = wire.encode([math.nan, math.inf, -math.inf], blobs)
    json.dumps(message, allow_nan=False)  # raises if a bare NaN/Infinity would be written


def test_ints_past_64_bits_become_floats(pair):
    out = roundtrip(pair, [2**64, -(2**70)])
    assert out == [float(2**64), float(-(2**70))]
    assert all(isinstance(v, float) for v in out)


def test_numpy_scalars_become_python_scalars(pair):
    out = roundtrip(pair, [np.float32(1.5), np.int64(-3), np.bool_(True)])
    assert out == [1.5, -3, True]
    assert [type(v) for v in out] == [float, int, bool]


def test_lists_and_tuples_keep_their_kind(pair):
    value = [1, (2, 3), [4, (5, [6])], (), []]
    out = roundtrip(pair, value)
    assert out == value
    assert type(out[1]) is tuple and type(out[2]) is list and type(out[2][1]) is tuple
    assert type(out[2][1][1]) is list and out[3] == () and type(out[3]) is tuple


def test_dicts_with_str_int_tuple_and_other_keys(pair):
    value = {"a": 1, 2: "two", (3, "x"): [3], (1, (2, 3)): None, None: 0, True: "t", 1.5: "f",
             "nested": {"inner": {5: (6, 7)}}}
    out = roundtrip(pair, value)
    assert out == value
    assert list(out) == list(value)  # order kept
    assert isinstance(next(k for k in out if isinstance(k, tuple) and k[0] == 1)[1], tuple)


def test_nested_mixture_with_tensors_inside(pair):
    t = torch.randn(2, 2)
    value = {"layers": [{"w": t, "shape": (2, 2)}, {"w": None, "name": "x"}], 7: (t, math.inf)}
    out = roundtrip(pair, value)
    assert torch.equal(out["layers"][0]["w"], t)
    assert out["layers"][0]["shape"] == (2, 2)
    assert out["layers"][1] == {"w": None, "name": "x"}
    assert torch.equal(out[7][0], t) and out[7][1] == math.inf


def test_nesting_up_to_max_depth_round_trips(pair):
    value: list = [0]
    for _ in range(wire.MAX_DEPTH - 1):
        value = [value]
    out = roundtrip(pair, value)
    assert out == value


def test_namedtuples_come_back_as_tuples(pair):
    Point = collections.namedtuple("Point", "x y")
    out = roundtrip(pair, [Point(1, 2.5), {"p": Point(torch.zeros(1), "s")}])
    assert type(out[0]) is tuple and out[0] == (1, 2.5)
    assert type(out[1]["p"]) is tuple and torch.equal(out[1]["p"][0], torch.zeros(1))


# -- round trips: tensors and arrays --------------------------------------------------------------

def test_dtype_table_is_what_these_tests_cover():
    assert set(wire.DTYPES.values()) >= {torch.bfloat16, torch.float16, torch.float32, torch.float64,
                                         torch.complex64, torch.complex128, torch.bool, torch.uint8,
                                         torch.int8, torch.int16, torch.int32, torch.int64}


@pytest.mark.parametrize("name", list(wire.DTYPES))
def test_tensor_of_every_dtype_round_trips(pair, name):
    t = sample(wire.DTYPES[name], (2, 3))
    out = roundtrip(pair, t)
    assert_same_tensor(out, t)


def test_bfloat16_keeps_its_bits(pair):
    t = torch.tensor([1.0, -2.5, 3.140625, 1e30, -0.0, float("inf")], dtype=torch.bfloat16)
    out = roundtrip(pair, t)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out.view(torch.int16), t.view(torch.int16))


@pytest.mark.parametrize("name", list(wire.DTYPES))
@pytest.mark.parametrize("shape", [(0,), (2, 0, 3), (0, 0)])
def test_empty_tensors_round_trip(pair, name, shape):
    t = torch.empty(shape, dtype=wire.DTYPES[name])
    out = roundtrip(pair, t)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == t.dtype and out.shape == t.shape


@pytest.mark.parametrize("name", list(wire.DTYPES))
def test_zero_dim_tensors_round_trip(pair, name):
    t = sample(wire.DTYPES[name], (1,)).reshape(())
    out = roundtrip(pair, t)
    assert out.dim() == 0
    assert_same_tensor(out, t)


def test_non_contiguous_tensors_round_trip(pair):
    base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    views = [base.transpose(0, 2), base[:, ::2, 1:], base[..., 0], torch.ones(3, 1).expand(3, 5),
             base.to(torch.bfloat16).permute(2, 0, 1), torch.randn(4, 4, dtype=torch.complex64).t()]
    assert not any(v.is_contiguous() for v in views)
    out = roundtrip(pair, views)
    for o, v in zip(out, views, strict=True):
        assert_same_tensor(o, v)


def test_tensor_requiring_grad_arrives_as_plain_data(pair):
    t = torch.randn(3, requires_grad=True)
    out = roundtrip(pair, t * 2)
    assert not out.requires_grad
    assert torch.equal(out, (t * 2).detach())


def test_received_tensor_is_writable_and_owns_its_memory(pair):
    out = roundtrip(pair, [torch.zeros(3), torch.zeros(3)])
    out[0].add_(1)
    assert torch.equal(out[0], torch.ones(3)) and torch.equal(out[1], torch.zeros(3))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
                                   np.uint8, np.bool_, np.complex64, np.complex128])
def test_numpy_arrays_come_back_as_numpy(pair, dtype):
    arr = (np.arange(6).reshape(2, 3) % 2).astype(dtype)
    out = roundtrip(pair, arr)
    assert isinstance(out, np.ndarray)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable


def test_non_contiguous_and_empty_numpy_arrays(pair):
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    values = [base[:, ::-1, ::2], np.asfortranarray(base), base.T, np.zeros((0, 5), dtype=np.int32)]
    out = roundtrip(pair, values)
    for o, v in zip(out, values, strict=True):
        assert isinstance(o, np.ndarray)
        assert o.dtype == v.dtype and o.shape == v.shape
        np.testing.assert_array_equal(o, v)


def test_zero_dim_numpy_array_keeps_its_shape(pair):
    out = roundtrip(pair, np.array(3.5))
    assert isinstance(out, np.ndarray)
    assert out.shape == ()


def test_numpy_and_torch_in_one_message(pair):
    out = roundtrip(pair, (np.ones(2), torch.ones(2)))
    assert isinstance(out[0], np.ndarray) and isinstance(out[1], torch.Tensor)


@pytest.mark.parametrize("dtype", list(wire.DTYPES.values()))
def test_torch_dtypes_round_trip(pair, dtype):
    out = roundtrip(pair, dtype)
    assert out is dtype


@pytest.mark.parametrize("device", [torch.device("cpu"), torch.device("cuda", 1), torch.device("meta")])
def test_torch_devices_round_trip(pair, device):
    out = roundtrip(pair, device)
    assert isinstance(out, torch.device) and out == device


def test_unsupported_tensor_dtype_is_refused_on_encode():
    with pytest.raises(wire.WireError, match="dtype"):
        wire.encode(torch.zeros(2, dtype=torch.float8_e4m3fn), [])


# -- handles -----------------------------------------------------------------------------------

class _Registry:
    def __init__(self):
        self.objects: dict[int, object] = {}
        self.calls = 0

    def to_handle(self, obj) -> dict:
        self.calls += 1
        handle_id = len(self.objects) + 1
        self.objects[handle_id] = obj
        return {"__t": "handle", "id": handle_id, "type": type(obj).__name__}

    def from_handle(self, obj: dict):
        assert obj["__t"] in ("handle", "ref")
        return self.objects[obj["id"]]


def test_objects_cross_as_handles(pair):
    class Thing:
        pass

    registry = _Registry()
    thing, fn = Thing(), (lambda x: x)
    module = torch.nn.Linear(2, 2)
    out = roundtrip(pair, {"thing": thing, "items": [fn, 3, (module,)]}, registry.to_handle, registry.from_handle)
    assert out["thing"] is thing
    assert out["items"][0] is fn and out["items"][1] == 3 and out["items"][2][0] is module
    assert registry.calls == 3


def test_list_subclasses_are_objects_not_data(pair):
    class Layers(list):
        pass

    registry = _Registry()
    layers = Layers([1, 2])
    out = roundtrip(pair, [layers, [1, 2]], registry.to_handle, registry.from_handle)
    assert out[0] is layers
    assert out[1] == [1, 2] and registry.calls == 1


def test_ref_tag_goes_to_from_handle(pair):
    seen = []
    out = hostile(pair, [{"__t": "ref", "id": 0}], from_handle=lambda obj: seen.append(obj) or "resolved")
    assert out == ["resolved"] and seen == [{"__t": "ref", "id": 0}]


def test_non_data_without_to_handle_is_refused():
    with pytest.raises(wire.WireError, match="object"):
        wire.encode([object()], [])


def test_handle_without_from_handle_is_refused(pair):
    with pytest.raises(wire.WireError):
        hostile(pair, {"__t": "handle", "id": 1})


def test_too_deep_value_is_refused_on_encode():
    value: list = []
    for _ in range(wire.MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(wire.WireError, match="deep"):
        wire.encode(value, [])


# -- hostile frames: content -------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 23, 25, 48])
def test_tensor_blob_of_the_wrong_size(pair, size):
    with pytest.raises(wire.WireError):
        hostile(pair, tensor_msg("float32", (2, 3)), [b"\0" * size])


def test_bfloat16_blob_of_float32_size(pair):
    with pytest.raises(wire.WireError):
        hostile(pair, tensor_msg("bfloat16", (3,)), [b"\0" * 12])


def test_empty_tensor_with_bytes(pair):
    with pytest.raises(wire.WireError):
        hostile(pair, tensor_msg("float32", (0, 3)), [b"\0" * 4])


def test_huge_shape_with_tiny_blob(pair):
    with pytest.raises(wire.WireError):
        hostile(pair, tensor_msg("float32", (2**62, 2**62)), [b"\0" * 4])


@pytest.mark.parametrize("dtype", ["float8", "torch.float32", "object", "", None, 5, 1.5, True])
def test_tensor_of_unknown_dtype(pair, dtype):
    with pytest.raises(wire.WireError):
        hostile(pair, tensor_msg(dtype, (1,)), [b"\0" * 4])


@pytest.mark.parametrize("dtype", [["float32"], {"a": 1}])
def test_tensor_dtype_that_is_not_hashable(pair, dtype):
    with pytest.raises(wire.WireError):
        hostile(pair, tensor_msg(dtype, (1,)), [b"\0" * 4])


# each blob has the size the shape would need if its entries were taken at face value,
# so only the check on the entries themselves can refuse it
@pytest.mark.parametrize("shape, nbytes", [
    ([-1], 0), ([-2, -3], 24), ([True, 6], 24), ([6, True], 24), ([False, 2], 0), ([2.0, 3], 24), (["6"], 24),
    ([None], 24), ([[6]], 24), ("23", 24), (6, 24), (None, 24), ({"0": 6}, 24),
])
def test_tensor_with_bad_shape(pair, shape, nbytes):
    msg = {"__t": "tensor", "dtype": "float32", "shape": shape, "blob": 0}
    with pytest.raises(wire.WireError):
        hostile(pair, msg, [b"\0" * nbytes])


def test_empty_tensor_with_overflowing_dimension(pair):
    with pytest.raises(wire.WireError):
        hostile(pair, tensor_msg("float32", (0, 2**70)), [b""])


@pytest.mark.parametrize("blob", [1, 5, -1, "0", None, 0.0])
def test_tensor_blob_index_out_of_range(pair, blob):
    with pytest.raises(wire.WireError):
        hostile(pair, tensor_msg("float32", (1,), blob=blob), [b"\0" * 4])


def test_tensor_blob_index_with_no_blobs(pair):
    with pytest.raises(wire.WireError):
        hostile(pair, tensor_msg("float32", (0,), blob=0))


@pytest.mark.parametrize("msg", [{"__t": "pickle", "data": "gASV"}, {"__t": "__reduce__"}, {"__t": ""},
                                 {"__t": None}, {"__t": ["tuple"]}, {"no_tag": 1}, {}])
def test_unknown_or_missing_tag(pair, msg):
    with pytest.raises(wire.WireError):
        hostile(pair, [1, msg])


@pytest.mark.parametrize("text", ["1e5", "NaN", "nan ", "__import__('os')", None, 3])
def test_malformed_float(pair, text):
    with pytest.raises(wire.WireError):
        hostile(pair, {"__t": "float", "repr": text})


@pytest.mark.parametrize("name", ["float8", "torch.float32", None, 3])
def test_unknown_dtype_value(pair, name):
    with pytest.raises(wire.WireError):
        hostile(pair, {"__t": "dtype", "name": name})


def test_dtype_value_that_is_not_hashable(pair):
    with pytest.raises(wire.WireError):
        hostile(pair, {"__t": "dtype", "name": ["float32"]})


@pytest.mark.parametrize("name", ["gpu:7", "cuda:-5", "", 5, None])
def test_odd_device_names_do_not_escape_as_other_errors(pair, name):
    out = hostile(pair, {"__t": "device", "name": name})
    assert isinstance(out, torch.device)


@pytest.mark.parametrize("tag", ["tuple", "dict"])
@pytest.mark.parametrize("items", [None, "ab", 5, {"a": 1}])
def test_malformed_items_list(pair, tag, items):
    with pytest.raises(wire.WireError):
        hostile(pair, {"__t": tag, "items": items})


@pytest.mark.parametrize("item", [[1], [1, 2, 3], [], "ab", {"k": 1, "v": 2}, None, 7])
def test_malformed_dict_items(pair, item):
    with pytest.raises(wire.WireError):
        hostile(pair, {"__t": "dict", "items": [["ok", 1], item]})


@pytest.mark.parametrize("key", [[1, 2], {"__t": "dict", "items": []}, tensor_msg("float32", (1,))])
def test_non_hashable_dict_keys(pair, key):
    with pytest.raises(wire.WireError):
        hostile(pair, {"__t": "dict", "items": [[key, 1]]}, [b"\0" * 4])


@pytest.mark.parametrize("inner", [[1, 2], {"__t": "dict", "items": []}])
def test_tuple_dict_key_holding_an_unhashable_value(pair, inner):
    with pytest.raises(wire.WireError):
        hostile(pair, {"__t": "dict", "items": [[{"__t": "tuple", "items": [inner]}, 1]]})


@pytest.mark.parametrize("wrap", ["list", "tuple", "dict"])
def test_nesting_deeper_than_max_depth(pair, wrap):
    msg: object = 0
    for _ in range(wire.MAX_DEPTH + 5):
        if wrap == "list":
            msg = [msg]
        elif wrap == "tuple":
            msg = {"__t": "tuple", "items": [msg]}
        else:
            msg = {"__t": "dict", "items": [["k", msg]]}
    with pytest.raises(wire.WireError):
        hostile(pair, msg)


def test_json_nesting_too_deep_for_the_parser(pair):
    depth = 200_000
    header = b'{"blobs": [], "msg": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(wire.WireError):
        receive_raw(pair, forge(header))


def test_json_integer_with_too_many_digits(pair):
    header = b'{"blobs": [], "msg": ' + b"7" * 5000 + b"}"
    with pytest.raises(wire.WireError):
        receive_raw(pair, forge(header))


# -- hostile frames: framing -----------------------------------------------------------------

@pytest.mark.parametrize("header", [b"not json", b"{\"msg\": 1, \"blobs\": [", b"\xff\xfe\xfd", b"", b"\x00" * 8])
def test_header_that_is_not_json(pair, header):
    with pytest.raises(wire.WireError):
        receive_raw(pair, forge(header))


@pytest.mark.parametrize("header", [[1, 2], "text", 5, None, {"msg": 1}, {"msg": 1, "blobs": None},
                                    {"msg": 1, "blobs": [-1]}, {"msg": 1, "blobs": ["4"]},
                                    {"msg": 1, "blobs": [1.0]}, {"msg": 1, "blobs": {"0": 4}}])
def test_header_that_is_json_but_not_a_header(pair, header):
    with pytest.raises(wire.WireError):
        receive_raw(pair, forge(header))


def test_frame_over_the_limit_is_refused_before_reading_it(pair):
    # claims a frame far larger than max_bytes and sends none of it: an implementation that tried
    # to read it would wait for bytes that never come (and fail with the socket timeout instead)
    data = struct.pack(">QI", 10_000_000, 10)
    with pytest.raises(wire.WireError, match="limit"):
        receive_raw(pair, data, max_bytes=1000)


def test_frame_one_byte_over_a_small_limit(pair):
    data = forge({"msg": "x" * 50, "blobs": []})
    total = struct.unpack(">Q", data[:8])[0]
    with pytest.raises(wire.WireError):
        receive_raw(pair, data, max_bytes=total - 1)


def test_frame_over_the_default_limit(pair):
    with pytest.raises(wire.WireError):
        receive_raw(pair, struct.pack(">QI", wire.MAX_FRAME_BYTES + 1, 10))


def test_header_over_its_limit(pair):
    with pytest.raises(wire.WireError):
        receive_raw(pair, struct.pack(">QI", wire.MAX_HEADER_BYTES + 100, wire.MAX_HEADER_BYTES + 1))


@pytest.mark.parametrize("total", [0, 3, 4, 5])
def test_header_longer_than_the_frame(pair, total):
    with pytest.raises(wire.WireError):
        receive_raw(pair, struct.pack(">QI", total, 6) + b"{}    ")


def test_blob_sizes_larger_than_the_frame(pair):
    header = json.dumps({"msg": None, "blobs": [10]}).encode()
    with pytest.raises(wire.WireError, match="add up"):
        receive_raw(pair, forge(header, [b"\0" * 5], total=4 + len(header) + 5))


def test_blob_sizes_smaller_than_the_frame(pair):
    header = json.dumps({"msg": None, "blobs": [2, 2]}).encode()
    with pytest.raises(wire.WireError, match="add up"):
        receive_raw(pair, forge(header, [b"\0" * 10]))


# -- end of stream ---------------------------------------------------------------------------------

def test_clean_close_is_eof(pair):
    a, b = pair
    a.close()
    with pytest.raises(EOFError):
        wire.receive(b)


@pytest.mark.parametrize("cut", [1, 11, 12, 20])
def test_eof_mid_frame(pair, cut):
    a, b = pair
    blobs: list[bytes] = []
    message = wire.encode({"t": torch.arange(10.0)}, blobs)
    # one full frame into a buffer, via a second socket pair
    x, y = socket.socketpair()
    wire.send(x, message, blobs)
    x.close()
    data = b""
    while chunk := y.recv(65536):
        data += chunk
    y.close()
    assert len(data) > cut
    a.sendall(data[:cut])
    a.close()
    with pytest.raises(EOFError):
        wire.receive(b)


def test_eof_mid_blob(pair):
    a, b = pair
    header = json.dumps({"msg": None, "blobs": [100]}).encode()
    a.sendall(forge(header, [b"\0" * 100])[:-40])
    a.close()
    with pytest.raises(EOFError):
        wire.receive(b)
