"""The size a node pulls: an image's layers gzipped, as a registry stores and serves them.

For an image built here (a docker archive of `hack/build-test-image`), every layer of the archive is
gzipped at level 6, the level `docker push` and buildx use. For a program that is one static binary
(the Go version), its smallest image is that binary alone on `scratch`: one layer holding one file,
measured the same way, without building anything.
"""

from __future__ import annotations

import io
import json
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO

_MIB = 1024 * 1024
_CHUNK = 1 << 20


def compressed_size_mib(archive: Path) -> float:
    """The layers of a docker archive, each gzipped at level 6 (what `docker push` uploads), in MiB."""
    total = 0
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            stream = tar.extractfile(layer)
            assert stream is not None
            total += _gzipped_bytes(_chunks(stream))
    return total / _MIB


def uncompressed_size_mib(archive: Path) -> float:
    """The layers of a docker archive as they are, in MiB."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        return sum(tar.getmember(layer).size for layer in manifest[0]["Layers"]) / _MIB


def binary_image_compressed_mib(binary: Path, *, path_in_image: str) -> float:
    """`FROM scratch` + `COPY binary path_in_image`: that one layer (a tar of one file), gzipped, in MiB."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(str(binary), arcname=path_in_image.lstrip("/"))
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        with binary.open("rb") as file:
            tar.addfile(info, file)
    layer.seek(0)
    return _gzipped_bytes(_chunks(layer)) / _MIB


def _chunks(stream: IO[bytes]) -> Iterable[bytes]:
    while chunk := stream.read(_CHUNK):
        yield chunk


def _gzipped_bytes(chunks: Iterable[bytes]) -> int:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip format
    total = sum(len(packer.compress(chunk)) for chunk in chunks)
    return total + len(packer.flush())
