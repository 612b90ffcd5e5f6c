"""MNIST-DVS: AEDAT 2.0 decoding, time/space binning against hand computations, labels from paths, splits and
the errors for missing or corrupt recordings. Every recording here is written by the test itself."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sqsnn.datasets import DATA_DIR_ENV, DatasetError, load_dataset
from sqsnn.datasets.aedat import read_aedat2
from sqsnn.datasets.mnist_dvs import bin_events

HEADER = (
    b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n# Data format is int32 address, int32 timestamp\r\n"
)


def address(x: int, y: int, polarity: int) -> int:
    return (y << 8) | (x << 1) | polarity


def write_aedat(path: Path, events: list[tuple[int, int, int, int]], header: bytes = HEADER) -> Path:
    """events: (x, y, polarity, timestamp_us)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = b"".join(struct.pack(">II", address(x, y, p), t) for x, y, p, t in events)
    path.write_bytes(header + body)
    return path


def test_read_aedat2_decodes_dvs128_addresses(tmp_path: Path) -> None:
    events = [(0, 0, 0, 5), (127, 0, 1, 6), (3, 127, 1, 7), (64, 33, 0, 4_000_000_000)]
    ev = read_aedat2(write_aedat(tmp_path / "a.aedat", events))
    assert ev.x.tolist() == [0, 127, 3, 64]
    assert ev.y.tolist() == [0, 0, 127, 33]
    assert ev.polarity.tolist() == [0, 1, 1, 0]
    assert ev.timestamp_us.tolist() == [5, 6, 7, 4_000_000_000]


def test_read_aedat2_unwraps_the_32_bit_timestamp(tmp_path: Path) -> None:
    top = 2**32
    events = [(1, 1, 0, top - 10), (1, 1, 0, top - 1), (1, 1, 0, 3), (1, 1, 0, 2), (1, 1, 0, 20)]
    ev = read_aedat2(write_aedat(tmp_path / "w.aedat", events))
    # the jump top-1 -> 3 is an overflow; 3 -> 2 is ordinary disorder and stays
    assert ev.timestamp_us.tolist() == [top - 10, top - 1, top + 3, top + 2, top + 20]
    empty = read_aedat2(write_aedat(tmp_path / "e.aedat", []))
    assert len(empty.x) == 0 and len(empty.timestamp_us) == 0


def test_bin_events_matches_a_hand_computation(tmp_path: Path) -> None:
    t0 = 1_000_000
    events = [
        (12, 12, 1, t0),  # first crop pixel -> bin 0, pooled pixel (0, 0)
        (15, 15, 0, t0 + 24_999),  # same 4x4 block, still bin 0 -> count 2
        (16, 12, 1, t0 + 25_000),  # bin 1, pooled (row 0, col 1) -> d = 1
        (13, 17, 0, t0 + 74_999),  # bin 2, pooled (row 1, col 0) -> d = 26
        (115, 115, 1, t0 + 49_999),  # bin 1, last pooled pixel (25, 25) -> d = 675
        (115, 115, 0, t0 + 26_000),  # bin 1, d = 675 again -> count 2
        (11, 40, 1, t0 + 100),  # column 11 is left of the crop (offset 12): dropped
        (40, 116, 1, t0 + 100),  # row 116 is below the crop (12 + 104): dropped
        (50, 50, 1, t0 + 20 * 25_000),  # bin 20 = T: dropped
        (60, 61, 0, t0 + 19 * 25_000 + 1),  # last bin 19: pooled (row 12, col 12) -> d = 324
    ]
    ev = read_aedat2(write_aedat(tmp_path / "b.aedat", events[::-1]))  # order in the file does not matter
    counts = bin_events(ev, T=20, bin_ms=25.0, crop=104, resolution=26)
    expected = np.zeros((20, 676), dtype=np.int64)
    expected[0, 0] = 2
    expected[1, 1] = 1
    expected[2, 26] = 1
    expected[1, 675] = 2
    expected[19, 324] = 1
    assert counts.shape == (20, 676)
    np.testing.assert_array_equal(counts, expected)
    on = bin_events(ev, T=20, bin_ms=25.0, crop=104, resolution=26, polarity="on")
    off = bin_events(ev, T=20, bin_ms=25.0, crop=104, resolution=26, polarity="off")
    np.testing.assert_array_equal(on + off, counts)
    assert (on[0, 0], off[0, 0], on[1, 675], off[1, 675], on[19, 324]) == (1, 1, 1, 1, 0)


