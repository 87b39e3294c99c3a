//! ONC RPC (RFC 5531) and XDR (RFC 4506) for the rquota program, as pure functions: a call
//! message in, a reply message out. Nothing here does I/O; every malformed input is an error
//! value, never a panic (the bytes come from any host that can reach the port).
//!
//! ```text
//! call   := xid u32 | CALL(0) u32 | rpcvers u32 (2) | prog u32 | vers u32 | proc u32
//!           | cred opaque_auth | verf opaque_auth | args
//! opaque_auth := flavor u32 | body opaque<400>          (XDR opaque: len u32, bytes, pad to 4)
//! AUTH_SYS body := stamp u32 | machinename string<255> | uid u32 | gid u32 | gids u32<16>
//! reply  := xid u32 | REPLY(1) u32 | MSG_ACCEPTED(0) u32 | verf opaque_auth (AUTH_NONE)
//!           | accept_stat u32 | (SUCCESS: results | PROG_MISMATCH: low u32 | high u32)
//!         | xid u32 | REPLY(1) u32 | MSG_DENIED(1) u32
//!           | (RPC_MISMATCH(0): low u32 | high u32 | AUTH_ERROR(1): auth_stat u32)
//! ```
//!
//! rquota (program 100011, from Linux quota-tools' rquota.x):
//! ```text
//! v1 getquota_args     := path string<1024> | uid i32
//! v2 ext_getquota_args := path string<1024> | type i32 (0 user, 1 group, 2 project) | id i32
//! getquota_rslt := status u32 (Q_OK 1, Q_NOQUOTA 2, Q_EPERM 3)
//!                  | (Q_OK: bsize i32 | active bool | bhard u32 | bsoft u32 | curblocks u32
//!                           | fhard u32 | fsoft u32 | curfiles u32 | btimeleft u32 | ftimeleft u32)
//! procedures: 1 GETQUOTA, 2 GETACTIVEQUOTA (both versions); 3 SETQUOTA, 4 SETACTIVEQUOTA
//! ```
//! Block counts are in units of `bsize` bytes; time left is in seconds (0: no grace running).

pub const PROGRAM: u32 = 100_011;
pub const VERSION_LOW: u32 = 1;
pub const VERSION_HIGH: u32 = 2;
/// The most a call may be: a path of 1024 bytes and two maximal credentials fit well inside.
pub const MAX_CALL: usize = 4096;

const CALL: u32 = 0;
const REPLY: u32 = 1;
const AUTH_NONE: u32 = 0;
const AUTH_SYS: u32 = 1;

/// What kind of subject a query names (rquota's `gqa_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaType {
    User,
    Group,
    Project,
}

/// A decoded GETQUOTA / GETACTIVEQUOTA call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub path: String,
    pub kind: QuotaType,
    pub id: u32,
}

/// Who asks: the AUTH_SYS credential, if the call carried one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

/// One quota, in bytes and inodes; `encode_quota` turns it into the protocol's units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub bytes_used: u64,
    pub bytes_soft: u64,
    pub bytes_hard: u64,
    pub inodes_used: u64,
    pub inodes_soft: u64,
    pub inodes_hard: u64,
    pub bytes_grace_left: u32,
    pub inodes_grace_left: u32,
}

/// The answer to a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Quota(Figures),
    NoQuota,
    NotPermitted,
}

/// What a call asks, once its header is understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Call {
    Get {
        xid: u32,
        caller: Option<Caller>,
        query: Query,
    },
    /// SETQUOTA and SETACTIVEQUOTA: limits are set on the server (`quotafs quota set`).
    Set {
        xid: u32,
    },
}

