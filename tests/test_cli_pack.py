"""``intquant quantize --pack``: codes packed to the quantizer's bits in ``.npz`` and
``.safetensors`` files that record the layout, read back by ``dequantize`` without a flag; the
refusals, and tampered records."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy
import pytest

import intquant
from intquant import QuantizedArray, loads
from intquant.cli.files import PACKED_RECORD, open_archive, parse_input
from intquant.packing import LAYOUT, pack_codes, packed_size, unpack_codes
from tests.test_cli import fails, ok

FORMATS = [".npz", ".safetensors"]


def _weights() -> dict[str, numpy.ndarray]:
    rng = numpy.random.default_rng(14)
    return {
        "layer.0.weight": rng.normal(size=(7, 5)).astype(numpy.float32),  # 35 codes: odd counts
        "layer.0.bias": rng.normal(size=(7,)).astype(numpy.float32),
        "layer.1.weight": rng.normal(size=(3, 7)).astype(numpy.float64),
        "steps": numpy.arange(3, dtype=numpy.int64),
    }


def _safetensors_numpy() -> Any:
    return pytest.importorskip(
        "safetensors.numpy", reason="SAFETENSORS IS NOT INSTALLED: packed .safetensors files are NOT tested"
    )


def _save(path: Path, arrays: dict[str, numpy.ndarray]) -> None:
    if path.suffix == ".npz":
        numpy.savez(path, **arrays)
    else:
        _safetensors_numpy().save_file(arrays, str(path))


def _stored(path: Path) -> tuple[dict[str, numpy.ndarray], Any]:
    """The arrays as stored (packed bytes, not unpacked) and the packing record, read without
    intquant."""
    if path.suffix == ".npz":
        with numpy.load(path) as archive:
            arrays = {name: archive[name] for name in archive.files}
        record = arrays.pop(PACKED_RECORD, None)
        return arrays, None if record is None else json.loads(str(record))
    safetensors = pytest.importorskip("safetensors")
    with safetensors.safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    return arrays, json.loads(metadata[PACKED_RECORD]) if PACKED_RECORD in metadata else None


def _read(path: Path) -> dict[str, numpy.ndarray]:
    """The arrays as intquant's command line reads them (packed ones unpacked)."""
    with open_archive(parse_input(str(path))) as archive:
        return {name: archive.read(name) for name in archive.names}


