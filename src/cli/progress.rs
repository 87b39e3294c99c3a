//! Progress of a long walk on the terminal: one line on stderr, rewritten at most twice a
//! second, erased when the walk ends. Only when stderr is a terminal: in a log or a pipe
//! nothing is written (the command's summary says what was done).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::admin::{Request, Response, call};
use crate::scan::ProgressReading;

/// How often the line is rewritten.
const REFRESH: Duration = Duration::from_millis(500);

/// Shows a walk's progress until dropped.
pub struct Terminal {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Terminal {
    /// Shows `read()` (None: nothing to show yet) while stderr is a terminal; else nothing.
    pub fn show(read: impl Fn() -> Option<ProgressReading> + Send + 'static) -> Terminal {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Terminal { stop, thread: None };
        }
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let mut shown = false;
                loop {
                    for _ in 0..5 {
                        if stopped.load(Ordering::SeqCst) {
                            if shown {
                                let _ = write!(std::io::stderr(), "\r\x1b[K");
                            }
                            return;
                        }
                        std::thread::sleep(REFRESH / 5);
                    }
                    if let Some(r) = read() {
                        let _ = write!(std::io::stderr(), "\r\x1b[K{}", r.line());
                        shown = true;
                    }
                }
            })
            .ok();
        Terminal { stop, thread }
    }

    /// A walk of this process.
    pub fn local() -> Terminal {
        Terminal::show(|| crate::scan::running().pop())
    }

    /// The walk whose name starts with `task` (`project assign` and its survey) in the daemon
    /// on `state_dir`, read through its control socket.
    pub fn daemon(state_dir: &std::path::Path, task: &'static str) -> Terminal {
        let dir = state_dir.to_path_buf();
        Terminal::show(move || match call(&dir, &Request::Status) {
            Ok(Some(Response::Status { status })) => {
                let running: Vec<ProgressReading> = serde_json::from_value(status["in_progress"].clone()).ok()?;
                running.into_iter().find(|w| w.task.starts_with(task))
            }
            _ => None,
        })
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
