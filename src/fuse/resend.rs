//! Requests the kernel sends again after a takeover (`FUSE_UNIQUE_RESEND`, bit 63 of the
//! unique; docs/design.md §18) that had already taken effect: the dead process made the change
//! on the backing but died before it replied. Done again, such a request fails where the first
//! attempt succeeded, so each name operation answers as the first attempt would have when what
//! it meets is what it made:
//!
//! * MKNOD, MKDIR, SYMLINK, CREATE meeting EEXIST: the entry there is the caller's (owner uid)
//!   and of the kind asked for (for LINK: the very inode linked) → its entry (CREATE opens it,
//!   without O_CREAT/O_EXCL/O_TRUNC);
//! * UNLINK, RMDIR meeting ENOENT → success;
//! * RENAME meeting ENOENT with the target name present → success.
//!
//! Only the kernel sets the bit (a tenant cannot), and only on requests it had sent before the
//! takeover; an entry of another uid, or of another kind, keeps the error. The ledger needs
//! nothing here: recovery settled the first attempt's change from its record.

use std::ffi::OsStr;

use super::FuseFront;
use crate::backing::Errno;
use crate::backing::creds::Caller;
use crate::passthrough::Entry;
use crate::passthrough::Opened;
use crate::wire::FileType;

/// Set in the unique of a request the kernel queued again on FUSE_NOTIFY_RESEND.
pub(super) const UNIQUE_RESEND: u64 = 1 << 63;

/// What a resent name operation made, to recognise it.
#[derive(Clone, Copy)]
pub(super) enum Made {
    /// An entry of this `S_IFMT` type.
    Kind(u32),
    /// A link to this node.
    LinkTo(u64),
}

impl FuseFront {
    /// `r`, or, for a resent request that met EEXIST on what it made, that entry.
    pub(super) fn resent_entry(
        &self,
        resent: bool,
        c: &Caller,
        dir: u64,
        name: &OsStr,
        made: Made,
        r: Result<Entry, Errno>,
    ) -> Result<Entry, Errno> {
        crate::failpoint::NAME_REPLY.hold();
        match r {
            Err(Errno(libc::EEXIST)) if resent => self.made_by(c, dir, name, made).ok_or(Errno(libc::EEXIST)),
            r => r,
        }
    }

    /// The entry `dir`/`name` with one lookup reference if it is what `c` made (`made`).
    fn made_by(&self, c: &Caller, dir: u64, name: &OsStr, made: Made) -> Option<Entry> {
        let e = self.ops.lookup(dir, name).ok()?;
        let ok = e.attr.uid == c.uid
            && match made {
                Made::Kind(bits) => e.attr.kind.mode_bits() == bits & libc::S_IFMT,
                Made::LinkTo(node) => e.attr.ino == node && e.attr.kind != FileType::Directory,
            };
        if ok {
            tracing::info!(node = e.attr.ino, "a resent request had taken effect; answered as it was");
            Some(e)
        } else {
            self.ops.forget(e.attr.ino, 1);
            None
        }
    }

    /// A resent CREATE that met EEXIST on the caller's regular file: its entry, opened.
    pub(super) fn resent_create(
        &self,
        resent: bool,
        c: &Caller,
        dir: u64,
        name: &OsStr,
        flags: i32,
        r: Result<(Entry, Opened), Errno>,
    ) -> Result<(Entry, Opened), Errno> {
        crate::failpoint::NAME_REPLY.hold();
        match r {
            Err(Errno(libc::EEXIST)) if resent => {
                // Not the caller's new file: it was there before; an open without O_EXCL opens
                // it, through the kernel's second lookup (§17.1).
                let there = if flags & libc::O_EXCL != 0 { libc::EEXIST } else { libc::ESTALE };
                let e = self.made_by(c, dir, name, Made::Kind(libc::S_IFREG)).ok_or(Errno(there))?;
                match self.ops.open(c, e.attr.ino, flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC)) {
                    Ok(opened) => Ok((e, opened)),
                    Err(err) => {
                        self.ops.forget(e.attr.ino, 1);
                        Err(err)
                    }
                }
            }
            r => r,
        }
    }

    /// `r`, or success for a resent UNLINK/RMDIR that met ENOENT.
    pub(super) fn resent_removal(&self, resent: bool, r: Result<(), Errno>) -> Result<(), Errno> {
        crate::failpoint::NAME_REPLY.hold();
        match r {
            Err(Errno(libc::ENOENT)) if resent => {
                tracing::info!("a resent removal had taken effect; answered as it was");
                Ok(())
            }
            r => r,
        }
    }

    /// `r`, or success for a resent RENAME that met ENOENT with its target present.
    pub(super) fn resent_rename(
        &self,
        resent: bool,
        newdir: u64,
        newname: &OsStr,
        r: Result<(), Errno>,
    ) -> Result<(), Errno> {
        crate::failpoint::NAME_REPLY.hold();
        match r {
            Err(Errno(libc::ENOENT)) if resent => match self.ops.lookup(newdir, newname) {
                Ok(e) => {
                    self.ops.forget(e.attr.ino, 1);
                    tracing::info!("a resent rename had taken effect; answered as it was");
                    Ok(())
                }
                Err(_) => Err(Errno(libc::ENOENT)),
            },
            r => r,
        }
    }
}
