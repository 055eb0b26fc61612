"""The IDX file format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

An IDX file is: two zero bytes, a type code, the number of dimensions ``d``,
``d`` big-endian uint32 sizes, then the data in big-endian C order. Files may be
gzip-compressed; compression is detected from the content, not the name.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tinylarge.errors import TinylargeError

#: IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes, *, source: str = "IDX data") -> NDArray[Any]:
    """Decode IDX bytes (plain or gzip) into an array in native byte order."""
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise TinylargeError(f"corrupt gzip in {source}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise TinylargeError(f"{source} is not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise TinylargeError(f"{source}: unknown IDX type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise TinylargeError(f"{source}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise TinylargeError(
            f"{source}: IDX shape {shape} needs {expected} data bytes, found {len(data) - header}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | Path) -> NDArray[Any]:
    """Read an IDX file (plain or gzip) from disk."""
    path = Path(path)
    return parse_idx(path.read_bytes(), source=str(path))


def write_idx(path: str | Path, array: NDArray[Any], *, compress: bool = True) -> None:
    """Write ``array`` as an IDX file, gzip-compressed by default (inverse of :func:`read_idx`)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    native = np.dtype(array.dtype).newbyteorder("=")
    if native not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[native], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    payload = header + body
    Path(path).write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
