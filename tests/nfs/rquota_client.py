#!/usr/bin/env python3
"""A small rquota client (ONC RPC over UDP or TCP, XDR by hand) for tests/rquota.rs.

usage: rquota_client.py getport VERS PROTO
       rquota_client.py get VERS PROTO PORT CRED_UID KIND ID [PATH]   -> one JSON line
       rquota_client.py raw PROTO PORT HEX                             -> reply hex or "none"
         (HEX is sent as it is: over TCP it must carry its own record mark)
PROTO is udp or tcp; KIND is user, group or project (v1 knows only user).
"""
import json, os, socket, struct, sys

PROG, PMAP = 100011, 100000


def opaque(b):
    return struct.pack(">I", len(b)) + b + b"\0" * (-len(b) % 4)


def auth_sys(uid, gid):
    body = struct.pack(">I", 1) + opaque(b"client") + struct.pack(">III", uid, gid, 0)
    return struct.pack(">I", 1) + opaque(body)


def call(prog, vers, proc, cred, args, xid=None):
    xid = xid if xid is not None else int.from_bytes(os.urandom(4), "big")
    return xid, struct.pack(">IIIIII", xid, 0, 2, prog, vers, proc) + cred + struct.pack(">II", 0, 0) + args


def exchange(proto, port, msg, timeout=3, frame=True):
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.sendto(msg, ("127.0.0.1", port))
        try:
            return s.recv(65536)
        except socket.timeout:
            return None
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(struct.pack(">I", 0x80000000 | len(msg)) + msg if frame else msg)
    try:
        head = s.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return None
        n = struct.unpack(">I", head)[0] & 0x7FFFFFFF
        return s.recv(n, socket.MSG_WAITALL)
    except (socket.timeout, ConnectionResetError):
        return None


def getport(vers, proto):
    _, msg = call(PMAP, 2, 3, struct.pack(">II", 0, 0), struct.pack(">IIII", PROG, vers, 17 if proto == "udp" else 6, 0))
    r = exchange("udp", 111, msg)
    return struct.unpack(">I", r[-4:])[0]


def get(vers, proto, port, uid, kind, qid, path):
    kinds = {"user": 0, "group": 1, "project": 2}
    args = opaque(path.encode())
    args += struct.pack(">I", qid) if vers == 1 else struct.pack(">II", kinds[kind], qid)
    xid, msg = call(PROG, vers, 1, auth_sys(uid, uid), args)
    r = exchange(proto, port, msg)
    w = struct.unpack(">%dI" % (len(r) // 4), r)
    assert w[0] == xid and w[1] == 1 and w[2] == 0 and w[5] == 0, w
    status = {1: "ok", 2: "noquota", 3: "eperm"}[w[6]]
    out = {"status": status}
    if status == "ok":
        names = ["bsize", "active", "bhard", "bsoft", "curblocks", "fhard", "fsoft", "curfiles", "btimeleft", "ftimeleft"]
        out.update(dict(zip(names, w[7:17])))
    return out


def main():
    cmd = sys.argv[1]
    if cmd == "getport":
        print(getport(int(sys.argv[2]), sys.argv[3]))
    elif cmd == "get":
        vers, proto, port, uid, kind, qid = sys.argv[2:8]
        path = sys.argv[8] if len(sys.argv) > 8 else "/q"
        print(json.dumps(get(int(vers), proto, int(port), int(uid), kind, int(qid), path)))
    elif cmd == "raw":
        r = exchange(sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4]), timeout=1, frame=False)
        print(r.hex() if r else "none")


main()