def test_bin_events_native_resolution_crop_and_other_bins(tmp_path: Path) -> None:
    # crop=26, resolution=26: the central sensor pixels 51..76 at full resolution, no pooling.
    events = [(51, 51, 1, 0), (76, 51, 1, 10_000), (77, 60, 1, 0), (60, 52, 0, 35_000), (52, 53, 1, 49_999)]
    ev = read_aedat2(write_aedat(tmp_path / "c.aedat", events))
    counts = bin_events(ev, T=5, bin_ms=10.0, crop=26, resolution=26)
    expected = np.zeros((5, 676), dtype=np.int64)
    expected[0, 0] = 1  # (row 0, col 0)
    expected[1, 25] = 1  # (row 0, col 25) at 10 ms
    expected[3, 26 + 9] = 1  # (row 1, col 9) at 35 ms
    expected[4, 2 * 26 + 1] = 1  # (row 2, col 1) at 49.999 ms; column 77 was outside the crop
    np.testing.assert_array_equal(counts, expected)
    pooled = bin_events(ev, T=1, bin_ms=100.0, crop=26, resolution=13)  # 2x2 pooling, one long bin
    expected_pooled = np.zeros((1, 169), dtype=np.int64)
    expected_pooled[0, [0, 12, 4, 13]] = 1  # (0,0), (0,25)->(0,12), (1,9)->(0,4), (2,1)->(1,0)
    np.testing.assert_array_equal(pooled, expected_pooled)


def make_recordings(root: Path, per_class: int = 4, scales: tuple[int, ...] = (4,)) -> dict[str, int]:
    """Recordings whose only event sits at a pooled pixel unique to the file; returns pixel id -> label.

    Even-numbered files are named the MNIST-DVS way, odd ones sit in a directory named by the digit.
    """
    identity: dict[str, int] = {}
    k = 0
    for scale in scales:
        for digit in range(10):
            for i in range(per_class):
                row, col = divmod(k, 26)
                x, y = (
                    12 + 4 * col + 1,
                    12 + 4 * row + 2,
                )  # inside pooled pixel (row, col) of the default crop
                bin_ = k % 20
                name = f"mnist_{digit}_scale{scale:02d}_{i + 1:04d}.aedat"
                path = (
                    root / f"scale{scale}" / name if k % 2 == 0 else root / f"scale{scale}" / str(digit) / f"r{k}.aedat"
                )
                # the first event (outside the crop) starts the clock: t_first = 500 us
                write_aedat(path, [(0, 0, 1, 500), (x, y, k % 2, 500 + bin_ * 25_000 + 7)])
                identity[f"{bin_}:{row * 26 + col}"] = digit
                k += 1
    return identity


def sample_ids(frames: torch.Tensor) -> list[str]:
    out = []
    for sample in frames:
        nz = torch.nonzero(sample)
        assert nz.shape[0] == 1  # exactly one event survives per recording
        out.append(f"{int(nz[0, 0])}:{int(nz[0, 1])}")
    return out


