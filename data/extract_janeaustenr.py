#!/usr/bin/env python3
"""Extracts Jane Austen's novels from Debian's r-cran-janeaustenr package into
plain text under data/ (no R needed: a small reader of R's lazy-load database
and serialization format, enough for the package's character vectors).

  apt-get download r-cran-janeaustenr && dpkg -x r-cran-janeaustenr_*.deb x
  python3 data/extract_janeaustenr.py x/usr/lib/R/site-library/janeaustenr/data data/corpus

The novels are in the public domain; the package is MIT-licensed (Julia Silge).
"""
import bz2
import gzip
import lzma
import os
import struct
import sys
import zlib

# The novels written out, and the file each goes to. The two shortest plus
# Pride and Prejudice keep data/ under 2 MB.
NOVELS = {
    "prideprejudice": "pride_and_prejudice.txt",
    "persuasion": "persuasion.txt",
    "northangerabbey": "northanger_abbey.txt",
}


class RReader:
    """R's XDR serialization (format 2 or 3), the types a data package uses."""

    def __init__(self, data):
        self.d = data
        self.p = 0
        self.refs = []

    def int(self):
        (v,) = struct.unpack_from(">i", self.d, self.p)
        self.p += 4
        return v

    def raw(self, n):
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def top(self):
        if self.raw(2) != b"X\n":
            raise ValueError("not XDR serialization")
        version = self.int()
        self.int()  # writer R version
        self.int()  # minimal reader version
        if version == 3:
            self.raw(self.int())  # native encoding name
        return self.item()

    def item(self):
        flags = self.int()
        kind = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if kind == 254 or kind == 242:  # NILVALUE, EMPTYENV
            return None
        if kind == 255:  # REFSXP
            idx = flags >> 8
            return self.refs[(idx if idx else self.int()) - 1]
        if kind == 1:  # SYMSXP
            sym = self.item()
            self.refs.append(sym)
            return sym
        if kind in (2, 6):  # LISTSXP / LANGSXP: pairlist
            out = []
            while True:
                attr = self.item() if has_attr else None
                tag = self.item() if has_tag else None
                out.append((tag, self.item()))
                flags = self.int()
                kind = flags & 0xFF
                if kind == 254:
                    return out
                if kind not in (2, 6):
                    raise ValueError("unexpected pairlist tail %d" % kind)
                has_attr = bool(flags & (1 << 9))
                has_tag = bool(flags & (1 << 10))
        if kind == 9:  # CHARSXP
            n = self.int()
            return None if n == -1 else self.raw(n).decode("utf-8", "replace")
        if kind in (10, 13):  # LGLSXP, INTSXP
            n = self.int()
            v = list(struct.unpack_from(">%di" % n, self.d, self.p))
            self.p += 4 * n
        elif kind == 14:  # REALSXP
            n = self.int()
            v = list(struct.unpack_from(">%dd" % n, self.d, self.p))
            self.p += 8 * n
        elif kind in (16, 19, 20):  # STRSXP, VECSXP, EXPRSXP
            v = [self.item() for _ in range(self.int())]
        elif kind == 24:  # RAWSXP
            v = self.raw(self.int())
        else:
            raise ValueError("unsupported SEXP type %d" % kind)
        if has_attr:
            attrs = dict(self.item())
            names = attrs.get("names")
            if kind == 19 and names is not None:
                return dict(zip(names, v))
        return v


def unpack_entry(blob):
    """One object of an .rdb: 4-byte length, then zlib, or a type byte."""
    (n,) = struct.unpack_from(">I", blob, 0)
    kind = blob[4:5]
    if kind == b"2":
        return bz2.decompress(blob[5:])[:n]
    if kind == b"Z":
        return lzma.decompress(blob[5:])[:n]
    if kind == b"0":
        return blob[5:5 + n]
    return zlib.decompress(blob[4:])[:n]


def main(src, dst):
    with gzip.open(os.path.join(src, "Rdata.rdx")) as f:
        top = RReader(f.read()).top()
    # A named list: variables -> named list of (offset, length) pairs.
    variables = top.get("variables") if isinstance(top, dict) else None
    if variables is None:
        raise SystemExit("unexpected Rdata.rdx layout")
    with open(os.path.join(src, "Rdata.rdb"), "rb") as f:
        rdb = f.read()
    os.makedirs(dst, exist_ok=True)
    for name, out in NOVELS.items():
        offset, length = variables[name]
        lines = RReader(unpack_entry(rdb[int(offset):int(offset) + int(length)])).top()
        text = "\n".join(l or "" for l in lines).strip() + "\n"
        with open(os.path.join(dst, out), "w", encoding="utf-8") as f:
            f.write(text)
        print("%s: %d lines, %d bytes" % (out, len(lines), len(text.encode())))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
