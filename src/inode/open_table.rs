//! The open-file table a supervised mount keeps for its serving processes (docs/design.md
//! §18): one record per open file handle, written through to a memfd the supervisor created and
//! holds, so that a process taking over the connection can serve handles its predecessor
//! issued. The fh *is* the slot: slot `s` is fh `s + 1`.
//!
//! # Format
//! The memfd holds `SLOTS` records of `RECORD` (64) bytes each, native-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | state: 0 free, `LIVE` in use |
//! | 4 | 4 | the open's flags (`O_ACCMODE`, `O_APPEND`, `O_SYNC`/`O_DSYNC`) |
//! | 8 | 8 | node id the open was made on |
//! | 16 | 4 | backing index |
//! | 20 | 4 | ext4 inode generation |
//! | 24 | 8 | ext4 inode number |
//! | 32 | 12 | opener's uid, gid, pid |
//! | 44 | 4 | FNV-1a of bytes 0..44 |
//! | 48 | 16 | zero |
//!
//! A record is written with one `pwrite` at a 64-byte aligned offset (inside one page of a
//! tmpfs file): a process killed around it leaves the old record or the new one, never a mix;
//! the checksum refuses anything else. A release writes the slot all zero. The file is sparse:
//! pages are allocated only where records were written.
//!
//! # What it is trusted for
//! Only the serving processes write it (the memfd is not reachable from the mount or by any
//! tenant). Nothing in a record is taken on trust beyond that: a process that reopens one
//! resolves the node id afresh and refuses (ESTALE) if the inode it finds is not the recorded
//! backing, number and generation, so a freed and reused inode number never lends an old
//! handle to a new file.

use std::os::fd::{AsFd, OwnedFd};

use parking_lot::Mutex;

use crate::backing::creds::Caller;
use crate::backing::{Errno, sys};
use crate::ids::{BackingIndex, InodeRef};

/// Slots in the table: the most open file handles a supervised mount can carry across a
/// takeover (more are served, with handles that do not outlive the process: EBADF after it).
pub const SLOTS: u32 = 1 << 18;
/// Bytes per record.
pub const RECORD: usize = 64;
/// Handles not in the table start here, above every slot's fh.
pub const FIRST_UNRECORDED: u64 = 1 << 32;
const LIVE: u32 = 0x4f50_454e; // "OPEN"

/// One open file handle as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenRecord {
    pub node: u64,
    pub key: InodeRef,
    pub flags: i32,
    pub opener: Caller,
}

impl OpenRecord {
    fn encode(&self) -> [u8; RECORD] {
        let mut b = [0u8; RECORD];
        b[0..4].copy_from_slice(&LIVE.to_ne_bytes());
        b[4..8].copy_from_slice(&self.flags.to_ne_bytes());
        b[8..16].copy_from_slice(&self.node.to_ne_bytes());
        b[16..20].copy_from_slice(&u32::from(self.key.backing.0).to_ne_bytes());
        b[20..24].copy_from_slice(&self.key.generation.to_ne_bytes());
        b[24..32].copy_from_slice(&self.key.ino.to_ne_bytes());
        b[32..36].copy_from_slice(&self.opener.uid.to_ne_bytes());
        b[36..40].copy_from_slice(&self.opener.gid.to_ne_bytes());
        b[40..44].copy_from_slice(&self.opener.pid.to_ne_bytes());
        let sum = fnv(&b[..44]);
        b[44..48].copy_from_slice(&sum.to_ne_bytes());
        b
    }

    /// The record in `b`; None for a free slot or one that does not check out.
    fn decode(b: &[u8]) -> Option<OpenRecord> {
        let u32_at = |o: usize| b.get(o..o + 4).and_then(|s| s.try_into().ok()).map(u32::from_ne_bytes);
        let u64_at = |o: usize| b.get(o..o + 8).and_then(|s| s.try_into().ok()).map(u64::from_ne_bytes);
        if u32_at(0)? != LIVE || u32_at(44)? != fnv(b.get(..44)?) {
            return None;
        }
        Some(OpenRecord {
            flags: u32_at(4)? as i32,
            node: u64_at(8)?,
            key: InodeRef {
                backing: BackingIndex(u8::try_from(u32_at(16)?).ok()?),
                generation: u32_at(20)?,
                ino: u64_at(24)?,
            },
            opener: Caller { uid: u32_at(32)?, gid: u32_at(36)?, pid: u32_at(40)? },
        })
    }
}