def _assert_same_arrays(left: dict[str, numpy.ndarray], right: dict[str, numpy.ndarray]) -> None:
    assert list(left) == list(right)
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        assert left[name].shape == right[name].shape, name
        numpy.testing.assert_array_equal(left[name], right[name], err_msg=name)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize(
    ("flags", "n_bits", "signed", "dtype"),
    [
        (("--n-bits", "4", "--signed"), 4, True, numpy.int8),
        (("--n-bits", "3"), 3, False, numpy.int8),  # the smallest dtype of [0, 7] is int8
        (("--n-bits", "1"), 1, False, numpy.int8),
        (("--n-bits", "7", "--symmetric", "--narrow", "--axis", "0"), 7, True, numpy.int8),
        (("--n-bits", "8"), 8, False, numpy.uint8),
        (("--n-bits", "5", "--signed", "--block-size", "1,7"), 5, True, numpy.int8),
    ],
)
def test_packed_checkpoint_dequantizes_as_the_unpacked_one(
    tmp_path: Path, suffix: str, flags: tuple[str, ...], n_bits: int, signed: bool, dtype: Any
) -> None:
    arrays = _weights()
    if "--block-size" in flags:
        arrays = {"layer.1.weight": arrays["layer.1.weight"], "steps": arrays["steps"]}
    _save(tmp_path / f"model{suffix}", arrays)
    ok("calibrate", f"model{suffix}", "-o", "q.json", *flags, "--exclude", "steps", cwd=tmp_path)
    quantizers = loads((tmp_path / "q.json").read_text())
    ok("quantize", f"model{suffix}", "q.json", "-o", f"codes{suffix}", cwd=tmp_path)
    output = ok("quantize", f"model{suffix}", "q.json", "-o", f"packed{suffix}", "--pack", cwd=tmp_path)
    assert f"packed to {n_bits} bits per code" in output
    assert "copied 1 arrays without a quantizer unchanged: steps" in output

    # On disk: each quantized array as its packed bytes, the others as they were, and the record.
    stored, record = _stored(tmp_path / f"packed{suffix}")
    codes, no_record = _stored(tmp_path / f"codes{suffix}")
    assert no_record is None
    # Signed when the quantizer's codes go below 0 (a per-axis quantizer of one value per block
    # has codes 0 to 2**n - 1 even with --signed: then they are packed unsigned).
    signs = {
        name: quantizers[name].quant_plan(arrays[name].dtype, arrays[name].shape).span[0] < 0
        for name in quantizers
    }
    assert signs["layer.1.weight"] is signed
    assert record == {
        "layout": LAYOUT,
        "arrays": {
            name: {
                "n_bits": n_bits,
                "signed": signs[name],
                "shape": list(arrays[name].shape),
                "dtype": codes[name].dtype.name,
            }
            for name in quantizers
        },
    }
    assert sorted(stored) == sorted(arrays)
    numpy.testing.assert_array_equal(stored["steps"], arrays["steps"])
    for name in quantizers:
        assert codes[name].dtype == dtype
        assert stored[name].dtype == numpy.uint8
        assert stored[name].shape == (packed_size(arrays[name].size, n_bits),)
        assert stored[name].tolist() == pack_codes(codes[name], n_bits, signed=signs[name]).tolist()
        numpy.testing.assert_array_equal(
            unpack_codes(stored[name], n_bits, signed=signs[name], shape=arrays[name].shape), codes[name]
        )
        numpy.testing.assert_array_equal(codes[name], quantizers[name].quant(arrays[name]))

    # Read back: the packed file is the unpacked one, and dequantize needs no flag.
    _assert_same_arrays(_read(tmp_path / f"packed{suffix}"), _read(tmp_path / f"codes{suffix}"))
    ok("dequantize", f"codes{suffix}", "q.json", "-o", "restored.npz", cwd=tmp_path)
    ok("dequantize", f"packed{suffix}", "q.json", "-o", "restored_packed.npz", cwd=tmp_path)
    _assert_same_arrays(_stored(tmp_path / "restored_packed.npz")[0], _stored(tmp_path / "restored.npz")[0])
    # One array of a packed checkpoint, named as FILE:NAME.
    name = next(iter(quantizers))
    ok("dequantize", f"packed{suffix}:{name}", "q.json", "-o", "one.npy", cwd=tmp_path)
    numpy.testing.assert_array_equal(
        numpy.load(tmp_path / "one.npy"), _stored(tmp_path / "restored.npz")[0][name]
    )


@pytest.mark.parametrize("suffix", FORMATS)
def test_one_array_packed_under_its_name(tmp_path: Path, suffix: str) -> None:
    values = numpy.random.default_rng(5).normal(size=(9, 3))
    numpy.save(tmp_path / "x.npy", values)
    ok("calibrate", "x.npy", "-o", "q.json", "--n-bits", "6", "--signed", cwd=tmp_path)
    ok("quantize", "x.npy", "q.json", "-o", "codes.npy", cwd=tmp_path)
    output = ok("quantize", "x.npy", "q.json", "-o", f"packed{suffix}", "--pack", cwd=tmp_path)
    assert output == f"wrote (9, 3) int8 codes packed to 6 bits (signed) as 'x' to packed{suffix}\n"
    if suffix == ".safetensors":
        _safetensors_numpy()
    stored, record = _stored(tmp_path / f"packed{suffix}")
    assert list(stored) == ["x"] and stored["x"].shape == (packed_size(27, 6),)
    assert record["arrays"] == {"x": {"n_bits": 6, "signed": True, "shape": [9, 3], "dtype": "int8"}}
    unpacked = numpy.load(tmp_path / "codes.npy")
    _assert_same_arrays(_read(tmp_path / f"packed{suffix}"), {"x": unpacked})
    ok("dequantize", "codes.npy", "q.json", "-o", "restored.npy", cwd=tmp_path)
    ok("dequantize", f"packed{suffix}:x", "q.json", "-o", "restored_packed.npy", cwd=tmp_path)
    expected = numpy.load(tmp_path / "restored.npy")
    restored = numpy.load(tmp_path / "restored_packed.npy")
    assert restored.dtype == expected.dtype and numpy.array_equal(restored, expected)


