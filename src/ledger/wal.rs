//! The activity log: an append-only file of framed records, one file per epoch, made durable
//! with group-committed `fdatasync` before the backing change it guards (docs/design.md §9).
//!
//! # Format (all integers little endian)
//! ```text
//! header  := magic "QFSALOG1" (8) | epoch u64 | crc32(magic | epoch) u32          = 20 bytes
//! frame   := len u32 | crc32(body) u32 | body                 len = body length in bytes
//! body    := seq u64 | kind u8 | fields
//! kind 1  Touch    := backing u8 | ino u64 | generation u32 | uid u32 | project u32 | bytes u64
//!                     | birth_epoch u64
//! kind 2  DirDirty := backing u8 | ino u64 | generation u32
//! ```
//! `seq` starts at 1 in each file and grows by exactly one per frame. The CRC is CRC-32
//! (IEEE, `crc32fast`).
//!
//! # Reading back
//! A log ends at its first frame that is short, fails its CRC, does not parse, or breaks the
//! sequence. If nothing valid follows, that is a torn tail (a power cut during the last batch):
//! it is cut and reported with its offset and length. If a valid frame with a later sequence
//! number does follow, the damage is in the middle of the log: records that recovery needs
//! would be lost, so reading fails with `LogError::Corrupt` instead.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::poison::Poison;
use crate::ids::{BackingIndex, InodeRef};
use parking_lot::Mutex;

pub const MAGIC: &[u8; 8] = b"QFSALOG1";
pub const HEADER_LEN: usize = 20;
const FRAME_HEAD: usize = 8;
const TOUCH: u8 = 1;
const DIR_DIRTY: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// The inode's charge before its first usage-changing operation in this epoch, and the
    /// epoch it was born in (recovery from an older snapshot must not subtract a charge that
    /// snapshot never had).
    Touch { inode: InodeRef, uid: u32, project: u32, bytes: u64, birth: u64 },
    /// An inode born in this epoch may appear in this directory.
    DirDirty { dir: InodeRef },
}

/// The file name of the log of `epoch`.
pub fn file_name(epoch: u64) -> String {
    format!("activity-{epoch:016}.log")
}

/// The epoch of a log file name, if it is one.
pub fn epoch_of(name: &str) -> Option<u64> {
    name.strip_prefix("activity-")?.strip_suffix(".log")?.parse().ok()
}

