#!/usr/bin/env python3
"""One worker of the randomized multi-tenant stress run (tests/stress_multitenant.rs).

Runs as one uid (a tenant, or root) with the mount root as its working directory, doing random
operations of every kind on a small name space shared with the other workers, until its time
is up. Then it closes everything and prints ONE JSON line on stdout:

  {"worker": "1001", "uid": 1001, "seed": S, "ops": N, "secs": T,
   "counts": {"op": {"ok": n, "EDQUOT": m, ...}},          # every op and its outcomes
   "failure_count": k,
   "failure_kinds": {"fatal EIO open": n, ...},               # class, errno, op
   "failures": [{"kind", "path", "detail", "t", "op_index"}], # EXAMPLES_PER_KIND per kind
   "flush_eio": [{"op", "call", "inodes": [[st_dev, st_ino]], "path", "detail", "t", "op_index"}],
   "given": {"user:1003": bytes, "project:7": bytes,        # root only: what it allocated
             "inodes:user:1003": n, "inodes:chowned": n}}   # or chowned for others (exempt)

A failure is:
  fatal       EIO, ENOTCONN or ESTALE from any call; EBADF from a call on a descriptor this
              worker opened and has not closed (it never uses a descriptor against its mode);
  unexpected  an errno that is not in ALLOWED (e.g. ENOSPC, EMFILE, EFAULT);
  data        bytes read back differ from what this worker alone wrote (private files);
  signal      a forked mmap child died of a signal on a file only this worker sizes;
  exception   a Python exception other than OSError (a bug in this script).

Two answers of the file system that look fatal are documented, and classified precisely:
  reopen of a deleted file   ESTALE or EIO (rarely ENOMEM, from the kernel; cause not found)
              from a reopen through /proc/self/fd of an O_PATH
              descriptor when the O_PATH's file is no longer at its path (gone, or the path
              names another inode: st_dev, st_ino and the file handle, i.e. node id and
              generation, recorded when the O_PATH was taken), docs/design.md §9.7 "Letting
              go". Counted in the row DOC_REOPEN; else a failure. A reopen that SUCCEEDED and
              whose descriptor then answers ESTALE or EIO is a failure of its own kind
              ("... reopened from an unlinked file"): the reopen reached another inode, the
              one now holding the number (tests/reopen_reused_inode.rs).
  flush after a refused write-back   EIO from a call that flushes the page cache (close, fsync,
              fdatasync, O_DIRECT I/O, fallocate, copy_file_range, splice) is not judged here:
              it goes to "flush_eio" with the (st_dev, st_ino) of every descriptor involved, and
              the test accepts it only for an inode whose shared mapping's write-back some
              mapping worker saw refused (docs/design.md §4 "Writes"). Each such refusal (msync,
              or fdatasync after a child died mid-map, answering EDQUOT or EIO) is appended as
              one line "st_dev st_ino errno worker t" to the --wb-log file (O_APPEND).

Usage: worker.py --name N --seed S --secs T --bases a,b,c --private DIR --wb-log FILE [--root] [--skip OPS]
Deterministic given the seed, up to the interleaving with the other workers.
"""

import argparse
import ctypes
import errno
import fcntl
import json
import mmap
import os
import random
import signal
import struct
import sys
import time
import traceback

EXAMPLES_PER_KIND = 2
MAX_FDS = 12
KIB = 1024
MMAP_FILES, MMAP_SIZE = 3, 2048 * KIB

ALLOWED = {
    errno.EDQUOT, errno.ENOENT, errno.EEXIST, errno.EACCES, errno.EPERM, errno.ENOTEMPTY,
    errno.EXDEV, errno.EISDIR, errno.ENOTDIR, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTTY,
    errno.ELOOP, errno.EBUSY, errno.ETXTBSY, errno.EMLINK, errno.EFBIG, errno.ENODATA,
    errno.ENXIO, errno.ESPIPE,
}
FATAL = {errno.EIO, errno.ENOTCONN, errno.ESTALE}
DOC_REOPEN = "documented: reopen of a deleted file: ESTALE/EIO (design §9.7)"
MAX_FLUSH_EIO = 10000

NAMES = [f"n{i}" for i in range(8)]
DIRS = ["d0", "d1", "d2"]

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
libc.name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                                   ctypes.c_int]
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
MAX_HANDLE_SZ = 128
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 16
FICLONE = 0x40049409
FICLONERANGE = 0x4020940D
FIDEDUPERANGE = 0xC0189436
SEEK_DATA, SEEK_HOLE = 3, 4


# The tightly limited tenants: root never writes into their files nor chowns to them, so that
# whatever they end up with beyond their limits was not given to them by an exempt caller.
TIGHT = {1001, 1002}


class Skip(Exception):
    """Root declines to write into a tight tenant's file."""


