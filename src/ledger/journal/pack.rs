//! Record packs: many journal records in one extended attribute (docs/design.md §16.2).
//!
//! A record made as an empty file costs an ext4 create (inode allocation, directory entry) and,
//! at the next checkpoint, an unlink that frees the inode. A pack is one file per run of
//! records whose xattr `trusted.quotafs.records` holds them all; a record is added by
//! rewriting that value with the record appended (`fsetxattr`), one journaled metadata
//! operation on an inode already allocated: ext4 orders it before any later change exactly as
//! it orders a create (§16.1), and replaces the value atomically in its transaction.
//!
//! ```text
//! value  := magic "QFSJ" | version u8 (1) | record* | crc32(magic .. last record) u32
//! record := kind u8 | fields         as a log frame's body after its sequence number (§9.2)
//! ```
//! Pack files are named `p.<n>` (canonical decimal) in an epoch's directory. A value is kept
//! under `MAX_VALUE` so that it fits one 4 KiB xattr block; a file system that refuses a value
//! sooner (smaller blocks) ends the pack there, and the next record starts a new one.

use std::ffi::{CStr, CString};

use super::super::wal::{Record, decode_fields, encode_fields};
use crate::ids::BackingIndex;

/// The extended attribute of a pack file that holds its records.
pub const XATTR: &CStr = c"trusted.quotafs.records";
const MAGIC: &[u8; 4] = b"QFSJ";
const VERSION: u8 = 1;
const HEAD: usize = MAGIC.len() + 1;
const CRC: usize = 4;
/// The largest value written: one 4 KiB ext4 xattr block holds it beside the block header
/// (32 bytes), its entry (16 bytes of header and the name `quotafs.records` as ext4 stores it,
/// 15, rounded to 32) and the 4-byte end of the entry table: 4,036 of 4,096. Another xattr
/// in the same block (an inherited ACL, a security label) ends a pack sooner, through the
/// ENOSPC of `Packs::write`.
pub const MAX_VALUE: usize = 3968;

/// The file name of pack `n`.
pub fn name(n: u64) -> CString {
    CString::new(format!("p.{n}")).expect("digits have no NUL")
}

/// Whether `name` is a pack's file name.
pub fn is_pack(name: &[u8]) -> bool {
    name.strip_prefix(b"p.").is_some_and(|d| {
        !d.is_empty() && d.iter().all(u8::is_ascii_digit) && (d == b"0" || d[0] != b'0') && d.len() <= 20
    })
}

/// The records of one pack being written: the value without its checksum.
pub struct PackBuf {
    bytes: Vec<u8>,
}

impl Default for PackBuf {
    fn default() -> PackBuf {
        let mut bytes = Vec::with_capacity(MAX_VALUE);
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        PackBuf { bytes }
    }
}

impl PackBuf {
    /// Whether it holds no record yet.
    pub fn is_empty(&self) -> bool {
        self.bytes.len() == HEAD
    }

    /// Appends `rec` and returns the value to write, or None (and leaves the pack as it was)
    /// if the value would pass `MAX_VALUE`.
    pub fn push(&mut self, rec: &Record) -> Option<Vec<u8>> {
        let before = self.bytes.len();
        encode_fields(rec, &mut self.bytes);
        if self.bytes.len() + CRC > MAX_VALUE {
            self.bytes.truncate(before);
            return None;
        }
        let mut value = Vec::with_capacity(self.bytes.len() + CRC);
        value.extend_from_slice(&self.bytes);
        value.extend_from_slice(&crc32fast::hash(&self.bytes).to_le_bytes());
        Some(value)
    }

    /// Takes back the record the last `push` added (its write failed).
    pub fn pop(&mut self, len_before: usize) {
        self.bytes.truncate(len_before);
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// The records of a pack value read from backing `backing`'s journal, or None if it is not one
/// (wrong magic, version or checksum, a record that does not parse, or one naming another
/// backing).
pub fn decode(backing: BackingIndex, value: &[u8]) -> Option<Vec<Record>> {
    let (body, crc) = value.split_last_chunk::<CRC>()?;
    if body.len() < HEAD || &body[..MAGIC.len()] != MAGIC || body[MAGIC.len()] != VERSION {
        return None;
    }
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return None;
    }
    let mut rest = &body[HEAD..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let rec = decode_fields(&mut rest)?;
        let b = match rec {
            Record::Touch { inode, .. } => inode.backing,
            Record::DirDirty { dir } => dir.backing,
        };
        if b != backing {
            return None;
        }
        out.push(rec);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::InodeRef;

    fn touch(ino: u64) -> Record {
        let inode = InodeRef { backing: BackingIndex(1), ino, generation: 7 };
        Record::Touch { inode, uid: 1001, project: 3, bytes: 4096 * ino, birth: 2 }
    }

    #[test]
    fn a_pack_round_trips_until_it_is_full() {
        let mut p = PackBuf::default();
        assert!(p.is_empty());
        let mut written = Vec::new();
        let mut last = Vec::new();
        for ino in 1.. {
            let rec = if ino % 5 == 0 {
                Record::DirDirty { dir: InodeRef { backing: BackingIndex(1), ino, generation: 1 } }
            } else {
                touch(ino)
            };
            match p.push(&rec) {
                Some(v) => {
                    written.push(rec);
                    last = v;
                }
                None => break,
            }
        }
        assert!(last.len() <= MAX_VALUE && last.len() > MAX_VALUE - 40, "{}", last.len());
        assert_eq!(decode(BackingIndex(1), &last), Some(written.clone()));
        // A full pack stays as it was.
        assert_eq!(p.len() + CRC, last.len());
    }

    #[test]
    fn damaged_or_foreign_values_are_refused() {
        let mut p = PackBuf::default();
        let v = p.push(&touch(1)).unwrap();
        assert_eq!(decode(BackingIndex(1), &v), Some(vec![touch(1)]));
        // Another backing's records.
        assert_eq!(decode(BackingIndex(0), &v), None);
        // Any flipped byte, a cut value, an empty one.
        for i in 0..v.len() {
            let mut bad = v.clone();
            bad[i] ^= 0x20;
            assert_eq!(decode(BackingIndex(1), &bad), None, "byte {i}");
        }
        for cut in 0..v.len() {
            assert_eq!(decode(BackingIndex(1), &v[..cut]), None, "cut at {cut}");
        }
        // An empty pack (header and checksum only) holds no record.
        let mut empty = PackBuf::default().bytes;
        let crc = crc32fast::hash(&empty);
        empty.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(BackingIndex(1), &empty), Some(vec![]));
    }

    #[test]
    fn pack_names() {
        assert!(is_pack(name(0).as_bytes()));
        assert!(is_pack(name(u64::MAX).as_bytes()));
        for bad in ["p.", "p.01", "p.1x", "p", "t.1.2", "p.-1", "p.1 "] {
            assert!(!is_pack(bad.as_bytes()), "{bad}");
        }
    }
}
