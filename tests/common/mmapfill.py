#!/usr/bin/python3
"""mmapfill.py PATH MIB: create PATH, ftruncate it to MIB MiB, dirty every page through a
MAP_SHARED mapping, msync, fsync, close; print each step's answer (`ok` or `err ERRNO`)."""
import errno, mmap, os, sys

path, mib = sys.argv[1], int(sys.argv[2])
size = mib << 20


def attempt(name, fn):
    try:
        fn()
        print("%s: ok" % name)
    except OSError as e:
        print("%s: err %s" % (name, errno.errorcode.get(e.errno, e.errno)))
    sys.stdout.flush()


fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, size)
m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for off in range(0, size, 4096):
    m[off] = 0x5A
attempt("msync", m.flush)
m.close()
attempt("fsync", lambda: os.fsync(fd))
attempt("close", lambda: os.close(fd))
