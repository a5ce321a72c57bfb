"""Read the entry points of a cubin (an ELF64 little-endian file) without CUDA tools.

Used by the compile check so that it needs neither ``cuobjdump`` nor ``nm``:
:func:`function_symbols` lists the FUNC symbols and :func:`kernel_param_sizes` reads each
kernel's parameter sizes from its ``.nv.info.<kernel>`` section (EIATTR_KPARAM_INFO
records), which lets a test check the loader's argument list against the compiled ABI.
"""

from __future__ import annotations

import struct

_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_SHT_SYMTAB = 2
_STT_FUNC = 2
_STB_GLOBAL = 1
_SYM_SIZE = 24
_EIFMT_SVAL = 0x04  # nv.info record formats: 0x01 NVAL, 0x02 BVAL, 0x03 HVAL are 4 bytes long
_EIATTR_KPARAM_INFO = 0x17


class CubinFormatError(ValueError):
    """The bytes are not an ELF64 little-endian object with a symbol table."""


def _c_string(table: bytes, offset: int) -> str:
    end = table.find(b"\x00", offset)
    if end < 0:
        raise CubinFormatError(f"unterminated string at offset {offset} of a string table")
    return table[offset:end].decode("utf-8", errors="replace")


def _sections(data: bytes) -> list[tuple[str, int, int, int, int]]:
    """(name, type, offset, size, link) of every section."""
    if len(data) < 64 or data[:4] != _ELF_MAGIC:
        raise CubinFormatError(f"expected an ELF file (magic {_ELF_MAGIC!r}), found {data[:4]!r}")
    if data[4] != _ELFCLASS64 or data[5] != _ELFDATA2LSB:
        raise CubinFormatError(f"expected ELF64 little-endian, found class {data[4]} data {data[5]}")
    e_shoff = struct.unpack_from("<Q", data, 0x28)[0]
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if e_shoff == 0 or e_shnum == 0 or e_shoff + e_shnum * e_shentsize > len(data) or e_shstrndx >= e_shnum:
        raise CubinFormatError(f"section header table out of range (offset {e_shoff}, {e_shnum} entries)")
    raw = []
    for i in range(e_shnum):
        base = e_shoff + i * e_shentsize
        sh_name, sh_type = struct.unpack_from("<II", data, base)
        sh_offset, sh_size = struct.unpack_from("<QQ", data, base + 0x18)
        sh_link = struct.unpack_from("<I", data, base + 0x28)[0]
        if sh_type != 8 and sh_offset + sh_size > len(data):  # 8 = SHT_NOBITS
            raise CubinFormatError(f"section {i} lies outside the file")
        raw.append((sh_name, sh_type, sh_offset, sh_size, sh_link))
    _, _, names_off, names_size, _ = raw[e_shstrndx]
    names = data[names_off : names_off + names_size]
    return [(_c_string(names, n), t, o, sz, lk) for n, t, o, sz, lk in raw]


def kernel_param_sizes(data: bytes) -> dict[str, list[int]]:
    """Parameter sizes in bytes, in declaration order, of every kernel in the cubin."""
    result: dict[str, list[int]] = {}
    for name, _, offset, size, _ in _sections(data):
        if not name.startswith(".nv.info."):
            continue
        params: dict[int, tuple[int, int]] = {}
        pos, end = offset, offset + size
        while pos + 4 <= end:
            fmt, attr = data[pos], data[pos + 1]
            if fmt == _EIFMT_SVAL:
                length = struct.unpack_from("<H", data, pos + 2)[0]
                if attr == _EIATTR_KPARAM_INFO and length >= 12:
                    _, ordinal, param_offset, flags = struct.unpack_from("<IHHI", data, pos + 4)
                    params[ordinal] = (param_offset, (flags >> 18) & 0x3FFF)
                pos += 4 + length
            elif fmt in (0x01, 0x02, 0x03):
                pos += 4
            else:
                break  # padding or an unknown record: the parameter records come first
        if sorted(params) != list(range(len(params))):
            raise CubinFormatError(f"{name}: expected parameter ordinals 0..n-1, found {sorted(params)}")
        result[name.removeprefix(".nv.info.")] = [params[i][1] for i in range(len(params))]
    return result


def function_symbols(data: bytes, *, global_only: bool = True) -> set[str]:
    """Names of the FUNC symbols in the ELF symbol table(s) of ``data``."""
    sections = [(t, o, sz, lk) for _, t, o, sz, lk in _sections(data)]
    names: set[str] = set()
    found_symtab = False
    for sh_type, sh_offset, sh_size, sh_link in sections:
        if sh_type != _SHT_SYMTAB:
            continue
        found_symtab = True
        if sh_link >= len(sections):
            raise CubinFormatError(f"symbol table links to missing string table {sh_link}")
        _, str_off, str_size, _ = sections[sh_link]
        strtab = data[str_off : str_off + str_size]
        for off in range(sh_offset, sh_offset + sh_size - _SYM_SIZE + 1, _SYM_SIZE):
            st_name, st_info = struct.unpack_from("<IB", data, off)
            if st_info & 0xF != _STT_FUNC:
                continue
            if global_only and st_info >> 4 != _STB_GLOBAL:
                continue
            names.add(_c_string(strtab, st_name))
    if not found_symtab:
        raise CubinFormatError("expected a symbol table (SHT_SYMTAB), found none")
    return names