fn fnv(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

fn slot_of(fh: u64) -> Option<u32> {
    u32::try_from(fh.checked_sub(1)?).ok().filter(|s| *s < SLOTS)
}

fn offset(slot: u32) -> u64 {
    u64::from(slot) * RECORD as u64
}

/// Creates the table's memfd (empty, `SLOTS` records long, sparse), inherited across exec:
/// what the supervisor does once per connection.
pub fn create() -> Result<OwnedFd, Errno> {
    let fd = sys::memfd_inheritable(c"quotafs-open-files")?;
    sys::truncate_fd(fd.as_fd(), offset(SLOTS))?;
    Ok(fd)
}

/// The table of one serving process: the memfd and which slots are free.
#[derive(Debug)]
pub struct OpenTable {
    fd: OwnedFd,
    free: Mutex<Free>,
}

#[derive(Debug)]
struct Free {
    /// Slots released below `next`.
    list: Vec<u32>,
    /// No slot at or above it is in use.
    next: u32,
}

impl OpenTable {
    /// Takes over the table in `fd`: returns it with the records its predecessors left (fh →
    /// record), whose slots stay taken until released. Slots that do not check out are freed.
    pub fn adopt(fd: OwnedFd) -> Result<(OpenTable, Vec<(u64, OpenRecord)>), Errno> {
        let mut live = Vec::new();
        let mut list = Vec::new();
        let mut next = 0;
        let mut buf = vec![0u8; 1 << 20];
        let per_chunk = (buf.len() / RECORD) as u32;
        let mut slot = 0u32;
        while slot < SLOTS {
            let n = sys::pread(fd.as_fd(), &mut buf, offset(slot))?;
            if n == 0 {
                break;
            }
            for (i, rec) in buf[..n].chunks_exact(RECORD).enumerate() {
                let s = slot + i as u32;
                match OpenRecord::decode(rec) {
                    Some(r) => {
                        live.push((u64::from(s) + 1, r));
                        list.extend(next..s);
                        next = s + 1;
                    }
                    None if rec.iter().any(|b| *b != 0) => {
                        tracing::warn!(slot = s, "open-file table: a record that does not check out; slot freed");
                        sys::pwrite(fd.as_fd(), &[0u8; RECORD], offset(s))?;
                    }
                    None => {}
                }
            }
            slot += per_chunk.min((n / RECORD) as u32).max(1);
        }
        list.reverse();
        Ok((OpenTable { fd, free: Mutex::new(Free { list, next }) }, live))
    }

    /// Records an open; returns its fh. None when every slot is taken or the write failed (the
    /// caller then issues a handle that does not outlive this process).
    pub fn record(&self, rec: &OpenRecord) -> Option<u64> {
        let slot = {
            let mut free = self.free.lock();
            match free.list.pop() {
                Some(s) => s,
                None if free.next < SLOTS => {
                    free.next += 1;
                    free.next - 1
                }
                None => return None,
            }
        };
        match sys::pwrite(self.fd.as_fd(), &rec.encode(), offset(slot)) {
            Ok(RECORD) => Some(u64::from(slot) + 1),
            r => {
                tracing::warn!(?r, "cannot write the open-file table; this handle will not outlive the process");
                self.free.lock().list.push(slot);
                None
            }
        }
    }

    /// Releases `fh`'s record (nothing for a handle not in the table).
    pub fn clear(&self, fh: u64) {
        let Some(slot) = slot_of(fh) else { return };
        if let Err(e) = sys::pwrite(self.fd.as_fd(), &[0u8; RECORD], offset(slot)) {
            // The slot stays taken: a record left live is reopened by a later process only if
            // the kernel still sends its fh, which it does not after the release.
            tracing::warn!(error = %e, fh, "cannot clear a released handle in the open-file table");
            return;
        }
        self.free.lock().list.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> OpenRecord {
        OpenRecord {
            node: n,
            key: InodeRef { backing: BackingIndex(1), ino: n + 11, generation: 7 },
            flags: libc::O_RDWR | libc::O_APPEND,
            opener: Caller { uid: 1001, gid: 1002, pid: 3 },
        }
    }

    #[test]
    fn records_survive_into_the_next_table_and_releases_free_their_slots() {
        let fd = create().unwrap();
        let (t, live) = OpenTable::adopt(fd.try_clone().unwrap()).unwrap();
        assert!(live.is_empty());
        let a = t.record(&rec(1)).unwrap();
        let b = t.record(&rec(2)).unwrap();
        let c = t.record(&rec(3)).unwrap();
        t.clear(b);
        drop(t);
        let (t, live) = OpenTable::adopt(fd).unwrap();
        assert_eq!(live, vec![(a, rec(1)), (c, rec(3))]);
        assert_eq!(t.record(&rec(4)), Some(b), "the released slot is reused");
        assert_eq!(t.record(&rec(5)), Some(c + 1), "slots in use are not");
    }

    #[test]
    fn a_record_that_does_not_check_out_is_not_reopened() {
        let fd = create().unwrap();
        let mut bytes = rec(1).encode();
        bytes[8] ^= 1;
        sys::pwrite(fd.as_fd(), &bytes, 0).unwrap();
        let (_, live) = OpenTable::adopt(fd).unwrap();
        assert!(live.is_empty());
        assert_eq!(slot_of(0), None);
        assert_eq!(slot_of(FIRST_UNRECORDED), None);
    }
}
