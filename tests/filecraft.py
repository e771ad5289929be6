"""Helpers that forge model files byte by byte, as an attacker would.

Checksums are recomputed, so the forged files get past the corruption
checks and exercise the reader's validation of what the file claims.
"""

import json
import struct
import zlib

from fastmlp._container import ALIGN, MAGIC

PREAMBLE = struct.Struct("<12sHHQII")


def crc(b):
    return zlib.crc32(b) & 0xFFFFFFFF


def align(n):
    return -(-n // ALIGN) * ALIGN


def assemble(header, data=b"", version=(1, 0), magic=MAGIC, raw_header=None):
    """A file with this JSON header (dict, or raw bytes) and data region."""
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    head = PREAMBLE.pack(magic, version[0], version[1], len(text), crc(text), 0)
    head = head[:28] + struct.pack("<I", crc(head[:28]))
    out = head + text
    if data:
        out += b"\0" * (align(len(out)) - len(out)) + data
    return out


def split(blob):
    """(header dict, data region bytes, version) of a file's bytes."""
    _, major, minor, hlen, _, _ = PREAMBLE.unpack(blob[:32])
    header = json.loads(blob[32:32 + hlen])
    start = align(32 + hlen)
    return header, blob[start:], (major, minor)


def rewrite(blob, mutate):
    """Apply mutate(header) (editing it in place) and re-sign the file."""
    header, data, version = split(blob)
    mutate(header)
    return assemble(header, data, version)


def section_bounds(blob):
    """Byte offsets where the preamble, the metadata and each section end."""
    header, _, _ = split(blob)
    hlen = PREAMBLE.unpack(blob[:32])[3]
    start = align(32 + hlen)
    bounds = [0, len(MAGIC), 32, 32 + hlen]
    entries = list(header["arrays"].values())
    for e in header["sparse"].values():
        entries += [e["data"], e["indices"], e["indptr"]]
    for e in entries:
        bounds += [start + e["offset"], start + e["offset"] + e["nbytes"]]
    return sorted(set(bounds))


def patch_section(blob, entry_of, values):
    """Overwrite one section with ``values`` (same byte count) and re-sign it.

    ``entry_of(header)`` returns the section's entry (it is edited in place).
    """
    header, data, version = split(blob)
    entry = entry_of(header)
    raw = values.tobytes()
    assert len(raw) == entry["nbytes"], "a patch must keep the section's size"
    entry["crc32"] = crc(raw)
    start = entry["offset"]
    data = data[:start] + raw + data[start + len(raw):]
    return assemble(header, data, version)