fn header(epoch: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

fn put_inode(out: &mut Vec<u8>, i: &InodeRef) {
    out.push(i.backing.0);
    out.extend_from_slice(&i.ino.to_le_bytes());
    out.extend_from_slice(&i.generation.to_le_bytes());
}

/// Appends the frame of record `rec` with sequence number `seq` to `out` (format above).
pub fn encode(seq: u64, rec: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEAD]);
    out.extend_from_slice(&seq.to_le_bytes());
    encode_fields(rec, out);
    let body_len = (out.len() - start - FRAME_HEAD) as u32;
    let crc = crc32fast::hash(&out[start + FRAME_HEAD..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends `kind u8 | fields` of record `rec` (a frame's body after its sequence number; the
/// unit of a journal record pack, `journal::pack`).
pub fn encode_fields(rec: &Record, out: &mut Vec<u8>) {
    match rec {
        Record::Touch { inode, uid, project, bytes, birth } => {
            out.push(TOUCH);
            put_inode(out, inode);
            out.extend_from_slice(&uid.to_le_bytes());
            out.extend_from_slice(&project.to_le_bytes());
            out.extend_from_slice(&bytes.to_le_bytes());
            out.extend_from_slice(&birth.to_le_bytes());
        }
        Record::DirDirty { dir } => {
            out.push(DIR_DIRTY);
            put_inode(out, dir);
        }
    }
}

/// Reads one `kind u8 | fields` from the front of `bytes` and advances past it.
pub fn decode_fields(bytes: &mut &[u8]) -> Option<Record> {
    let mut c = Cursor(bytes);
    let rec = match c.u8()? {
        TOUCH => {
            Record::Touch { inode: c.inode()?, uid: c.u32()?, project: c.u32()?, bytes: c.u64()?, birth: c.u64()? }
        }
        DIR_DIRTY => Record::DirDirty { dir: c.inode()? },
        _ => return None,
    };
    *bytes = c.0;
    Some(rec)
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    fn inode(&mut self) -> Option<InodeRef> {
        Some(InodeRef { backing: BackingIndex(self.u8()?), ino: self.u64()?, generation: self.u32()? })
    }
}

fn decode_body(body: &[u8]) -> Option<(u64, Record)> {
    let mut c = Cursor(body);
    let seq = c.u64()?;
    let mut rest = c.0;
    let rec = decode_fields(&mut rest)?;
    rest.is_empty().then_some((seq, rec))
}

/// The frame at `pos`, if a complete, checksummed, parseable one starts there.
fn frame_at(bytes: &[u8], pos: usize) -> Option<(usize, u64, Record)> {
    let head = bytes.get(pos..pos + FRAME_HEAD)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    if !(9..=64).contains(&len) {
        return None;
    }
    let body = bytes.get(pos + FRAME_HEAD..pos + FRAME_HEAD + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let (seq, rec) = decode_body(body)?;
    Some((FRAME_HEAD + len, seq, rec))
}

/// What was cut from the end of a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub offset: u64,
    pub bytes: u64,
}

/// A log read back: its epoch, its records in order, and the torn tail cut off, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogContents {
    pub epoch: u64,
    pub records: Vec<Record>,
    pub valid_len: u64,
    pub torn: Option<TornTail>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LogError {
    /// The file does not start with a valid header.
    BadHeader {
        path: PathBuf,
    },
    /// Damage before the last valid frame: records recovery needs are unreadable.
    Corrupt {
        path: PathBuf,
        offset: u64,
        later_seq: u64,
    },
    Io {
        path: PathBuf,
        error: String,
    },
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::BadHeader { path } => write!(
                f,
                "activity log {}: bad header (not a quotafs log, or its first bytes are damaged)",
                path.display()
            ),
            LogError::Corrupt { path, offset, later_seq } => write!(
                f,
                "activity log {} is damaged at byte offset {offset} with valid records after it (sequence {later_seq}); \
                 the ledger cannot be recovered from it: with the daemon stopped, run `quotafs check --repair` \
                 (with --config or --backing) to rebuild it by a full rescan; the damaged log is kept",
                path.display()
            ),
            LogError::Io { path, error } => write!(f, "activity log {}: {error}", path.display()),
        }
    }
}

/// Whether this quotafs reads the format of the log at `path` (`--check-takeover`): a header
/// of another version of this log ("QFSALOG" and another digit) is refused; anything else
/// (a header cut short, damage) is recovery's to judge, as at any start.
pub fn check_format(path: &Path) -> Result<(), String> {
    let mut head = [0u8; 8];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|e| format!("cannot read activity log {}: {e}", path.display()))?;
    if n == head.len() && head[..7] == MAGIC[..7] && head != *MAGIC {
        return Err(format!(
            "activity log {} is of format {:?}; this quotafs reads {:?}",
            path.display(),
            String::from_utf8_lossy(&head),
            String::from_utf8_lossy(MAGIC)
        ));
    }
    Ok(())
}

