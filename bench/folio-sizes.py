#!/usr/bin/env python3
"""How a file's cached data sits in the page cache: the share of its bytes in folios of each size.

usage: bench/folio-sizes.py FILE [FILE...]        (root: reads /proc/self/pagemap PFNs and /proc/kpageflags)

Maps each file (privately, never writing to it), touches every page (a page not in the cache is read in, as any reader would), looks up
each page's frame in /proc/self/pagemap and its flags in /proc/kpageflags (Documentation/admin-guide/mm/pagemap.rst:
KPF_COMPOUND_HEAD 15, KPF_COMPOUND_TAIL 16), and counts a head page and the tail pages after it as one folio. A page
with neither flag is a single-page folio.
"""
import mmap
import os
import struct
import sys
from collections import Counter

PAGE = os.sysconf("SC_PAGE_SIZE")
HEAD, TAIL = 1 << 15, 1 << 16
PFN_MASK = (1 << 55) - 1
PRESENT = 1 << 63


def folio_sizes(path):
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    pages = size // PAGE
    # A private writable mapping that is only read maps the page-cache pages themselves; ctypes needs it writable to
    # give its address.
    m = mmap.mmap(fd, pages * PAGE, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    view = memoryview(m)
    for i in range(pages):
        view[i * PAGE]  # fault the page in: its frame appears in pagemap
    base = ctypes_address(m)
    pm = os.open("/proc/self/pagemap", os.O_RDONLY)
    raw = os.pread(pm, pages * 8, (base // PAGE) * 8)
    os.close(pm)
    kf = os.open("/proc/kpageflags", os.O_RDONLY)
    sizes = Counter()  # folio size in pages -> pages in folios of that size
    run = 0
    for (entry,) in struct.iter_unpack("Q", raw):
        if not entry & PRESENT:
            if run:
                sizes[run] += run
            run = 0
            continue
        (flags,) = struct.unpack("Q", os.pread(kf, 8, (entry & PFN_MASK) * 8))
        if flags & TAIL and run:
            run += 1
            continue
        if run:
            sizes[run] += run
        run = 1
    if run:
        sizes[run] += run
    os.close(kf)
    view.release()
    m.close()
    os.close(fd)
    return pages, sizes


def ctypes_address(m):
    import ctypes

    c = ctypes.c_char.from_buffer(m)
    address = ctypes.addressof(c)
    del c
    return address


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        pages, sizes = folio_sizes(path)
        parts = ", ".join(
            f"{n * PAGE // 1024} KiB {100 * c / pages:.1f} %" for n, c in sorted(sizes.items(), key=lambda x: -x[0])
        )
        print(f"{path}: {pages * PAGE >> 20} MiB in folios of {parts}")


if __name__ == "__main__":
    main()