def test_load_mnist_dvs_frames_labels_and_split(tmp_path: Path) -> None:
    identity = make_recordings(tmp_path / "mnist-dvs")
    d = load_dataset("mnist-dvs", tmp_path, test_fraction=0.25, val_fraction=0.0)
    assert (d.kind, d.image_shape, d.n_classes) == ("frames", (26, 26), 10)
    assert d.x_train.shape == (30, 20, 676) and d.x_test.shape == (10, 20, 676)
    assert d.x_train.dtype == torch.float64 and set(d.x_train.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(torch.bincount(d.y_test), torch.ones(10, dtype=torch.int64))  # stratified
    train_ids, test_ids = sample_ids(d.x_train), sample_ids(d.x_test)
    assert len(set(train_ids) | set(test_ids)) == 40  # every recording used once
    assert [identity[i] for i in train_ids] == d.y_train.tolist()
    assert [identity[i] for i in test_ids] == d.y_test.tolist()
    again = load_dataset("mnist-dvs", tmp_path, test_fraction=0.25, val_fraction=0.0)
    assert torch.equal(again.x_test, d.x_test)
    other = load_dataset("mnist-dvs", tmp_path, test_fraction=0.25, seed=1, val_fraction=0.0)
    assert sample_ids(other.x_test) != test_ids


def test_mnist_dvs_options_classes_limits_and_scales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    identity = make_recordings(tmp_path, per_class=2, scales=(4, 16))  # recordings directly in the data dir
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    d = load_dataset("mnist-dvs", classes=[9, 3], limit_train=4, test_fraction=0.5, val_fraction=0.0)
    assert d.n_classes == 2 and d.x_train.shape == (4, 20, 676) and d.x_test.shape == (4, 20, 676)
    assert torch.equal(torch.bincount(d.y_train), torch.tensor([2, 2]))
    assert [{9: 0, 3: 1}[identity[i]] for i in sample_ids(d.x_test)] == d.y_test.tolist()
    small = load_dataset("mnist-dvs", scales=[16], test_fraction=0.5, val_fraction=0.0)
    assert small.x_train.shape[0] + small.x_test.shape[0] == 20
    short = load_dataset("mnist-dvs", scales=[4], T=4, bin_ms=50.0, test_fraction=0.5, val_fraction=0.0)
    assert short.x_train.shape[1:] == (4, 676)
    # scale-4 recording k has its event in 25 ms bin k (k = 0..19): only k < 8 fit in 4 bins of 50 ms,
    # and they land in bin k // 2.
    steps = torch.cat([torch.nonzero(short.x_train)[:, 1], torch.nonzero(short.x_test)[:, 1]])
    assert torch.bincount(steps, minlength=4).tolist() == [2, 2, 2, 2]
    coarse = load_dataset("mnist-dvs", scales=[4], resolution=13, test_fraction=0.5, val_fraction=0.0)
    assert coarse.image_shape == (13, 13) and coarse.x_train.shape[2] == 169


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"crop": 100}, r"crop \(100\) must be a multiple of resolution \(26\)"),
        ({"crop": 130}, "resolution <= crop <= 128"),
        ({"T": 0}, "T must be a positive integer"),
        ({"bin_ms": 0.0}, "bin_ms must be positive"),
        ({"test_fraction": 1.0}, r"test_fraction must lie in \(0, 1\)"),
        ({"polarity": "up"}, "polarity must be"),
        ({"scales": [8]}, r"no recording of scales \[8\].*scales found: \[4\]"),
        ({"bins": 3}, "has no option.*bins"),
    ],
)
def test_mnist_dvs_bad_options_are_refused(tmp_path: Path, options: dict[str, object], match: str) -> None:
    make_recordings(tmp_path, per_class=2)
    with pytest.raises(DatasetError, match=match):
        load_dataset("mnist-dvs", tmp_path, **options)  # type: ignore[arg-type]


def test_missing_recordings_name_the_files_directories_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist-dvs", tmp_path)
    message = str(err.value)
    for needle in (
        "*.aedat",
        "mnist_0_scale04_0001.aedat",
        str(tmp_path / "mnist-dvs"),
        "--data-dir",
        DATA_DIR_ENV,
    ):
        assert needle in message
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DatasetError, match="no data directory was given"):
        load_dataset("mnist-dvs")


def test_corrupt_or_unlabelled_recordings_are_refused(tmp_path: Path) -> None:
    make_recordings(tmp_path, per_class=2)
    bad = tmp_path / "scale4" / "mnist_5_scale04_0001.aedat"
    bad.write_bytes(bad.read_bytes()[:-3])
    with pytest.raises(DatasetError, match=f"{bad} is truncated: 13 bytes of events.*{DATA_DIR_ENV}"):
        load_dataset("mnist-dvs", tmp_path, test_fraction=0.5)
    write_aedat(bad, [(1, 1, 1, 1)], header=b"#!AER-DAT1.0\r\n")
    with pytest.raises(DatasetError, match=r"not a jAER AEDAT 2\.0 file: first line '#!AER-DAT1\.0'"):
        load_dataset("mnist-dvs", tmp_path, test_fraction=0.5)
    write_aedat(bad, [(1, 1, 1, 1)])
    write_aedat(tmp_path / "extra" / "clip.aedat", [(1, 1, 1, 1)])
    with pytest.raises(DatasetError, match=r"cannot tell the digit of .*clip\.aedat"):
        load_dataset("mnist-dvs", tmp_path)


def test_too_few_recordings_to_stratify_are_refused(tmp_path: Path) -> None:
    make_recordings(tmp_path, per_class=1)
    with pytest.raises(DatasetError, match="cannot split the 10 MNIST-DVS recordings found"):
        load_dataset("mnist-dvs", tmp_path)