def test_an_archive_member_is_packed_under_its_member_name(tmp_path: Path) -> None:
    arrays = _weights()
    numpy.savez(tmp_path / "m.npz", **arrays)
    ok("calibrate", "m.npz:layer.0.bias", "-o", "q.json", "--n-bits", "2", cwd=tmp_path)
    ok("quantize", "m.npz:layer.0.bias", "q.json", "-o", "bias.npz", "--pack", cwd=tmp_path)
    stored, _ = _stored(tmp_path / "bias.npz")
    assert list(stored) == ["layer.0.bias"] and stored["layer.0.bias"].shape == (2,)  # 7 codes of 2 bits
    quantizer = loads((tmp_path / "q.json").read_text())
    codes = _read(tmp_path / "bias.npz")["layer.0.bias"]
    numpy.testing.assert_array_equal(codes, quantizer.quant(arrays["layer.0.bias"]))


def test_stochastic_codes_are_the_same_packed_or_not(tmp_path: Path) -> None:
    numpy.save(tmp_path / "x.npy", numpy.random.default_rng(2).normal(size=(40, 5)))
    ok(
        "calibrate",
        "x.npy",
        "-o",
        "q.json",
        "--n-bits",
        "3",
        "--rounding",
        "stochastic",
        "--seed",
        "9",
        cwd=tmp_path,
    )
    ok("quantize", "x.npy", "q.json", "-o", "codes.npy", "--chunk-size", "15", cwd=tmp_path)
    ok("quantize", "x.npy", "q.json", "-o", "packed.npz", "--pack", cwd=tmp_path)
    _assert_same_arrays(_read(tmp_path / "packed.npz"), {"x": numpy.load(tmp_path / "codes.npy")})


def test_an_explicit_integer_dtype_is_recorded(tmp_path: Path) -> None:
    numpy.save(tmp_path / "x.npy", numpy.linspace(-1, 1, 11))
    ok("calibrate", "x.npy", "-o", "q.json", "--n-bits", "4", "--signed", cwd=tmp_path)
    ok("quantize", "x.npy", "q.json", "-o", "codes.npy", "--dtype", "int32", cwd=tmp_path)
    ok("quantize", "x.npy", "q.json", "-o", "packed.npz", "--pack", "--dtype", "int32", cwd=tmp_path)
    assert _stored(tmp_path / "packed.npz")[1]["arrays"]["x"]["dtype"] == "int32"
    _assert_same_arrays(_read(tmp_path / "packed.npz"), {"x": numpy.load(tmp_path / "codes.npy")})


# -- refusals