def check_c(ret, what):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def file_handle(dirfd, path, flags):
    """The file handle (FUSE: node id and generation) of `path` (no symlink followed), or of
    `dirfd` itself with AT_EMPTY_PATH; None if the file system gives none."""
    buf = ctypes.create_string_buffer(8 + MAX_HANDLE_SZ)
    struct.pack_into("I", buf, 0, MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(dirfd, path.encode(), buf, ctypes.byref(mount_id), flags) < 0:
        e = ctypes.get_errno()
        if e in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EOVERFLOW):
            return None
        raise OSError(e, os.strerror(e), path)
    n = struct.unpack_from("I", buf, 0)[0]
    return buf.raw[4:8 + n]


class OPathId:
    """Which file an O_PATH descriptor named, taken when it was opened: to tell afterwards
    whether that file is still at its path."""

    def __init__(self, opath, path):
        st = os.fstat(opath)
        self.path, self.dev_ino = path, (st.st_dev, st.st_ino)
        self.handle = file_handle(opath, "", AT_EMPTY_PATH)

    def gone(self):
        """True if the file was deleted (`deleted`, judged from the descriptor when the
        failure happened), or the path no longer exists or names another inode (another
        st_dev/st_ino, or the same inode number with another generation: ext4 reused it).
        `why` says what decided, for a failure's report."""
        if getattr(self, "deleted", False):
            self.why = "the O_PATH descriptor's file had no link left"
            return True
        try:
            st = os.lstat(self.path)
        except OSError as e:
            # EACCES or ELOOP (another worker took the directory's search permission or put
            # a symlink in its place) leaves it undecided: not gone.
            self.why = f"lstat: {errno.errorcode.get(e.errno, e.errno)}"
            return e.errno in (errno.ENOENT, errno.ENOTDIR)
        if (st.st_dev, st.st_ino) != self.dev_ino:
            self.why = "another inode at the path"
            return True
        if self.handle is None:
            self.why = "same st_ino at the path, no handle to compare"
            return False
        try:
            same = file_handle(AT_FDCWD, self.path, 0) == self.handle
            self.why = "the same handle at the path" if same else "another generation at the path"
            return not same
        except OSError as e:
            self.why = f"name_to_handle_at: {errno.errorcode.get(e.errno, e.errno)}"
            return e.errno in (errno.ENOENT, errno.ENOTDIR)

    def judge_deleted(self, opath, unlinked_here):
        """Reads, while the O_PATH descriptor `opath` is still open, whether its file is
        deleted, independently of whether its path can still be read (another worker may have
        taken the directory's search permission): its fstat shows no link left, or answers
        ESTALE/EIO (the daemon let the inode go) after this operation unlinked the name
        itself. An ESTALE from the fstat of a file some other worker may have unlinked is left
        undecided: a daemon that lost a live node would answer the same."""
        try:
            self.deleted = os.fstat(opath).st_nlink == 0
        except OSError as e:
            self.deleted = unlinked_here and e.errno in (errno.ESTALE, errno.EIO)


def ident(fd):
    """(st_dev, st_ino) of a descriptor, or None."""
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino)
    except OSError:
        return None


def flush_call(call, fn, *idents):
    """Runs a call that flushes the page cache (close, fsync, O_DIRECT I/O, fallocate, ...);
    an EIO from it is tagged with the call and the (st_dev, st_ino) of the descriptors it
    involves, for the test to match against the refused write-backs."""
    try:
        return fn()
    except OSError as e:
        if e.errno == errno.EIO:
            e.flush = (call, [list(i) for i in idents if i is not None])
        raise


def close_flushing(fd, fid):
    """close(2), which flushes the page cache of the file `fid` names."""
    flush_call("close", lambda: os.close(fd), fid)


def retag(old, new):
    """`new` with the classification tags of `old`."""
    for tag in ("flush", "opath", "reopened"):
        if hasattr(old, tag):
            setattr(new, tag, getattr(old, tag))
    return new


class Fd:
    """A descriptor this worker opened: what it may be used for, which inode it is, and for a
    descriptor reopened through /proc/self/fd, the O_PATH's file."""

    def __init__(self, fd, path, acc, direct, reopened=None):
        self.fd, self.path, self.acc, self.direct, self.reopened = fd, path, acc, direct, reopened
        self.ident = ident(fd)

    def readable(self):
        return self.acc in ("r", "rw")

    def writable(self):
        return self.acc in ("w", "rw")


