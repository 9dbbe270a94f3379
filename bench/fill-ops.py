#!/usr/bin/env python3
"""What a client sent, from an `strace -f -xx -s 64 -e trace=write,writev,sendmsg,sendto` log of it.

usage: bench/fill-ops.py nbd|iscsi STRACE_LOG

iSCSI: every SCSI Command PDU (BHS opcode 01h, RFC 7143 §11.3) is counted by its CDB's operation code and its
Expected Data Transfer Length; Data-Out PDUs (05h) are counted. NBD: every request (magic 25609513h, or 21E41C71h with extended
headers; the NBD protocol's "Transmission phase") is counted by its type, flags and length. Only the first 64 bytes of each buffer are in the
log, which holds a whole BHS (48 bytes) or NBD request header (28 bytes) when the client writes one at the start of a
buffer, as libiscsi and qemu's NBD client do.
"""
import collections
import re
import sys

NBD_TYPES = {0: "READ", 1: "WRITE", 2: "DISC", 3: "FLUSH", 4: "TRIM", 5: "CACHE", 6: "WRITE_ZEROES", 7: "BLOCK_STATUS"}
SCSI_OPS = {0x00: "TEST UNIT READY", 0x12: "INQUIRY", 0x25: "READ CAPACITY(10)", 0x9E: "SERVICE ACTION IN(16)",
            0x2A: "WRITE(10)", 0x8A: "WRITE(16)", 0x28: "READ(10)", 0x88: "READ(16)", 0x35: "SYNCHRONIZE CACHE(10)",
            0x91: "SYNCHRONIZE CACHE(16)", 0x93: "WRITE SAME(16)", 0x41: "WRITE SAME(10)", 0x42: "UNMAP",
            0xA0: "REPORT LUNS", 0x1A: "MODE SENSE(6)", 0x5A: "MODE SENSE(10)", 0x03: "REQUEST SENSE"}
# NBD request magics: the compact 28-byte header, and the 32-byte one of extended headers (NBD_OPT_EXTENDED_HEADERS).
COMPACT, EXTENDED = bytes.fromhex("25609513"), bytes.fromhex("21e41c71")
HEX = re.compile(r'"((?:\\x[0-9a-f]{2})+)')
CALL = re.compile(r'\b(writev|write|sendmsg|sendto)\(')


def main():
    proto, path = sys.argv[1], sys.argv[2]
    counts = collections.Counter()
    for line in open(path, errors="replace"):
        if not CALL.search(line):
            continue
        for m in HEX.finditer(line):
            b = bytes.fromhex(m.group(1).replace("\\x", ""))
            if proto == "iscsi":
                # A BHS: reserved bytes 2-3 of a SCSI Command and of a Data-Out are zero, and TotalAHSLength
                # (byte 4) is 0 here; random payload bytes at the start of a buffer pass one time in 2^24.
                if len(b) < 48 or b[2] or b[3] or b[4]:
                    continue
                if b[0] & 0x3F == 0x01:
                    op = b[32]
                    name = SCSI_OPS.get(op, f"{op:02X}h")
                    if op == 0x9E:
                        name += f" SA {b[33] & 0x1F:02X}h"
                    counts[f"{name} {int.from_bytes(b[20:24], 'big')} B"] += 1
                elif b[0] & 0x3F == 0x05:
                    counts["Data-Out PDU"] += 1
            elif len(b) >= 28 and b[:4] in (COMPACT, EXTENDED):
                flags = int.from_bytes(b[4:6], "big")
                typ = int.from_bytes(b[6:8], "big")
                name = NBD_TYPES.get(typ, str(typ)) + (f" flags {flags:#x}" if flags else "")
                length = int.from_bytes(b[24:28], "big") if b[:4] == COMPACT else int.from_bytes(b[24:32], "big")
                counts[f"{name} {length} B"] += 1
    print("; ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))


main()