def test_outputs_that_cannot_record_the_layout_are_refused(tmp_path: Path) -> None:
    numpy.save(tmp_path / "x.npy", numpy.linspace(-1, 1, 11))
    numpy.savez(tmp_path / "m.npz", **_weights())
    ok("calibrate", "x.npy", "-o", "q.json", "--n-bits", "4", cwd=tmp_path)
    ok("calibrate", "m.npz", "-o", "qm.json", "--n-bits", "4", "--exclude", "steps", cwd=tmp_path)
    for output in ("codes.npy", "codes.csv", "codes.CSV", "codes"):
        message = fails("quantize", "x.npy", "q.json", "-o", output, "--pack", cwd=tmp_path)
        assert message.startswith(
            f"--pack writes .npz or .safetensors, which record how the codes are packed; got -o {output}"
        )
    message = fails("quantize", "m.npz", "qm.json", "-o", "codes.npy", "--pack", cwd=tmp_path)
    assert message.startswith("--pack writes .npz or .safetensors")
    message = fails(
        "quantize", "x.npy", "q.json", "-o", "codes.npz", "--pack", "--dtype", "float32", cwd=tmp_path
    )
    assert message == (
        "--pack packs integer codes; --dtype float32 is a float dtype. Leave --dtype out, or name an "
        "integer dtype"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.npz", "q.json", "qm.json", "x.npy"]


def test_more_than_8_bits_is_refused(tmp_path: Path) -> None:
    numpy.savez(tmp_path / "m.npz", **_weights())
    ok("calibrate", "m.npz", "-o", "q.json", "--n-bits", "9", "--exclude", "steps", cwd=tmp_path)
    message = fails("quantize", "m.npz", "q.json", "-o", "c.npz", "--pack", cwd=tmp_path)
    assert message == (
        "m.npz:layer.0.weight: --pack packs codes of 1 to 8 bits; this quantizer's have 9 (wider codes "
        "are whole bytes already: leave out --pack)"
    )
    ok("calibrate", "m.npz:steps", "-o", "q12.json", "--n-bits", "12", cwd=tmp_path)
    message = fails("quantize", "m.npz:steps", "q12.json", "-o", "c.npz", "--pack", cwd=tmp_path)
    assert message.startswith("m.npz:steps: --pack packs codes of 1 to 8 bits; this quantizer's have 12")
    assert not (tmp_path / "c.npz").exists()


def test_a_quantizer_that_does_not_clip_is_refused(tmp_path: Path) -> None:
    values = numpy.linspace(-1, 1, 11)
    numpy.save(tmp_path / "x.npy", values)
    quantizer = QuantizedArray(4, values).quantizer
    quantizer.no_clipping = True
    (tmp_path / "q.json").write_text(intquant.dumps(quantizer))
    message = fails("quantize", "x.npy", "q.json", "-o", "c.npz", "--pack", cwd=tmp_path)
    assert message.startswith(
        "x.npy: --pack needs codes clipped to the quantizer's bits, and this quantizer does not clip them"
    )


def test_the_record_name_is_reserved(tmp_path: Path) -> None:
    numpy.save(tmp_path / f"{PACKED_RECORD}.npy", numpy.linspace(-1, 1, 11))
    ok("calibrate", f"{PACKED_RECORD}.npy", "-o", "q.json", "--n-bits", "4", cwd=tmp_path)
    message = fails("quantize", f"{PACKED_RECORD}.npy", "q.json", "-o", "c.npz", "--pack", cwd=tmp_path)
    assert message == f"{PACKED_RECORD}.npy: the name {PACKED_RECORD} is reserved for the packing record"


def test_dequantize_has_no_pack_flag(tmp_path: Path) -> None:
    numpy.save(tmp_path / "x.npy", numpy.linspace(-1, 1, 11))
    ok("calibrate", "x.npy", "-o", "q.json", "--n-bits", "4", cwd=tmp_path)
    assert "unrecognized arguments: --pack" in fails(
        "dequantize", "x.npy", "q.json", "-o", "r.npy", "--pack", cwd=tmp_path
    )


# -- tampered records


def _packed_file(tmp_path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A packed ``packed.npz`` (4-bit signed codes of 7 values, and ``steps`` as is): its record and
    its members' bytes."""
    numpy.savez(tmp_path / "m.npz", w=numpy.linspace(-1, 1, 7), steps=numpy.arange(3))
    ok("calibrate", "m.npz", "-o", "q.json", "--n-bits", "4", "--signed", "--exclude", "steps", cwd=tmp_path)
    ok("quantize", "m.npz", "q.json", "-o", "packed.npz", "--pack", cwd=tmp_path)
    with zipfile.ZipFile(tmp_path / "packed.npz") as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    return _stored(tmp_path / "packed.npz")[1], members


def _rewrite(path: Path, members: dict[str, bytes], **replaced: numpy.ndarray) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for filename, data in members.items():
            name = filename.removesuffix(".npy")
            if name in replaced:
                with archive.open(filename, "w") as member:
                    numpy.lib.format.write_array(member, replaced.pop(name), allow_pickle=False)
            else:
                archive.writestr(filename, data)
        for name, array in replaced.items():
            with archive.open(f"{name}.npy", "w") as member:
                numpy.lib.format.write_array(member, array, allow_pickle=False)


def _with(record: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(record))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


_TRIPLE = {"n_bits": 4, "signed": True, "shape": [3], "dtype": "int8"}
TAMPERED = [
    (
        "not json",
        "{'layout': __import__('os')}",
        "the packing record (__intquant_packed__) is not valid JSON",
    ),
    ("repeated key", '{"layout": "a", "layout": "b", "arrays": {}}', "not valid JSON: repeated key 'layout'"),
    ("a list", "[1, 2]", "must be an object with exactly the keys layout, arrays; got list"),
    (
        "layout",
        ("layout",),
        "intquant.packed-be-v9",
        "has layout 'intquant.packed-be-v9'; this intquant reads 'intquant.packed-le-v1'",
    ),
    (
        "extra key",
        ("arrays", "w", "offset"),
        1,
        "array 'w' must be an object with exactly the keys n_bits, signed, shape, dtype",
    ),
    ("n_bits 9", ("arrays", "w", "n_bits"), 9, "array 'w': \"n_bits\" must be an int in [1, 8]; got 9"),
    ("n_bits true", ("arrays", "w", "n_bits"), True, '"n_bits" must be an int in [1, 8]; got True'),
    ("n_bits 4.0", ("arrays", "w", "n_bits"), 4.0, '"n_bits" must be an int in [1, 8]; got 4.0'),
    ("signed", ("arrays", "w", "signed"), "yes", "\"signed\" must be true or false; got 'yes'"),
    ("shape", ("arrays", "w", "shape"), [7, -1], '"shape" must be a list of ints >= 0; got [7, -1]'),
    ("dtype", ("arrays", "w", "dtype"), "float32", '"dtype" must be one of int8, uint8, int16'),
    ("dtype range", ("arrays", "w", "dtype"), "uint8", "uint8 cannot hold 4-bit signed codes (-8 to 7)"),
    (
        "bytes",
        ("arrays", "w", "shape"),
        [9],
        "packed.npz:w: the packing record says (5,) uint8 bytes (9 codes of 4 bits); the file holds (4,)",
    ),
    (
        "width",
        ("arrays", "w", "n_bits"),
        3,
        "the packing record says (3,) uint8 bytes (7 codes of 3 bits); the file holds (4,) uint8",
    ),
    (
        "not packed",
        ("arrays", "steps"),
        _TRIPLE,
        "packed.npz:steps: the packing record says (2,) uint8 bytes",
    ),
    (
        "a missing array",
        ("arrays", "gone"),
        _TRIPLE,
        "names an array 'gone' that the file does not hold; it holds w, steps",
    ),
]


@pytest.mark.parametrize("case", TAMPERED, ids=[case[0] for case in TAMPERED])
def test_a_tampered_npz_record_is_refused(tmp_path: Path, case: tuple[Any, ...]) -> None:
    record, members = _packed_file(tmp_path)
    if len(case) == 3:
        _, text, expected = case
    else:
        _, path, value, expected = case
        text = json.dumps(_with(record, path, value))
    _rewrite(tmp_path / "packed.npz", members, **{PACKED_RECORD: numpy.array(text)})
    message = fails("dequantize", "packed.npz", "q.json", "-o", "r.npz", cwd=tmp_path)
    assert expected in message
    assert message.startswith("packed.npz")
    assert not (tmp_path / "r.npz").exists()


def test_a_record_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    _, members = _packed_file(tmp_path)
    _rewrite(tmp_path / "packed.npz", members, **{PACKED_RECORD: numpy.arange(3)})
    message = fails("dequantize", "packed.npz", "q.json", "-o", "r.npz", cwd=tmp_path)
    assert message == (
        f"packed.npz:{PACKED_RECORD}: expected the packing record intquant writes, a JSON string (a 0-d "
        f"unicode array); got dtype int64, shape (3,). The name {PACKED_RECORD} is reserved in .npz files"
    )


def test_packed_bytes_with_padding_bits_set_are_refused(tmp_path: Path) -> None:
    _, members = _packed_file(tmp_path)
    stored = _stored(tmp_path / "packed.npz")[0][
        "w"
    ].copy()  # 7 codes of 4 bits: the last high nibble is padding
    stored[-1] |= 0xF0
    _rewrite(tmp_path / "packed.npz", members, w=stored)
    message = fails("dequantize", "packed.npz", "q.json", "-o", "r.npz", cwd=tmp_path)
    assert message.startswith("packed.npz:w: the last packed byte")
    assert "has padding bits set (bits 4 to 7 should be 0 after 7 codes of 4 bits)" in message


def test_packed_bytes_of_another_dtype_are_refused(tmp_path: Path) -> None:
    _, members = _packed_file(tmp_path)
    _rewrite(tmp_path / "packed.npz", members, w=numpy.zeros(4, dtype=numpy.int8))
    message = fails("dequantize", "packed.npz", "q.json", "-o", "r.npz", cwd=tmp_path)
    assert message.startswith(
        "packed.npz:w: the packing record says (4,) uint8 bytes (7 codes of 4 bits); the file holds (4,) int8"
    )


def test_a_tampered_safetensors_record_is_refused(tmp_path: Path) -> None:
    safetensors_numpy = _safetensors_numpy()
    numpy.savez(tmp_path / "m.npz", w=numpy.linspace(-1, 1, 7))
    ok("calibrate", "m.npz", "-o", "q.json", "--n-bits", "4", "--signed", cwd=tmp_path)
    ok("quantize", "m.npz", "q.json", "-o", "packed.safetensors", "--pack", cwd=tmp_path)
    stored, record = _stored(tmp_path / "packed.safetensors")
    for value, expected in (
        (5, "the packing record says (5,) uint8 bytes (7 codes of 5 bits); the file holds (4,) uint8"),
        (0, '"n_bits" must be an int in [1, 8]; got 0'),
    ):
        metadata = {
            PACKED_RECORD: json.dumps(_with(record, ("arrays", "w", "n_bits"), value)),
            "format": "np",
        }
        safetensors_numpy.save_file(stored, str(tmp_path / "tampered.safetensors"), metadata=metadata)
        message = fails("dequantize", "tampered.safetensors", "q.json", "-o", "r.npz", cwd=tmp_path)
        assert message.startswith("tampered.safetensors") and expected in message
    # Other metadata alone is no record: the bytes are read as they are.
    safetensors_numpy.save_file(stored, str(tmp_path / "plain.safetensors"), metadata={"format": "np"})
    assert _read(tmp_path / "plain.safetensors")["w"].dtype == numpy.uint8


def test_a_safetensors_array_named_as_the_record_cannot_go_to_npz(tmp_path: Path) -> None:
    _save(tmp_path / "m.safetensors", {PACKED_RECORD: numpy.linspace(-1, 1, 5), "w": numpy.linspace(0, 1, 5)})
    ok(
        "calibrate",
        "m.safetensors",
        "-o",
        "q.json",
        "--n-bits",
        "4",
        "--exclude",
        PACKED_RECORD,
        cwd=tmp_path,
    )
    message = fails("quantize", "m.safetensors", "q.json", "-o", "c.npz", "--pack", cwd=tmp_path)
    assert message == (
        f"c.npz: an array named {PACKED_RECORD} cannot be written to a .npz file, where the name holds the "
        f"record of packed codes; rename it, or write .safetensors"
    )
    ok("quantize", "m.safetensors", "q.json", "-o", "c.safetensors", "--pack", cwd=tmp_path)
    assert sorted(_read(tmp_path / "c.safetensors")) == [PACKED_RECORD, "w"]