class Worker:
    def __init__(self, a):
        self.name = a.name
        self.uid = os.getuid()
        self.root = a.root
        self.rng = random.Random(a.seed)
        self.seed = a.seed
        self.secs = a.secs
        self.bases = a.bases.split(",")
        self.private = a.private
        self.fds = {}
        self.counts = {}
        self.failures = []
        self.failure_kinds = {}
        self.exceptions = 0
        self.failure_count = 0
        self.flush_eio = []
        self.wb_log = a.wb_log
        self.ops = 0
        self.given = {}
        self.mmap_seq = 0
        self.space_checked, self.space_low = -1000, False
        self.skip = set(filter(None, a.skip.split(",")))

    # ---- bookkeeping ----

    def count(self, op, outcome):
        c = self.counts.setdefault(op, {})
        c[outcome] = c.get(outcome, 0) + 1

    def fail(self, op, cls, err, path, detail):
        self.failure_count += 1
        kind = f"{cls} {err or '-'} {op}"
        n = self.failure_kinds.get(kind, 0)
        self.failure_kinds[kind] = n + 1
        if n < EXAMPLES_PER_KIND:
            self.failures.append({"kind": kind, "path": path, "detail": detail,
                                  "t": round(time.monotonic() - self.t0, 3), "op_index": self.ops})

    def oserror(self, op, e, path, fd_valid, reopened=None):
        """Counts and classifies a failed call. `reopened`: the O_PATH identity of the
        descriptor the call used, if it was reopened through /proc/self/fd."""
        name = errno.errorcode.get(e.errno, str(e.errno))
        self.count(op, name)
        stale = e.errno in (errno.ESTALE, errno.EIO)
        opath = getattr(e, "opath", None)
        # The kernel now and then answers a reopen of a deleted file with ENOMEM instead
        # (about once in 150,000 operations; cause not found, see design §15.4).
        if (stale or e.errno == errno.ENOMEM) and opath is not None and opath.gone():
            self.count(DOC_REOPEN, f"{op} {name}")
            return
        reopened = reopened or getattr(e, "reopened", None)
        reopened_gone = stale and reopened is not None and reopened.gone()
        flush = getattr(e, "flush", None)
        if e.errno == errno.EIO and flush is not None:
            # Judged by the test, against every mapping worker's refused write-backs.
            call, inodes = flush
            if len(self.flush_eio) < MAX_FLUSH_EIO:
                self.flush_eio.append({"op": op, "call": call, "inodes": inodes, "path": path, "detail": str(e),
                                       "reopened_from_unlinked": reopened_gone,
                                       "t": round(time.monotonic() - self.t0, 3), "op_index": self.ops})
            else:
                self.fail(op, "fatal", name, path, f"{e} (more than {MAX_FLUSH_EIO} EIO from flushes)")
            return
        if reopened_gone:
            self.fail(f"{op} (reopened from an unlinked file: reached another inode, tests/reopen_reused_inode.rs)",
                      "fatal", name, path, str(e))
            return
        if e.errno in FATAL or (e.errno == errno.EBADF and fd_valid):
            detail = str(e)
            if opath is not None:
                detail += f" (the O_PATH's file: {opath.path}, {getattr(opath, 'why', 'not judged')})"
            self.fail(op, "fatal", name, path, detail)
        elif e.errno not in ALLOWED and e.errno != errno.EBADF:
            self.fail(op, "unexpected", name, path, str(e))

    # ---- the name space ----

    def project_of(self, path):
        top = path.split("/", 1)[0]
        return {"proj": 7, "proj2": 8}.get(top, 0)

    def base(self):
        return self.rng.choice(self.bases)

    def dirpath(self):
        b = self.base()
        if self.rng.random() < 0.35:
            return f"{b}/{self.rng.choice(DIRS)}"
        return b

    def path(self):
        return f"{self.dirpath()}/{self.rng.choice(NAMES)}"

    def size(self, big=512 * KIB):
        # Mostly small, sometimes large: sizes spread over four orders of magnitude.
        return int(self.rng.choice([1, 100, 4 * KIB, 16 * KIB, 64 * KIB, big]) * self.rng.random()) + 1

    def data(self, n):
        b = self.rng.randrange(256)
        return bytes([b]) * n

    def note_given(self, before, st, path):
        """Root only: remember what an exempt write allocated for another subject."""
        if not self.root or st is None or st.st_uid in TIGHT:
            return
        grew = max(0, st.st_blocks - (before.st_blocks if before else 0)) * 512
        if grew == 0:
            return
        if st.st_uid != 0:
            k = f"user:{st.st_uid}"
            self.given[k] = self.given.get(k, 0) + grew
        p = self.project_of(path)
        if p:
            k = f"project:{p}"
            self.given[k] = self.given.get(k, 0) + grew

    def root_before(self, st):
        """Root only: the stat before an allocating call, or Skip for a tight tenant's file and
        while the volume is low on space (tenants are bounded by their limits; root is not, and
        a long run must never meet ENOSPC)."""
        if st is not None and st.st_uid in TIGHT:
            raise Skip()
        if self.low_space():
            raise Skip()
        return st

    def low_space(self):
        if self.ops >= self.space_checked + 100:
            self.space_checked = self.ops
            v = os.statvfs(".")
            self.space_low = v.f_bavail < v.f_blocks // 3
        return self.space_low

    def fstat_or_none(self, fd):
        try:
            return os.fstat(fd)
        except OSError:
            return None

    def stat_or_none(self, path):
        try:
            return os.lstat(path)
        except OSError:
            return None

    # ---- descriptors ----

    def pick_fd(self, need):
        cands = [f for f in self.fds.values()
                 if (need == "r" and f.readable()) or (need == "w" and f.writable())
                 or (need == "any" and f.acc != "path") or need == "all"]
        return self.rng.choice(cands) if cands else None

    def add_fd(self, fd, path, acc, direct=False, reopened=None):
        f = Fd(fd, path, acc, direct, reopened)
        while len(self.fds) >= MAX_FDS:
            self.close_fd(self.rng.choice(list(self.fds.values())))
        self.fds[fd] = f

    def close_fd(self, f):
        del self.fds[f.fd]
        try:
            flush_call("close", lambda: os.close(f.fd), f.ident)
            self.count("close", "ok")
        except OSError as e:
            self.oserror("close", e, f.path, True, f.reopened)

    # ---- operations: each raises OSError on the call's failure ----

    def op_open(self):
        p = self.path()
        acc = self.rng.choice(["r", "r", "w", "rw", "rw"])
        flags = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[acc]
        if self.rng.random() < 0.6:
            flags |= os.O_CREAT
        if acc != "r" and self.rng.random() < 0.25:
            flags |= os.O_APPEND
        if acc != "r" and self.rng.random() < 0.1:
            flags |= os.O_TRUNC
        direct = self.rng.random() < 0.1
        if direct:
            flags |= os.O_DIRECT
        if self.rng.random() < 0.1:
            flags |= os.O_EXCL
        before = self.stat_or_none(p) if self.root else None
        fd = os.open(p, flags | os.O_NOFOLLOW * (self.rng.random() < 0.5), self.rng.choice([0o666, 0o644, 0o600]))
        self.note_given(before, self.fstat_or_none(fd), p)
        self.add_fd(fd, p, acc, direct)

    def op_open_path_reopen(self):
        """open(O_PATH), maybe unlink the name, reopen via /proc/self/fd, use it."""
        p = self.path()
        opath = os.open(p, os.O_PATH | os.O_NOFOLLOW)
        opid = None
        unlinked_here = False
        try:
            try:
                opid = OPathId(opath, p)
            except OSError as e:
                # Another worker unlinked the file between the O_PATH open and its fstat: the
                # daemon has let the deleted inode go (design §9.7), so the O_PATH answers
                # ESTALE, the documented answer for a descriptor of a deleted file.
                if e.errno in (errno.ESTALE, errno.EIO) and not os.path.lexists(p):
                    self.count(DOC_REOPEN, f"reopen.identify {errno.errorcode[e.errno]}")
                    return
                raise
            if opid.handle is None:
                self.count("reopen.identity", "no file handle (st_dev, st_ino only)")
            if self.rng.random() < 0.5:
                try:
                    os.unlink(p)
                    unlinked_here = True
                    self.count("reopen.unlink", "ok")
                except OSError as e:
                    self.oserror("reopen.unlink", e, p, False)
            acc = self.rng.choice(["r", "rw", "w"])
            flags = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[acc]
            fd = os.open(f"/proc/self/fd/{opath}", flags)
            try:
                if acc != "r" and self.rng.random() < 0.7:
                    self.fd_op(fd, p, self.rng.choice(["write", "ftruncate", "pwrite"]))
            except OSError as e:
                e.reopened = opid
                raise
            finally:
                self.add_fd(fd, p + " (reopened)", acc, reopened=opid)
        except OSError as e:
            if not hasattr(e, "reopened"):
                e.opath = opid
                if opid is not None and e.errno in (errno.ESTALE, errno.EIO, errno.ENOMEM):
                    opid.judge_deleted(opath, unlinked_here)
            raise
        finally:
            os.close(opath)

    def fd_op(self, fd, path, kind):
        before = self.root_before(self.fstat_or_none(fd)) if self.root else None
        try:
            if kind == "write":
                os.write(fd, self.data(self.size()))
            elif kind == "pwrite":
                os.pwrite(fd, self.data(self.size(64 * KIB)), self.rng.randrange(4096 * KIB))
            elif kind == "ftruncate":
                os.ftruncate(fd, self.rng.choice([0, self.size(), self.rng.randrange(4096 * KIB)]))
        finally:
            self.note_given(before, self.fstat_or_none(fd), path)

    def op_fd_data(self):
        kind = self.rng.choice(["write", "write", "pwrite", "pwrite", "ftruncate", "fallocate", "fsync",
                                "read", "pread", "seek", "fstat", "close", "direct"])
        need = {"write": "w", "pwrite": "w", "ftruncate": "w", "fallocate": "w", "direct": "any",
                "read": "r", "pread": "r", "seek": "any", "fsync": "any", "fstat": "all", "close": "all"}[kind]
        f = self.pick_fd(need)
        if f is None:
            return self.guard("open", self.op_open)
        op = f"fd.{kind}"
        if op in self.skip:
            return
        try:
            if f.direct and kind in ("write", "pwrite", "read", "pread"):
                kind, op = "direct", "fd.direct"
            if kind in ("write", "pwrite", "ftruncate"):
                self.fd_op(f.fd, f.path, kind)
            elif kind == "fallocate":
                mode = self.rng.choice([0, 0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                        FALLOC_FL_ZERO_RANGE])
                before = self.root_before(self.fstat_or_none(f.fd)) if self.root else None
                off, n = self.rng.randrange(2048) * 4 * KIB, self.size(1024 * KIB)
                flush_call("fallocate", lambda: check_c(libc.fallocate(f.fd, mode, off, n), "fallocate"), f.ident)
                self.note_given(before, self.fstat_or_none(f.fd), f.path)
            elif kind == "fsync":
                call = os.fsync if self.rng.random() < 0.5 else os.fdatasync
                flush_call(call.__name__, lambda: call(f.fd), f.ident)
            elif kind == "read":
                os.read(f.fd, self.size())
            elif kind == "pread":
                os.pread(f.fd, self.size(), self.rng.randrange(4096 * KIB))
            elif kind == "seek":
                try:
                    os.lseek(f.fd, self.rng.randrange(4096 * KIB), self.rng.choice([SEEK_DATA, SEEK_HOLE, 0, 2]))
                except OSError as e:
                    if e.errno != errno.ENXIO:
                        raise
            elif kind == "fstat":
                os.fstat(f.fd)
            elif kind == "close":
                self.close_fd(f)
                return
            elif kind == "direct":
                self.direct_io(f)
            self.count(op, "ok")
        except OSError as e:
            self.oserror(op, e, f"{f.path} [fd {f.acc}{' O_DIRECT' if f.direct else ''}]", True, f.reopened)

    def direct_io(self, f):
        """O_DIRECT-style I/O with a page-aligned buffer at block-aligned offsets."""
        n = 4096 * self.rng.choice([1, 2, 16])
        buf = mmap.mmap(-1, n)
        try:
            off = 4096 * self.rng.randrange(256)
            if f.writable() and (not f.readable() or self.rng.random() < 0.5):
                buf.write(self.data(n))
                before = self.root_before(self.fstat_or_none(f.fd)) if self.root else None
                try:
                    flush_call("pwritev", lambda: os.pwritev(f.fd, [buf], off), f.ident)
                except OSError as e:
                    raise retag(e, OSError(e.errno, f"{e.strerror} (pwritev of {n} bytes at {off})")) from None
                finally:
                    self.note_given(before, self.fstat_or_none(f.fd), f.path)
            else:
                try:
                    flush_call("preadv", lambda: os.preadv(f.fd, [buf], off), f.ident)
                except OSError as e:
                    raise retag(e, OSError(e.errno, f"{e.strerror} (preadv of {n} bytes at {off})")) from None
        finally:
            buf.close()

    def op_mmap(self):
        """mmap in a forked child (a SIGBUS must not end this worker): shared or private,
        write through the map, msync. The files only this worker sizes (MMAP_FILES of
        MMAP_SIZE, made sparse at the start) are written whole through a shared map, so that a
        limit that does not bind mapped writes shows as a tenant far above it; the bytes are
        read back through the descriptor and compared."""
        private_file = self.rng.random() < 0.5
        reopened = None
        if private_file:
            self.mmap_seq += 1
            p = f"{self.private}/m{self.mmap_seq % MMAP_FILES}"
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        else:
            f = self.pick_fd("r")
            if f is None:
                return self.guard("open", self.op_open)
            p, fd, reopened = f.path, os.dup(f.fd), f.reopened
        try:
            self.mmap_fd(p, fd, private_file, reopened)
        except OSError as e:
            e.reopened = reopened
            raise
        finally:
            fid = ident(fd)
            try:
                flush_call("close", lambda: os.close(fd), fid)
            except OSError as e:
                self.oserror("close", e, p, True, reopened)

    def refused_writeback(self, fd_ident, code, how):
        """A mapping's write-back refused (`code`: EDQUOT or EIO), as this worker saw it: one
        line appended to the shared log, for the test to accept the EIO that the next flush
        of that inode by any process answers (docs/design.md §4 "Writes")."""
        if fd_ident is None:
            return
        self.count("mmap.refused-writeback", f"{how} {errno.errorcode.get(code, code)}")
        line = f"{fd_ident[0]} {fd_ident[1]} {errno.errorcode.get(code, code)} {self.name} " \
               f"{round(time.monotonic() - self.t0, 3)}\n"
        log = os.open(self.wb_log, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(log, line.encode())
        finally:
            os.close(log)

    def mmap_fd(self, p, fd, private_file, reopened):
        st = os.fstat(fd)
        fid = (st.st_dev, st.st_ino)
        if not (st.st_mode & 0o170000 == 0o100000):
            self.count("mmap", "not-a-file")
            return
        shared = self.rng.random() < 0.7
        length = min(st.st_size, 2048 * KIB)
        if private_file:
            shared, length = True, st.st_size
        if length == 0:
            self.count("mmap", "empty")
            return
        writable = (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) == os.O_RDWR
        before = self.root_before(self.fstat_or_none(fd)) if self.root else None
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code, call = -2, "mmap"
            try:
                os.close(r)
                code, call = self.mmap_child(fd, length, shared, writable or not shared, private_file)
            finally:
                os.write(w, struct.pack("i8s", code, call.encode()))
                os._exit(0)
        os.close(w)
        res = os.read(r, 12)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        self.note_given(before, self.fstat_or_none(fd), p)
        op = "mmap.shared" if shared else "mmap.private"
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
            self.count(op, sig)
            if private_file:
                self.fail(op, "signal", sig, p, f"child died of {sig} on a {length}-byte file only it sizes")
            if shared and writable:
                # Pages it dirtied before it died are written back now, and a refusal is
                # seen here (the same open file description as the child's).
                try:
                    os.fdatasync(fd)
                except OSError as e:
                    if e.errno in (errno.EDQUOT, errno.EIO):
                        self.refused_writeback(fid, e.errno, "fdatasync after the child died")
                    else:
                        self.oserror("mmap.fdatasync", e, p, True, reopened)
            return
        code, call = struct.unpack("i8s", res) if len(res) == 12 else (-1, b"")
        call = call.rstrip(b"\0").decode()
        if code == 0:
            self.count(op, "ok")
        elif code > 0:
            e = OSError(code, f"{os.strerror(code)} ({call})")
            if call == "msync" and code in (errno.EDQUOT, errno.EIO):
                self.refused_writeback(fid, code, "msync")
                if code == errno.EIO:
                    e.flush = ("msync", [list(fid)])
            self.oserror(op, e, p, True, reopened)
        elif code == -2:
            # Python refuses to map past the end: another worker shrank the file meanwhile.
            self.count(op, "shrunk")
            if private_file:
                self.fail(op, "exception", None, p, "mmap of a file only this worker sizes failed")
        else:
            self.count(op, "data")
            self.fail(op, "data", None, p, "bytes written through a shared map differ when read back")

    def mmap_child(self, fd, length, shared, write, verify):
        """Returns (0, ""), (errno, the call that failed: mmap, msync or pread), or (-1, "data")
        for a data mismatch (shared map of own file only); raises ValueError if the file is now
        shorter than `length`."""
        call = "mmap"
        try:
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if write else 0)
            m = mmap.mmap(fd, length, flags=mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE, prot=prot)
            pattern = self.data(1)
            stride = 4096 * (1 if verify else self.rng.choice([1, 3, 7]))
            if write:
                for off in range(0, length, stride):
                    m[off:off + 1] = pattern
            else:
                sum(m[off] for off in range(0, length, 4096))
            if shared and write:
                call = "msync"
                m.flush()
            call = "munmap"
            m.close()
            if shared and write and verify:
                call = "pread"
                for off in range(0, length, stride):
                    if os.pread(fd, 1, off) != pattern:
                        return -1, "data"
            return 0, ""
        except OSError as e:
            return e.errno, call

    def op_private_roundtrip(self):
        """A reader opened first, then a writer of the same file: the reader sees the write."""
        p = f"{self.private}/p"
        r = os.open(p, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            w = os.open(p, self.rng.choice([os.O_RDWR, os.O_WRONLY, os.O_WRONLY | os.O_APPEND]))
            try:
                n = self.size(256 * KIB)
                off = self.rng.randrange(1024 * KIB)
                buf = bytes(self.rng.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1)
                buf = buf[:n]
                if os.fstat(w).st_size > 2048 * KIB:
                    os.ftruncate(w, 0)
                try:
                    written = os.pwrite(w, buf, off)
                except OSError as e:
                    if e.errno != errno.EDQUOT:
                        raise
                    written = 0
                if written and not (fcntl.fcntl(w, fcntl.F_GETFL) & os.O_APPEND):
                    got = os.pread(r, written, off)
                    if got != buf[:written]:
                        self.count("roundtrip", "data")
                        self.fail("roundtrip", "data", None, p,
                                  f"wrote {written} bytes at {off}, the reader opened before read {len(got)} "
                                  f"bytes, first difference at {next((i for i in range(len(got)) if got[i] != buf[i]), len(got))}")
                        return
            finally:
                os.close(w)
        finally:
            os.close(r)
        self.count("roundtrip", "ok")

    def op_path(self):
        kind = self.rng.choice(["write_file", "write_file", "unlink", "rename", "rename", "rename2", "link",
                                "symlink", "mkdir", "rmdir", "chmod", "truncate", "stat", "readdir",
                                "copy_file_range", "splice", "clone", "unlink_open", "readlink", "utime"]
                               + (["chown", "chown"] if self.root else []))
        op = f"path.{kind}"
        p = self.path()
        if op in self.skip:
            return
        try:
            getattr(self, f"p_{kind}")(p)
            self.count(op, "ok")
        except OSError as e:
            self.oserror(op, e, p, False)

    def p_write_file(self, p):
        flags = os.O_WRONLY | os.O_CREAT | self.rng.choice([os.O_TRUNC, os.O_APPEND, 0])
        existed = self.stat_or_none(p) is not None
        fd = os.open(p, flags, 0o666)
        fid = ident(fd)
        before = None
        try:
            if self.root:
                st0 = self.root_before(self.fstat_or_none(fd))
                before = st0 if existed else None
            os.write(fd, self.data(self.size()))
            if self.rng.random() < 0.1:
                flush_call("fsync", lambda: os.fsync(fd), fid)
        finally:
            self.note_given(before, self.fstat_or_none(fd), p)
            close_flushing(fd, fid)

    def p_unlink(self, p):
        os.unlink(p)

    def p_rename(self, p):
        if self.rng.random() < 0.2:
            p = f"{self.base()}/{self.rng.choice(DIRS)}"
        q = self.path() if self.rng.random() < 0.8 else f"{self.base()}/{self.rng.choice(DIRS)}"
        self.note_moved(p, q)
        os.rename(p, q)

    def p_rename2(self, p):
        q = self.path()
        flag = self.rng.choice([RENAME_NOREPLACE, RENAME_EXCHANGE])
        self.note_moved(p, q)
        if flag == RENAME_EXCHANGE:
            self.note_moved(q, p)
        check_c(libc.renameat2(AT_FDCWD, p.encode(), AT_FDCWD, q.encode(), flag), "renameat2")

    def note_moved(self, p, q):
        """Root only: a file moved into a project by root is exempt from its limit (counted
        whether or not the rename then succeeds: an upper bound)."""
        if self.root and self.project_of(q) and self.project_of(q) != self.project_of(p):
            st = self.stat_or_none(p)
            if st is not None:
                k = f"project:{self.project_of(q)}"
                self.given[k] = self.given.get(k, 0) + st.st_blocks * 512
                self.given["inodes:" + k] = self.given.get("inodes:" + k, 0) + 1

    def p_link(self, p):
        os.link(p, self.path(), follow_symlinks=False)

    def p_symlink(self, p):
        os.symlink(self.rng.choice(NAMES + ["../" + n for n in NAMES] + ["d0/n0", "../d1"]), p)

    def p_mkdir(self, p):
        os.mkdir(f"{self.base()}/{self.rng.choice(DIRS)}", self.rng.choice([0o777, 0o755, 0o1777]))

    def p_rmdir(self, p):
        os.rmdir(f"{self.base()}/{self.rng.choice(DIRS)}")

    def p_chmod(self, p):
        if self.rng.random() < 0.2:
            p = f"{self.base()}/{self.rng.choice(DIRS)}"
        os.chmod(p, self.rng.choice([0o666, 0o644, 0o600, 0o777, 0o755, 0o444]))

    def p_chown(self, p):
        # Never to the two tightly limited tenants: what root gives them would loosen the check
        # that they stay within their limits.
        uid = self.rng.choice([0, 1003, 1004])
        before = self.stat_or_none(p)
        os.chown(p, uid, uid, follow_symlinks=False)
        st = self.stat_or_none(p)
        if st is not None and st.st_uid != 0 and (before is None or before.st_uid != st.st_uid):
            k = f"user:{st.st_uid}"
            self.given[k] = self.given.get(k, 0) + st.st_blocks * 512
            for k in (f"inodes:user:{st.st_uid}", "inodes:chowned"):
                self.given[k] = self.given.get(k, 0) + 1

    def p_truncate(self, p):
        before = self.stat_or_none(p) if self.root else None
        os.truncate(p, self.rng.choice([0, self.size(), self.rng.randrange(4096 * KIB)]))
        self.note_given(before, self.stat_or_none(p), p)

    def p_stat(self, p):
        os.lstat(p)
        os.stat(p)

    def p_readdir(self, p):
        d = self.dirpath()
        for e in os.scandir(d):
            e.stat(follow_symlinks=False)

    def p_readlink(self, p):
        os.readlink(p)

    def p_utime(self, p):
        os.utime(p, follow_symlinks=False)

    def p_copy_file_range(self, p):
        src = os.open(p, os.O_RDONLY)
        sid = ident(src)
        try:
            q = self.path()
            dst = os.open(q, os.O_WRONLY | os.O_CREAT, 0o666)
            did = ident(dst)
            before = None
            try:
                before = self.root_before(self.fstat_or_none(dst)) if self.root else None
                n, off_in, off_out = self.size(), self.rng.randrange(64 * KIB), self.rng.randrange(512 * KIB)
                flush_call("copy_file_range", lambda: os.copy_file_range(src, dst, n, off_in, off_out), sid, did)
            finally:
                self.note_given(before, self.fstat_or_none(dst), q)
                close_flushing(dst, did)
        finally:
            close_flushing(src, sid)

    def p_splice(self, p):
        src = os.open(p, os.O_RDONLY)
        sid = ident(src)
        try:
            q = self.path()
            dst = os.open(q, os.O_WRONLY | os.O_CREAT, 0o666)
            did = ident(dst)
            r, w = os.pipe()
            before = None
            try:
                before = self.root_before(self.fstat_or_none(dst)) if self.root else None
                off_src = self.rng.randrange(64 * KIB)
                n = flush_call("splice", lambda: os.splice(src, w, 60 * KIB, offset_src=off_src), sid)
                off = self.rng.randrange(512 * KIB)
                while n > 0:
                    done = flush_call("splice", lambda: os.splice(r, dst, n, offset_dst=off), did)
                    if done == 0:
                        break
                    n, off = n - done, off + done
            finally:
                os.close(r)
                os.close(w)
                self.note_given(before, self.fstat_or_none(dst), q)
                close_flushing(dst, did)
        finally:
            close_flushing(src, sid)

    def p_clone(self, p):
        """FICLONE / FICLONERANGE / FIDEDUPERANGE: ext4 has no reflink: an errno, never EIO."""
        src = os.open(p, os.O_RDONLY)
        sid = ident(src)
        try:
            dst = os.open(self.path(), os.O_RDWR | os.O_CREAT, 0o666)
            did = ident(dst)
            try:
                which = self.rng.randrange(3)
                if which == 0:
                    fcntl.ioctl(dst, FICLONE, src)
                elif which == 1:
                    fcntl.ioctl(dst, FICLONERANGE, struct.pack("qQQQ", src, 0, 4096, 0))
                else:
                    # struct file_dedupe_range with one file_dedupe_range_info
                    arg = bytearray(struct.pack("QQHHI", 0, 4096, 1, 0, 0) + struct.pack("qQQiI", dst, 0, 0, 0, 0))
                    fcntl.ioctl(src, FIDEDUPERANGE, arg)
                    status = struct.unpack_from("i", arg, 24 + 24)[0]
                    if status < 0 and -status in FATAL:
                        raise OSError(-status, "FIDEDUPERANGE status")
            finally:
                close_flushing(dst, did)
        finally:
            close_flushing(src, sid)

    def p_unlink_open(self, p):
        """Open, write, unlink while open, write more, read it back, close."""
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o666)
        fid = ident(fd)
        try:
            if self.root:
                self.root_before(os.fstat(fd))
            os.write(fd, self.data(self.size()))
            os.unlink(p)
            os.pwrite(fd, self.data(self.size()), self.rng.randrange(256 * KIB))
            os.pread(fd, 4096, 0)
            os.fstat(fd)
        finally:
            close_flushing(fd, fid)

    # ---- the loop ----

    def step(self):
        r = self.rng.random()
        if r < 0.15:
            self.guard("open", self.op_open)
        elif r < 0.45:
            self.op_fd_data()
        elif r < 0.85:
            self.op_path()
        elif r < 0.91:
            self.guard("reopen", self.op_open_path_reopen)
        elif r < 0.96:
            self.guard("mmap", self.op_mmap)
        else:
            self.guard("roundtrip", self.op_private_roundtrip)

    def guard(self, op, fn):
        if op in self.skip:
            return
        try:
            fn()
            if op in ("open", "reopen"):
                self.count(op, "ok")
        except OSError as e:
            self.oserror(op, e, getattr(e, "filename", None), False)

    def run(self):
        self.t0 = time.monotonic()
        os.umask(0)
        # Sized while the subject is still under its limits (truncating up allocates nothing,
        # and is refused only once a subject is over a limit).
        for k in range(MMAP_FILES):
            try:
                fd = os.open(f"{self.private}/m{k}", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    os.ftruncate(fd, MMAP_SIZE)
                finally:
                    os.close(fd)
                self.count("mmap.setup", "ok")
            except OSError as e:
                self.oserror("mmap.setup", e, f"{self.private}/m{k}", False)
        deadline = self.t0 + self.secs
        while time.monotonic() < deadline:
            self.ops += 1
            try:
                self.step()
            except Skip:
                self.count("root.skip", "low-space" if self.space_low else "tight-owner")
            except Exception as e:  # a bug in this script, not a file system error
                self.fail("step", "exception", None, None, f"{e!r}: {traceback.format_exc()[-800:]}")
                self.exceptions += 1
                if self.exceptions > 20:
                    break
        for f in list(self.fds.values()):
            self.close_fd(f)
        return {"worker": self.name, "uid": self.uid, "seed": self.seed, "ops": self.ops,
                "secs": round(time.monotonic() - self.t0, 3), "counts": self.counts,
                "failure_kinds": self.failure_kinds, "failures": self.failures, "failure_count": self.failure_count,
                "flush_eio": self.flush_eio,
                "given": self.given}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--secs", type=float, required=True)
    ap.add_argument("--bases", required=True, help="comma-separated directories to work in")
    ap.add_argument("--private", required=True, help="a directory only this worker writes in")
    ap.add_argument("--wb-log", required=True, help="the shared log of refused write-backs (appended to)")
    ap.add_argument("--root", action="store_true", help="a root worker: chown too, and count what it gives")
    ap.add_argument("--skip", default="", help="ops not to do, comma-separated (open, reopen, mmap, roundtrip, "
                                               "path.KIND): to tell which kind of operation causes a failure")
    a = ap.parse_args()
    w = Worker(a)
    out = w.run()
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