/// Parses a whole log file's bytes (see the module docs for the rules).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<LogContents, LogError> {
    let h = bytes.get(..HEADER_LEN).ok_or_else(|| LogError::BadHeader { path: path.into() })?;
    let epoch = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    if &h[..8] != MAGIC || h[16..20] != crc32fast::hash(&h[..16]).to_le_bytes() {
        return Err(LogError::BadHeader { path: path.into() });
    }
    let mut pos = HEADER_LEN;
    let mut next_seq = 1u64;
    let mut records = Vec::new();
    while let Some((len, seq, rec)) = frame_at(bytes, pos) {
        if seq != next_seq {
            break;
        }
        records.push(rec);
        next_seq += 1;
        pos += len;
    }
    if pos == bytes.len() {
        return Ok(LogContents { epoch, records, valid_len: pos as u64, torn: None });
    }
    // Something invalid at `pos`: torn tail, unless a later valid frame continues the sequence.
    for later in pos + 1..bytes.len() {
        if let Some((_, seq, _)) = frame_at(bytes, later)
            && seq >= next_seq
        {
            return Err(LogError::Corrupt { path: path.into(), offset: pos as u64, later_seq: seq });
        }
    }
    let torn = TornTail { offset: pos as u64, bytes: (bytes.len() - pos) as u64 };
    Ok(LogContents { epoch, records, valid_len: pos as u64, torn: Some(torn) })
}

/// Reads and parses the log at `path`.
pub fn read(path: &Path) -> Result<LogContents, LogError> {
    let bytes = std::fs::read(path).map_err(|e| LogError::Io { path: path.into(), error: e.to_string() })?;
    decode(path, &bytes)
}

/// Fsyncs a directory, so that a file created or removed in it survives a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Why an append was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// An earlier write or fdatasync of the log failed: the ledger no longer knows what is
    /// durable, and refuses every further usage-changing operation (never retry and pretend).
    Poisoned(String),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::Poisoned(why) => write!(f, "ledger poisoned: {why}"),
        }
    }
}

struct Pending {
    buf: Vec<u8>,
    next_seq: u64,
}

/// Appends records durably. Concurrent callers share one `fdatasync` (group commit): whoever
/// holds the file lock writes and syncs every record queued so far, and a caller whose record
/// was synced by someone else returns without another sync.
pub struct LogWriter {
    path: PathBuf,
    epoch: u64,
    pending: Mutex<Pending>,
    file: Mutex<File>,
    durable_seq: AtomicU64,
    /// The ledger's poison, shared by the writers of every epoch: a failed write poisons it,
    /// and no later writer clears it.
    poison: Arc<Poison>,
    syncs: AtomicU64,
    records: AtomicU64,
}

