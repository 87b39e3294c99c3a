#!/usr/bin/python3
"""Range operations from SRC to DST (both existing files), one answer per line:
copy_file_range, splice, FICLONE, FICLONERANGE, FIDEDUPERANGE, XFS_IOC_EXCHANGE_RANGE; then the
destination's size and a hash of its bytes. An answer is `ok N` or `err ERRNO`.
"""
import errno, fcntl, hashlib, os, struct, sys

src_path, dst_path = sys.argv[1], sys.argv[2]
FICLONE = 0x40049409
FICLONERANGE = 0x4020940D
FIDEDUPERANGE = 0xC0189436
XFS_IOC_EXCHANGE_RANGE = (1 << 30) | (40 << 16) | (ord("X") << 8) | 129


def attempt(name, fn):
    try:
        r = fn()
        print("%s: ok %s" % (name, r))
    except OSError as e:
        print("%s: err %s" % (name, errno.errorcode.get(e.errno, e.errno)))
    sys.stdout.flush()


src = os.open(src_path, os.O_RDONLY)
dst = os.open(dst_path, os.O_RDWR)
size = os.fstat(src).st_size
attempt("copy_file_range", lambda: os.copy_file_range(src, dst, size, 0, 0))


def splice():
    r, w = os.pipe()
    done = 0
    while done < size:
        n = os.splice(src, w, min(65536, size - done), offset_src=done)
        m = os.splice(r, dst, n, offset_dst=size + done)
        done += m
    os.close(r)
    os.close(w)
    return done


attempt("splice", splice)
attempt("FICLONE", lambda: fcntl.ioctl(dst, FICLONE, src))
attempt("FICLONERANGE", lambda: fcntl.ioctl(dst, FICLONERANGE, struct.pack("qQQQ", src, 0, 4096, 0)))


def dedupe():
    arg = bytearray(struct.pack("QQHHI", 0, 4096, 1, 0, 0) + struct.pack("qQQiI", dst, 0, 0, 0, 0))
    fcntl.ioctl(src, FIDEDUPERANGE, arg)
    status = struct.unpack_from("qQQiI", arg, 24)[3]
    return "status %s" % (errno.errorcode.get(-status, status) if status < 0 else status)


attempt("FIDEDUPERANGE", dedupe)
attempt("EXCHANGE_RANGE", lambda: fcntl.ioctl(dst, XFS_IOC_EXCHANGE_RANGE, struct.pack("iIQQQQ", src, 0, 0, 0, 4096, 0)))
os.close(dst)
data = open(dst_path, "rb").read()
print("dst: %d bytes %s" % (len(data), hashlib.sha1(data).hexdigest()))
