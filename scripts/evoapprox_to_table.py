#!/usr/bin/env python3
"""Converts an EvoApprox8b / EvoApproxLib behavioral C model of an 8x8 multiplier
(`mul8s_XXXX.c`: signed, `mul8u_XXXX.c`: unsigned) into cimc's product-table file
(`docs/approximate.md`): the header line `cimc-mul8 signed|unsigned`, then 65536
little-endian i32 entries, entry `a_byte * 256 + b_byte` = f(A, B).

Usage: evoapprox_to_table.py mul8s_1L2H.c out.mul8 [--cc cc]

The C file is compiled with a small harness (needs a C compiler) that calls the model's one
function for every operand pair; the result is read as int16 (signed) or uint16 (unsigned),
whatever the function's declared return type, as the library's README says to.
"""
import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile

HARNESS = r"""
#include <stdio.h>
#include <stdint.h>
#include "%(src)s"
int main(void) {
    for (int a = 0; a < 256; a++) {
        for (int b = 0; b < 256; b++) {
            long p = %(cast)s %(fn)s((%(arg)s)a, (%(arg)s)b);
            printf("%%ld\n", p);
        }
    }
    return 0;
}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="the multiplier's C model, e.g. mul8s_1L2H.c")
    ap.add_argument("output", help="the table file to write")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    a = ap.parse_args()
    text = open(a.source).read()
    m = re.search(r"\b\w+\s+(mul8([su])_\w+)\s*\(", text)
    if not m:
        sys.exit(f"{a.source}: no function named mul8s_* or mul8u_* found")
    fn, kind = m.group(1), m.group(2)
    signed = kind == "s"
    # The library declares some signed models with uint8_t arguments: pass the bytes as they are.
    arg = "uint8_t" if re.search(r"\(\s*uint8_t", text[m.start():]) else ("int8_t" if signed else "uint8_t")
    cast = "(int16_t)" if signed else "(uint16_t)"
    with tempfile.TemporaryDirectory() as d:
        h = os.path.join(d, "harness.c")
        with open(h, "w") as f:
            f.write(HARNESS % {"src": os.path.abspath(a.source), "fn": fn, "arg": arg, "cast": cast})
        exe = os.path.join(d, "harness")
        subprocess.run([a.cc, "-O1", "-w", "-o", exe, h], check=True)
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout.split()
    if len(out) != 65536:
        sys.exit(f"{a.source}: the harness printed {len(out)} products, expected 65536")
    with open(a.output, "wb") as f:
        f.write(f"cimc-mul8 {'signed' if signed else 'unsigned'}\n".encode())
        f.write(b"".join(struct.pack("<i", int(v)) for v in out))
    print(f"{a.output}: {fn} ({'signed' if signed else 'unsigned'}), 65536 products")


if __name__ == "__main__":
    main()
