//! Guards that undo what a test did to the machine, also when it fails.

use std::path::PathBuf;
use std::process::{Child, Command};

use super::run;

/// A file system frozen with fsfreeze (every write to it blocks, as on a dead or saturated
/// disk); thawed on drop, so a test that fails never leaves a frozen disk.
pub struct Frozen(pub PathBuf);

impl Frozen {
    pub fn freeze(path: PathBuf) -> Frozen {
        assert!(run(Command::new("fsfreeze").arg("-f").arg(&path)).status.success(), "fsfreeze -f");
        Frozen(path)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = run(Command::new("fsfreeze").arg("-u").arg(&self.0));
    }
}

/// Processes killed (and reaped) on drop, whatever is left of them.
pub struct Kids(pub Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The kernel's FUSE-over-io_uring switch.
pub const URING_SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";

/// The io_uring switch set for a test and put back as it was on drop.
pub struct UringSwitch(String);

impl UringSwitch {
    pub fn set(on: bool) -> UringSwitch {
        let before = std::fs::read_to_string(URING_SWITCH).expect("this kernel has FUSE over io_uring");
        std::fs::write(URING_SWITCH, if on { "Y" } else { "N" }).expect("set enable_uring");
        UringSwitch(before.trim().to_string())
    }
}

impl Drop for UringSwitch {
    fn drop(&mut self) {
        let _ = std::fs::write(URING_SWITCH, &self.0);
    }
}
