//! RENAME: where it runs (the router's answer), then the move on one backing with its
//! accounting: a file moved into a directory of another project takes its usage there.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd};

use super::super::Ctx;
use super::super::account::entry_fd;
use super::super::accounting::{Op, Tracked};
use super::super::ops::Names;
use super::is_dir;
use crate::backing::creds::as_caller;
use crate::backing::{BackingIndex, Errno, entry_name, sys};
use crate::inode::Inode;
use crate::passthrough::router::RenameRoute;
use crate::quota::{Charge, Subject};
use crate::tag;

impl<'a> Names<'a> {
    /// `renameat2` with RENAME_NOREPLACE and RENAME_EXCHANGE; RENAME_WHITEOUT is refused.
    /// Node ids follow inodes, not names, so the table needs no update. A file moved into a
    /// directory of another project takes its usage there; a directory, or a file with more
    /// than one name, answers EXDEV (in either direction of an exchange).
    pub fn rename(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 {
            return Err(Errno(libc::EINVAL));
        }
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let (from, fromfd) = self.resolve_dir(parent)?;
        let (to, tofd) = self.resolve_dir(newparent)?;
        if from.backing != to.backing {
            return Err(Errno(libc::EXDEV));
        }
        let cname = entry_name(name)?;
        let cnewname = entry_name(newname)?;
        self.refuse_private(&from, &cname, libc::ENOENT)?;
        self.refuse_private(&to, &cnewname, libc::EPERM)?;
        let after = match self.be.router.rename(&from, fromfd.as_fd(), &cname, &to, &cnewname, exchange)? {
            RenameRoute::Routed { from, to } => {
                return self.routed().rename_routed(ctx, &from, name, &to, newname, flags);
            }
            RenameRoute::Here(after) => after,
        };
        let r = self.rename_here(ctx, &from, fromfd.as_fd(), &cname, &to, tofd.as_fd(), &cnewname, flags);
        if r.is_ok() {
            self.routed().after_rename(&after);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn rename_here(
        &self,
        ctx: &Ctx,
        from: &Inode,
        fromfd: BorrowedFd<'_>,
        name: &CStr,
        to: &Inode,
        tofd: BorrowedFd<'_>,
        newname: &CStr,
        flags: u32,
    ) -> Result<(), Errno> {
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let b = from.backing;
        let (mut acct, sts) = self.begin_entries(&[from, to], &[(fromfd, name), (tofd, newname)])?;
        let Some(src_st) = sts[0] else { return Err(Errno(libc::ENOENT)) };
        let target_st = sts[1].filter(|t| t.st_ino != src_st.st_ino);
        let ft = acct.track(from, fromfd)?;
        let tt = if from.id == to.id { None } else { Some(acct.track(to, tofd)?) };
        let to_project = tt.as_ref().map_or(ft.tag.project, |t| t.tag.project);
        // An untagged inode is being made or was made before a crash: new either way.
        let src_t = tag::read_at(fromfd, name)?;
        let src_tag = src_t.map_or(ft.tag.project, |t| t.project);
        let cross = src_tag != to_project;
        let tgt_t = match target_st {
            Some(_) => tag::read_at(tofd, newname)?,
            None => None,
        };
        let tgt_tag = tgt_t.map_or(to_project, |t| t.project);
        let back_cross = exchange && target_st.is_some() && tgt_tag != ft.tag.project;
        // One inode, one project: a directory, or a file with other names (which stay in the
        // old tree), cannot change project by a rename; `mv` copies instead.
        let keeps_its_project = |st: &libc::stat| is_dir(st) || st.st_nlink > 1;
        if (cross && keeps_its_project(&src_st)) || (back_cross && target_st.is_some_and(|t| keeps_its_project(&t))) {
            return Err(Errno(libc::EXDEV));
        }
        // A file moving into another project must fit there (and the exchanged one back).
        if cross {
            acct.reserve(ctx, &[Subject::Project(to_project)], (src_st.st_blocks as u64) * 512, 1)?;
        }
        if let Some(t) = target_st.filter(|_| back_cross) {
            acct.reserve(ctx, &[Subject::Project(ft.tag.project)], (t.st_blocks as u64) * 512, 1)?;
        }
        // A new name in the target directory may grow it (a replaced or exchanged one does
        // not).
        match (&sts[1], &tt) {
            (Some(_), _) => {}
            (None, Some(tt)) => acct.reserve_dir_growth(ctx, tt)?,
            (None, None) => acct.reserve_dir_growth(ctx, &ft)?,
        }
        // What the rename will change, logged before it happens.
        let src = if cross { Some(acct.track_at(b, fromfd, name)?) } else { None };
        let target = match target_st {
            Some(_) if exchange && back_cross => Some(acct.track_at(b, tofd, newname)?),
            Some(_) if !exchange => Some(acct.track_at(b, tofd, newname)?),
            _ => None,
        };
        // An inode the recovery snapshot may lack is found only by listing its directory: the
        // one it moves to must be listed too.
        let src_key = self.key_at(b, fromfd, name)?;
        if acct.is_new(src_key, src_t.map_or(u64::MAX, |t| t.birth)) {
            acct.dir_dirty(to.key());
        }
        if exchange
            && target_st.is_some()
            && acct.is_new(self.key_at(b, tofd, newname)?, tgt_t.map_or(u64::MAX, |t| t.birth))
        {
            acct.dir_dirty(from.key());
        }
        acct.run(|acct| {
            as_caller(ctx, || sys::rename_at(fromfd, name, tofd, newname, flags))?;
            if let Some(s) = &src {
                self.move_project(acct, s, tofd, newname, to_project);
            }
            match &target {
                Some(t) if exchange => self.move_project(acct, t, fromfd, name, ft.tag.project),
                Some(t) => {
                    acct.gone(t);
                }
                None => {}
            }
            Ok(())
        })
    }

    /// The ledger key of `name` in `dir`.
    fn key_at(&self, backing: BackingIndex, dir: BorrowedFd<'_>, name: &CStr) -> Result<crate::ids::InodeRef, Errno> {
        let st = sys::stat_at(dir, name)?;
        let h = sys::name_to_handle(dir, name)?;
        Ok(crate::ids::InodeRef { backing, ino: st.st_ino, generation: h.ext4_generation().unwrap_or(0) })
    }

    /// Re-tags a renamed file (now `name` in `dir`) with `project` and moves its usage there.
    fn move_project(&self, acct: &Op<'_>, t: &Tracked, dir: BorrowedFd<'_>, name: &CStr, project: u32) {
        let result = entry_fd(dir, name).and_then(|fd| {
            let written = tag::write_fd(fd.as_fd(), tag::Tag { project, birth: t.tag.birth });
            self.st.nodes.stripes().tag_written(t.key.backing, t.key.ino);
            written?;
            sys::stat_fd(fd.as_fd())
        });
        match result {
            Ok(st) => acct.moved(t, Charge::of(&st, project)),
            Err(e) => tracing::error!(ino = t.key.ino, error = %e, "cannot re-tag a file moved to another project"),
        }
    }
}