/// Why a call gets no `Get` answer; each maps to the reply RPC prescribes (`reply_error`).
#[derive(Debug, PartialEq, Eq)]
pub enum CallError {
    /// Too short or malformed before the xid is known: dropped without a reply.
    Unreadable,
    /// Not a call, or an RPC version other than 2.
    RpcMismatch {
        xid: u32,
    },
    ProgUnavail {
        xid: u32,
    },
    ProgMismatch {
        xid: u32,
    },
    ProcUnavail {
        xid: u32,
    },
    GarbageArgs {
        xid: u32,
    },
    BadCred {
        xid: u32,
    },
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let b = self.buf.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Variable-length opaque data of at most `max` bytes, padded to a multiple of 4.
    fn opaque(&mut self, max: usize) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > max {
            return None;
        }
        let padded = len.checked_add(3)? & !3;
        let b = self.buf.get(self.pos..self.pos.checked_add(len)?)?;
        if self.buf.len() < self.pos + padded {
            return None;
        }
        self.pos += padded;
        Some(b)
    }

    fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

fn auth_sys(body: &[u8]) -> Option<Caller> {
    let mut r = Reader { buf: body, pos: 0 };
    let _stamp = r.u32()?;
    let _machine = r.opaque(255)?;
    let uid = r.u32()?;
    let gid = r.u32()?;
    let n = r.u32()? as usize;
    if n > 16 {
        return None;
    }
    let gids = (0..n).map(|_| r.u32()).collect::<Option<Vec<u32>>>()?;
    r.done().then_some(Caller { uid, gid, gids })
}

/// Decodes one call message.
pub fn decode_call(buf: &[u8]) -> Result<Call, CallError> {
    if buf.len() > MAX_CALL {
        return Err(CallError::Unreadable);
    }
    let mut r = Reader { buf, pos: 0 };
    let xid = r.u32().ok_or(CallError::Unreadable)?;
    if r.u32().ok_or(CallError::Unreadable)? != CALL {
        return Err(CallError::Unreadable);
    }
    let rpcvers = r.u32().ok_or(CallError::GarbageArgs { xid })?;
    if rpcvers != 2 {
        return Err(CallError::RpcMismatch { xid });
    }
    let (prog, vers, proc_) = match (r.u32(), r.u32(), r.u32()) {
        (Some(p), Some(v), Some(n)) => (p, v, n),
        _ => return Err(CallError::GarbageArgs { xid }),
    };
    let cred_flavor = r.u32().ok_or(CallError::GarbageArgs { xid })?;
    let cred_body = r.opaque(400).ok_or(CallError::BadCred { xid })?;
    let _verf_flavor = r.u32().ok_or(CallError::GarbageArgs { xid })?;
    let _verf = r.opaque(400).ok_or(CallError::GarbageArgs { xid })?;
    if prog != PROGRAM {
        return Err(CallError::ProgUnavail { xid });
    }
    if !(VERSION_LOW..=VERSION_HIGH).contains(&vers) {
        return Err(CallError::ProgMismatch { xid });
    }
    let caller = match cred_flavor {
        AUTH_SYS => Some(auth_sys(cred_body).ok_or(CallError::BadCred { xid })?),
        _ => None,
    };
    match proc_ {
        0 => Err(CallError::ProcUnavail { xid }), // NULL is answered by `reply_null`
        1 | 2 => {
            let path = r.opaque(1024).ok_or(CallError::GarbageArgs { xid })?;
            let path = String::from_utf8_lossy(path).into_owned();
            let kind = if vers == 1 {
                QuotaType::User
            } else {
                match r.u32().ok_or(CallError::GarbageArgs { xid })? {
                    0 => QuotaType::User,
                    1 => QuotaType::Group,
                    2 => QuotaType::Project,
                    _ => return Err(CallError::GarbageArgs { xid }),
                }
            };
            let id = r.u32().ok_or(CallError::GarbageArgs { xid })?;
            if !r.done() {
                return Err(CallError::GarbageArgs { xid });
            }
            Ok(Call::Get { xid, caller, query: Query { path, kind, id } })
        }
        3 | 4 => Ok(Call::Set { xid }),
        _ => Err(CallError::ProcUnavail { xid }),
    }
}

/// Whether `buf` is a NULL call (procedure 0) of the program: answered with an empty success,
/// as every RPC server does (rpcinfo -u/-t probes it).
pub fn is_null_call(buf: &[u8]) -> Option<u32> {
    let mut r = Reader { buf, pos: 0 };
    let xid = r.u32()?;
    let fields = [r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?];
    (fields == [CALL, 2, PROGRAM, fields[3], 0] && (VERSION_LOW..=VERSION_HIGH).contains(&fields[3])).then_some(xid)
}

