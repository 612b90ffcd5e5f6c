"""Reader for jAER AEDAT 2.0 event files from a DVS128 sensor (the format of the MNIST-DVS recordings).

File layout: header lines that start with ``#`` (the first one is ``#!AER-DAT2.0``), each ended by a
newline, then events of 8 bytes, big-endian: ``uint32 address``, ``uint32 timestamp`` in microseconds.
DVS128 address bits: ``polarity = addr & 1``, ``x = (addr >> 1) & 0x7F``, ``y = (addr >> 8) & 0x7F``
(``x``, ``y`` in 0..127 as the sensor reports them; jAER's viewer mirrors ``x`` for display, we do not).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from sqsnn.datasets.base import DatasetError

VERSION_LINE = b"#!AER-DAT2.0"
EVENT_DTYPE = np.dtype([("address", ">u4"), ("timestamp", ">u4")])
SENSOR_SIZE = 128
WRAP = 1 << 32


class Events(NamedTuple):
    """Decoded DVS128 events, one entry per event, in file order."""

    x: npt.NDArray[np.int64]  # column address, 0..127
    y: npt.NDArray[np.int64]  # row address, 0..127
    polarity: npt.NDArray[np.int64]  # 1 = ON (brighter), 0 = OFF
    timestamp_us: npt.NDArray[np.int64]  # microseconds, unwrapped past the 32-bit overflow


def read_aedat2(path: Path) -> Events:
    """Read and decode one AEDAT 2.0 DVS128 recording.

    Raises:
        DatasetError: unreadable file, a first line other than ``#!AER-DAT2.0``, an unterminated header,
            or an event section whose length is not a multiple of 8 bytes (truncated file).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if first != VERSION_LINE:
        shown = first[:40].decode("latin-1")
        raise DatasetError(f"{path} is not a jAER AEDAT 2.0 file: first line {shown!r}, expected '#!AER-DAT2.0'")
    pos = 0
    while pos < len(data) and data[pos] == ord("#"):
        end = data.find(b"\n", pos)
        if end < 0:
            raise DatasetError(f"{path} ends inside its header")
        pos = end + 1
    body = len(data) - pos
    if body % EVENT_DTYPE.itemsize:
        raise DatasetError(f"{path} is truncated: {body} bytes of events is not a multiple of {EVENT_DTYPE.itemsize}")
    raw = np.frombuffer(data, dtype=EVENT_DTYPE, offset=pos)
    address = raw["address"].astype(np.int64)
    timestamp = raw["timestamp"].astype(np.int64)
    # A backwards jump of more than half the range is the 32-bit counter overflowing, not disorder.
    wraps = np.zeros(len(timestamp), dtype=np.int64)
    wraps[1:] = np.cumsum(np.diff(timestamp) < -(WRAP // 2))
    return Events(
        x=(address >> 1) & 0x7F,
        y=(address >> 8) & 0x7F,
        polarity=address & 1,
        timestamp_us=timestamp + wraps * WRAP,
    )
