//! 200,000 looked-up files in one tree under a 20,000 open-file limit: the inode table keeps
//! file handles, not descriptors, and its fd cache stays bounded.

mod common;

use std::process::Command;

use common::{Fixture, run_ok};

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn two_hundred_thousand_files_stay_within_the_fd_limit() {
    const DIRS: usize = 200;
    const PER_DIR: usize = 1000;
    let f = Fixture::with_args("many", &["--fd-cache", "512"]);
    // Made directly on the backing, which is far quicker than through any FUSE layer.
    for d in 0..DIRS {
        let dir = f.b(&format!("tree/d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..PER_DIR {
            std::fs::File::create(dir.join(format!("f{i:04}"))).unwrap();
        }
    }
    std::fs::write(f.b("tree/d007/f0042"), b"needle").unwrap();
    let pid = f.daemon_pid();

    // stat every file through the mount (du looks each one up) while sampling descriptors.
    let sampler = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            let mut peak = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(open_fds(pid));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            peak
        });
        (stop, t)
    };
    let out = run_ok(Command::new("du").arg("--inodes").arg("-s").arg(f.m("tree")));
    let inodes: usize = out.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(inodes, DIRS * PER_DIR + DIRS + 1, "du --inodes counts every file and directory");
    let count = run_ok(Command::new("sh").arg("-c").arg(format!("find {} -type f | wc -l", f.m("tree").display())));
    assert_eq!(count.trim(), (DIRS * PER_DIR).to_string());
    sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.1.join().unwrap();
    assert!(peak < 512 + 200, "daemon held {peak} descriptors; the cache is bounded at 512");

    // Files whose descriptors were evicted long ago still open and read.
    assert_eq!(std::fs::read(f.m("tree/d007/f0042")).unwrap(), b"needle");
    for d in (0..DIRS).step_by(37) {
        std::fs::write(f.m(&format!("tree/d{d:03}/f0999")), b"w").unwrap();
        assert_eq!(std::fs::read(f.b(&format!("tree/d{d:03}/f0999"))).unwrap(), b"w");
    }
}