fn accepted(xid: u32, stat: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for w in [xid, REPLY, 0, AUTH_NONE, 0, stat] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out
}

/// The reply to a NULL call.
pub fn reply_null(xid: u32) -> Vec<u8> {
    accepted(xid, 0)
}

/// The reply RPC prescribes for `err`; `None` for a message too broken to answer.
pub fn reply_error(err: &CallError) -> Option<Vec<u8>> {
    let words: Vec<u32> = match *err {
        CallError::Unreadable => return None,
        CallError::RpcMismatch { xid } => vec![xid, REPLY, 1, 0, 2, 2],
        CallError::BadCred { xid } => vec![xid, REPLY, 1, 1, 1],
        CallError::ProgUnavail { xid } => return Some(accepted(xid, 1)),
        CallError::ProgMismatch { xid } => {
            let mut out = accepted(xid, 2);
            out.extend_from_slice(&VERSION_LOW.to_be_bytes());
            out.extend_from_slice(&VERSION_HIGH.to_be_bytes());
            return Some(out);
        }
        CallError::ProcUnavail { xid } => return Some(accepted(xid, 3)),
        CallError::GarbageArgs { xid } => return Some(accepted(xid, 4)),
    };
    Some(words.iter().flat_map(|w| w.to_be_bytes()).collect())
}

/// The smallest block size (1 KiB or a power of two above) in which every block figure fits
/// an unsigned 32-bit count.
fn block_size(f: &Figures) -> u64 {
    let largest = f.bytes_used.max(f.bytes_soft).max(f.bytes_hard);
    let mut bsize = 1024u64;
    while largest.div_ceil(bsize) > u64::from(u32::MAX) {
        bsize *= 2;
    }
    bsize
}

