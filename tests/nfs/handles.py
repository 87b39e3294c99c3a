#!/usr/bin/env python3
"""File handles the way an NFS server uses them (name_to_handle_at / open_by_handle_at), for
tests/nfs_export.rs.

  handles.py get PATH               -> "TYPE HEX" of PATH's handle
  handles.py open MOUNT TYPE HEX    -> "ok <first 64 bytes>" / "dir" / "err ERRNO-NAME"
  handles.py fuse NODEID GEN        -> "TYPE HEX": the handle FUSE encodes for a node id
                                       (fuse_encode_fh: type 0x81, nodeid hi, lo, generation)
"""
import ctypes
import errno
import os
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)


class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128)]


def get(path):
    fh = FileHandle(128, 0)
    mount_id = ctypes.c_int(0)
    if libc.name_to_handle_at(-100, path.encode(), ctypes.byref(fh), ctypes.byref(mount_id), 0) != 0:
        e = ctypes.get_errno()
        sys.exit(f"name_to_handle_at {path}: {os.strerror(e)}")
    print(fh.handle_type, bytes(fh.f_handle[: fh.handle_bytes]).hex())


def open_(mount, htype, hexbytes):
    raw = bytes.fromhex(hexbytes)
    fh = FileHandle(len(raw), int(htype))
    ctypes.memmove(fh.f_handle, raw, len(raw))
    mfd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    fd = libc.open_by_handle_at(mfd, ctypes.byref(fh), os.O_RDONLY)
    if fd < 0:
        print("err", errno.errorcode.get(ctypes.get_errno(), "?"))
        return
    try:
        data = os.read(fd, 64)
        print("ok", data.decode(errors="replace"))
    except IsADirectoryError:
        print("dir")


def fuse(nodeid, gen):
    nodeid, gen = int(nodeid), int(gen)
    print(0x81, struct.pack("<III", nodeid >> 32, nodeid & 0xFFFFFFFF, gen).hex())


if __name__ == "__main__":
    {"get": get, "open": open_, "fuse": fuse}[sys.argv[1]](*sys.argv[2:])
