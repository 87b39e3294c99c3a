#!/usr/bin/python3
"""Holds open files for the open-mode tests, one process per tenant.

Reads one command per line on stdin, answers one line on stdout:
  open H PATH KIND    open PATH as KIND, keep it as handle H      -> ok | err ERRNO
  write H OFF TOKEN   write TOKEN at OFF (appends for append)     -> ok N | err ERRNO
  read H              the whole file as this handle sees it       -> data SIZE SHA1 | err ERRNO
  readnext H          read(2) from the handle's offset, like tail -f -> next TEXT (newlines as |; - if none)
  sync H              fsync (msync for a shared mapping)          -> ok | err ERRNO
  close H             close (unmap)                               -> ok | err ERRNO
  stat H              fstat of the handle                         -> stat UID SIZE | err ERRNO
  reopen H H2 KIND    open /proc/self/fd/N of handle H as KIND, keep it as H2 -> ok | err ERRNO
  openmany PREFIX A B open PREFIXa .. PREFIX(b-1) read-only and keep them all
                      -> opened N [ERRNO COUNT ...] (the errors of the others, by errno)
KINDs: rdonly wronly rdwr append trunc direct mmap_shared mmap_private path (O_PATH: the
kernel's inode held, no open sent to the file system).
"""
import ctypes, errno, hashlib, mmap, os, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MS_SYNC = 4


def check(r):
    if r == -1 or r == ctypes.c_void_p(-1).value:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def map_file(fd, flags, prot):
    # Whatever the file's size (Python's mmap refuses a mapping longer than the file).
    return check(libc.mmap(None, MAP_LEN, prot, flags, fd, 0))

MAP_LEN = 1 << 16
FLAGS = {
    "rdonly": os.O_RDONLY,
    "wronly": os.O_WRONLY,
    "rdwr": os.O_RDWR,
    "append": os.O_WRONLY | os.O_APPEND,
    "trunc": os.O_WRONLY | os.O_TRUNC,
    "direct": os.O_RDONLY | os.O_DIRECT,
    "mmap_shared": os.O_RDWR,
    "mmap_private": os.O_RDONLY,
    "path": os.O_PATH,
}
held = {}


def mapped_size(fd):
    return os.fstat(fd).st_size


many = []


def do(cmd):
    op, h = cmd[0], cmd[1]
    if op == "openmany":
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        errs = {}
        opened = 0
        for i in range(int(cmd[2]), int(cmd[3])):
            try:
                many.append(os.open("%s%d" % (h, i), os.O_RDONLY))
                opened += 1
            except OSError as e:
                name = errno.errorcode.get(e.errno, str(e.errno))
                errs[name] = errs.get(name, 0) + 1
        return "opened %d%s" % (opened, "".join(" %s %d" % kv for kv in sorted(errs.items())))
    if op == "open":
        path, kind = cmd[2], cmd[3]
        fd = os.open(path, FLAGS[kind])
        m = None
        if kind == "mmap_shared":
            m = map_file(fd, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        elif kind == "mmap_private":
            m = map_file(fd, mmap.MAP_PRIVATE, mmap.PROT_READ)
        held[h] = (fd, kind, m)
        return "ok"
    fd, kind, m = held[h]
    if op == "stat":
        st = os.fstat(fd)
        return "stat %d %d" % (st.st_uid, st.st_size)
    if op == "reopen":
        held[cmd[2]] = (os.open("/proc/self/fd/%d" % fd, FLAGS[cmd[3]]), cmd[3], None)
        return "ok"
    if op == "write":
        off, token = int(cmd[2]), cmd[3].encode()
        if m is not None:
            # Only within the file (a page past EOF would be SIGBUS, as on any file system).
            if off + len(token) > mapped_size(fd):
                return "ok 0"
            ctypes.memmove(m + off, token, len(token))
            return "ok %d" % len(token)
        if kind == "append":
            return "ok %d" % os.write(fd, token)
        return "ok %d" % os.pwrite(fd, token, off)
    if op == "read":
        if m is not None:
            size = min(mapped_size(fd), MAP_LEN)
            data = ctypes.string_at(m, size)
        elif kind == "direct":
            buf = mmap.mmap(-1, MAP_LEN)  # page aligned, as O_DIRECT wants
            n = os.preadv(fd, [buf], 0)
            data = bytes(buf[:n])
        else:
            data = os.pread(fd, MAP_LEN, 0)
        return "data %d %s" % (len(data), hashlib.sha1(data).hexdigest())
    if op == "readnext":
        data = os.read(fd, MAP_LEN)
        return "next %s" % (data.decode().replace("\n", "|") if data else "-")
    if op == "sync":
        if m is not None:
            check(libc.msync(m, MAP_LEN, MS_SYNC))
        else:
            os.fsync(fd)
        return "ok"
    if op == "close":
        del held[h]
        if m is not None:
            check(libc.munmap(m, MAP_LEN))
        os.close(fd)
        return "ok"
    raise ValueError(op)


for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    try:
        out = do(cmd)
    except OSError as e:
        out = "err %s" % errno.errorcode.get(e.errno, e.errno)
    except Exception as e:  # a bug in the test, not an answer of the file system
        out = "exception %r" % e
    print(out, flush=True)