/// The successful reply to a GETQUOTA carrying `answer`. SETQUOTA gets `Q_EPERM`.
pub fn reply_quota(xid: u32, answer: Answer) -> Vec<u8> {
    let mut out = accepted(xid, 0);
    let mut put = |w: u32| out.extend_from_slice(&w.to_be_bytes());
    match answer {
        Answer::NoQuota => put(2),
        Answer::NotPermitted => put(3),
        Answer::Quota(f) => {
            let bsize = block_size(&f);
            let blocks = |b: u64| u32::try_from(b.div_ceil(bsize)).unwrap_or(u32::MAX);
            let files = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
            put(1);
            put(bsize as u32);
            put(1); // active
            put(blocks(f.bytes_hard));
            put(blocks(f.bytes_soft));
            put(blocks(f.bytes_used));
            put(files(f.inodes_hard));
            put(files(f.inodes_soft));
            put(files(f.inodes_used));
            put(f.bytes_grace_left);
            put(f.inodes_grace_left);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    fn opaque(b: &[u8]) -> Vec<u8> {
        let mut out = (b.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(b);
        out.resize(4 + b.len().div_ceil(4) * 4, 0);
        out
    }

    fn auth_sys_cred(uid: u32, gid: u32, gids: &[u32]) -> Vec<u8> {
        let mut body = words(&[7]);
        body.extend(opaque(b"client"));
        body.extend(words(&[uid, gid, gids.len() as u32]));
        body.extend(words(gids));
        let mut out = words(&[AUTH_SYS]);
        out.extend(opaque(&body));
        out
    }

    fn call(vers: u32, proc_: u32, cred: Vec<u8>, args: Vec<u8>) -> Vec<u8> {
        let mut out = words(&[0x1234, CALL, 2, PROGRAM, vers, proc_]);
        out.extend(cred);
        out.extend(words(&[AUTH_NONE, 0]));
        out.extend(args);
        out
    }

    fn v2_args(path: &str, kind: u32, id: u32) -> Vec<u8> {
        let mut a = opaque(path.as_bytes());
        a.extend(words(&[kind, id]));
        a
    }

    #[test]
    fn decodes_v1_and_v2_getquota() {
        let mut v1 = opaque(b"/q");
        v1.extend(words(&[1001]));
        let c = decode_call(&call(1, 1, auth_sys_cred(1001, 100, &[5, 6]), v1)).unwrap();
        assert_eq!(
            c,
            Call::Get {
                xid: 0x1234,
                caller: Some(Caller { uid: 1001, gid: 100, gids: vec![5, 6] }),
                query: Query { path: "/q".into(), kind: QuotaType::User, id: 1001 }
            }
        );
        let c = decode_call(&call(2, 2, auth_sys_cred(0, 0, &[]), v2_args("/srv/x", 2, 42))).unwrap();
        assert!(matches!(c, Call::Get { query: Query { kind: QuotaType::Project, id: 42, .. }, .. }));
        let anon = decode_call(&call(2, 1, words(&[AUTH_NONE, 0]), v2_args("/", 1, 5))).unwrap();
        assert!(matches!(anon, Call::Get { caller: None, .. }));
    }

    #[test]
    fn every_truncation_and_every_byte_flip_is_an_error_or_a_call_never_a_panic() {
        let good = call(2, 1, auth_sys_cred(1001, 1001, &[1, 2, 3]), v2_args("/q/site", 0, 1001));
        for cut in 0..good.len() {
            assert!(decode_call(&good[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                let _ = decode_call(&b);
                let _ = is_null_call(&b);
            }
        }
        assert!(decode_call(&vec![0xff; MAX_CALL + 1]).is_err());
    }

    #[test]
    fn errors_get_the_replies_rpc_prescribes() {
        let bad_prog = {
            let mut c = call(2, 1, words(&[AUTH_NONE, 0]), v2_args("/", 0, 1));
            c[12..16].copy_from_slice(&100_003u32.to_be_bytes());
            c
        };
        assert_eq!(decode_call(&bad_prog), Err(CallError::ProgUnavail { xid: 0x1234 }));
        assert_eq!(
            decode_call(&call(3, 1, words(&[AUTH_NONE, 0]), vec![])),
            Err(CallError::ProgMismatch { xid: 0x1234 })
        );
        assert_eq!(
            decode_call(&call(2, 9, words(&[AUTH_NONE, 0]), vec![])),
            Err(CallError::ProcUnavail { xid: 0x1234 })
        );
        assert_eq!(
            decode_call(&call(2, 1, words(&[AUTH_NONE, 0]), v2_args("/", 7, 1))),
            Err(CallError::GarbageArgs { xid: 0x1234 })
        );
        let mismatch = reply_error(&CallError::ProgMismatch { xid: 9 }).unwrap();
        assert_eq!(mismatch, words(&[9, REPLY, 0, AUTH_NONE, 0, 2, 1, 2]));
        assert_eq!(reply_error(&CallError::Unreadable), None);
        assert_eq!(is_null_call(&call(1, 0, words(&[AUTH_NONE, 0]), vec![])), Some(0x1234));
    }

    #[test]
    fn figures_fit_in_32_bits_by_growing_the_block_size() {
        let f = Figures { bytes_used: 20 << 40, bytes_hard: 30 << 40, inodes_used: 5, ..Default::default() };
        let r = reply_quota(1, Answer::Quota(f));
        let w: Vec<u32> = r.chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(w[6], 1, "Q_OK");
        let bsize = u64::from(w[7]);
        assert!(bsize > 1024 && bsize.is_power_of_two());
        assert_eq!(u64::from(w[9]) * bsize, 30 << 40, "hard limit");
        assert_eq!(u64::from(w[11]) * bsize, 20 << 40, "used");
        assert_eq!(w[14], 5, "files");
        let small = reply_quota(1, Answer::Quota(Figures { bytes_used: 1, ..Default::default() }));
        assert_eq!(&small[28..32], &1024u32.to_be_bytes(), "1 KiB blocks when they fit");
        assert_eq!(&small[44..48], &1u32.to_be_bytes(), "1 byte rounds up to one block");
    }
}