impl LogWriter {
    /// Creates the log of `epoch` in `dir` (header written and synced, directory synced); a
    /// failed write or sync of it sets `poison`.
    pub fn create(dir: &Path, epoch: u64, poison: Arc<Poison>) -> std::io::Result<LogWriter> {
        let path = dir.join(file_name(epoch));
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        let made = file.write_all(&header(epoch)).and_then(|()| file.sync_all()).and_then(|()| {
            // IMPORTANT: the new file's directory entry must be durable too.
            sync_dir(dir)
        });
        if let Err(e) = made {
            // A log without its header would make the next recovery refuse the state dir.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(LogWriter {
            path,
            epoch,
            pending: Mutex::new(Pending { buf: Vec::new(), next_seq: 1 }),
            file: Mutex::new(file),
            durable_seq: AtomicU64::new(0),
            poison,
            syncs: AtomicU64::new(0),
            records: AtomicU64::new(0),
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fdatasync calls made, records appended.
    pub fn counters(&self) -> (u64, u64) {
        (self.syncs.load(Ordering::Relaxed), self.records.load(Ordering::Relaxed))
    }

    /// Appends `rec`; returns once it is durable.
    pub fn append(&self, rec: &Record) -> Result<(), AppendError> {
        let seq = self.enqueue(rec)?;
        self.sync_to(seq)
    }

    /// Queues `rec` and returns its sequence number; it is durable once `sync_to(seq)` returns.
    pub fn enqueue(&self, rec: &Record) -> Result<u64, AppendError> {
        self.check_poison()?;
        let mut p = self.pending.lock();
        let seq = p.next_seq;
        p.next_seq += 1;
        encode(seq, rec, &mut p.buf);
        self.records.fetch_add(1, Ordering::Relaxed);
        Ok(seq)
    }

    /// Returns once every record up to `seq` is durable, writing and syncing whatever is
    /// queued if nobody else already did (group commit).
    pub fn sync_to(&self, seq: u64) -> Result<(), AppendError> {
        if self.durable_seq.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let mut file = self.file.lock();
        if self.durable_seq.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        self.check_poison()?;
        let (buf, last) = {
            let mut p = self.pending.lock();
            (std::mem::take(&mut p.buf), p.next_seq - 1)
        };
        let result =
            file.write_all(&buf).and_then(|()| crate::failpoint::LOG_SYNC.check()).and_then(|()| file.sync_data());
        self.syncs.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.durable_seq.store(last, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                let why = format!("write or fdatasync of {} failed: {e}", self.path.display());
                self.poison.set(why.clone());
                Err(AppendError::Poisoned(why))
            }
        }
    }

    /// Bytes in the log file so far (header included), durable or queued.
    pub fn bytes(&self) -> u64 {
        let queued = self.pending.lock().buf.len() as u64;
        self.file.lock().metadata().map(|m| m.len()).unwrap_or(0) + queued
    }

    fn check_poison(&self) -> Result<(), AppendError> {
        match self.poison.reason() {
            Some(why) => Err(AppendError::Poisoned(why)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(ino: u64, bytes: u64) -> Record {
        Record::Touch {
            inode: InodeRef { backing: BackingIndex(0), ino, generation: 7 },
            uid: 1000,
            project: 3,
            bytes,
            birth: 2,
        }
    }

    fn log_bytes(epoch: u64, recs: &[Record]) -> Vec<u8> {
        let mut out = header(epoch).to_vec();
        for (i, r) in recs.iter().enumerate() {
            encode(i as u64 + 1, r, &mut out);
        }
        out
    }

    #[test]
    fn round_trip() {
        let recs = vec![
            touch(12, 4096),
            Record::DirDirty { dir: InodeRef { backing: BackingIndex(1), ino: 2, generation: 0 } },
        ];
        let bytes = log_bytes(5, &recs);
        let c = decode(Path::new("x"), &bytes).unwrap();
        assert_eq!(c.epoch, 5);
        assert_eq!(c.records, recs);
        assert_eq!(c.torn, None);
    }

    #[test]
    fn every_cut_of_the_last_frame_is_a_torn_tail() {
        let recs: Vec<Record> = (0..10).map(|i| touch(i, i * 100)).collect();
        let bytes = log_bytes(1, &recs);
        let nine = log_bytes(1, &recs[..9]).len();
        for cut in nine + 1..bytes.len() {
            let c = decode(Path::new("x"), &bytes[..cut]).unwrap();
            assert_eq!(c.records, recs[..9], "cut at {cut}");
            assert_eq!(c.torn, Some(TornTail { offset: nine as u64, bytes: (cut - nine) as u64 }));
        }
    }

    #[test]
    fn garbage_after_the_last_frame_is_a_torn_tail() {
        let recs: Vec<Record> = (0..3).map(|i| touch(i, 1)).collect();
        let mut bytes = log_bytes(1, &recs);
        let good = bytes.len();
        bytes.extend_from_slice(&[0xAB; 100]);
        let c = decode(Path::new("x"), &bytes).unwrap();
        assert_eq!(c.records.len(), 3);
        assert_eq!(c.torn, Some(TornTail { offset: good as u64, bytes: 100 }));
        // Zeros (a preallocated or torn sector) too.
        bytes.truncate(good);
        bytes.extend_from_slice(&[0; 512]);
        assert_eq!(decode(Path::new("x"), &bytes).unwrap().records.len(), 3);
    }

    #[test]
    fn damage_in_the_middle_is_refused() {
        let recs: Vec<Record> = (0..10).map(|i| touch(i, 1)).collect();
        let mut bytes = log_bytes(1, &recs);
        let third = log_bytes(1, &recs[..3]).len();
        bytes[third + 12] ^= 0xFF; // inside the 4th frame's body
        match decode(Path::new("x"), &bytes) {
            Err(LogError::Corrupt { offset, later_seq, .. }) => {
                assert_eq!(offset, third as u64);
                assert!(later_seq >= 5);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn bad_header_is_refused() {
        let mut bytes = log_bytes(1, &[touch(1, 1)]);
        bytes[9] ^= 1;
        assert!(matches!(decode(Path::new("x"), &bytes), Err(LogError::BadHeader { .. })));
        assert!(matches!(decode(Path::new("x"), &bytes[..10]), Err(LogError::BadHeader { .. })));
    }

    #[test]
    fn a_replayed_stale_frame_ends_the_log() {
        // A valid frame whose sequence number does not continue (e.g. an old frame) is not
        // taken as part of the log.
        let mut bytes = log_bytes(1, &[touch(1, 1), touch(2, 2)]);
        encode(1, &touch(3, 3), &mut bytes);
        let c = decode(Path::new("x"), &bytes).unwrap();
        assert_eq!(c.records.len(), 2);
        assert!(c.torn.is_some());
    }

    #[test]
    fn writer_group_commits_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("quotafs-wal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let w = std::sync::Arc::new(LogWriter::create(&dir, 9, Default::default()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        w.append(&touch(t * 1000 + i, i)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (syncs, records) = w.counters();
        assert_eq!(records, 800);
        assert!(syncs <= 800);
        let c = read(w.path()).unwrap();
        assert_eq!(c.epoch, 9);
        assert_eq!(c.records.len(), 800);
        assert_eq!(c.torn, None);
        let mut inos: Vec<u64> =
            c.records.iter().map(|r| if let Record::Touch { inode, .. } = r { inode.ino } else { 0 }).collect();
        inos.sort_unstable();
        inos.dedup();
        assert_eq!(inos.len(), 800);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn frozen_fixtures() {
        let p = Path::new("fixtures/ledger");
        let r = |n: &str| decode(&p.join(n), &std::fs::read(p.join(n)).unwrap());
        let complete = r("v1-complete.log").unwrap();
        assert_eq!(complete.epoch, 5);
        assert_eq!(complete.torn, None);
        assert_eq!(
            complete.records,
            vec![
                Record::Touch {
                    inode: InodeRef { backing: BackingIndex(0), ino: 12, generation: 0xdead_beef },
                    uid: 1000,
                    project: 7,
                    bytes: 8192,
                    birth: 3
                },
                Record::DirDirty { dir: InodeRef { backing: BackingIndex(0), ino: 2, generation: 0 } },
                Record::Touch {
                    inode: InodeRef { backing: BackingIndex(0), ino: 13, generation: 42 },
                    uid: 1001,
                    project: 0,
                    bytes: 0,
                    birth: 5
                },
                Record::DirDirty { dir: InodeRef { backing: BackingIndex(0), ino: 8194, generation: 1_545_020_094 } },
                Record::Touch {
                    inode: InodeRef { backing: BackingIndex(0), ino: 99, generation: 7 },
                    uid: 0,
                    project: 1,
                    bytes: 4096,
                    birth: 0
                },
            ]
        );
        let torn = r("v1-torn-tail.log").unwrap();
        assert_eq!(torn.records, complete.records[..4]);
        assert!(torn.torn.is_some());
        let zeros = r("v1-zero-tail.log").unwrap();
        assert_eq!(zeros.records, complete.records);
        assert_eq!(zeros.torn.map(|t| t.bytes), Some(512));
        assert!(matches!(r("v1-corrupt-middle.log"), Err(LogError::Corrupt { offset: 20, .. })));
        assert!(matches!(r("v1-bad-header.log"), Err(LogError::BadHeader { .. })));
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(epoch_of(&file_name(42)), Some(42));
        assert_eq!(epoch_of("other.log"), None);
    }
}
