//! Every flag `quotafs --help` and each subcommand's `--help` offer is described in quotafs(8):
//! an operator reading the man page finds every knob the binary has.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{BIN, run_ok};

fn flags(help: &str) -> BTreeSet<String> {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2 && w.as_bytes()[2].is_ascii_alphabetic())
        .map(str::to_string)
        .collect()
}

/// The subcommand names listed under "Commands:" in a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_flag_in_help_is_in_the_man_page() {
    let man = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/quotafs.8")).unwrap().replace('\\', "");
    let mut missing = Vec::new();
    let mut queue = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let help = run_ok(Command::new(BIN).args(&path).arg("--help"));
        seen += 1;
        for f in flags(&help) {
            if f != "--help" && f != "--version" && !man.contains(&f) {
                missing.push(format!("{} {f}", path.join(" ")));
            }
        }
        for sub in subcommands(&help) {
            let mut p = path.clone();
            p.push(sub);
            queue.push(p);
        }
    }
    assert!(seen > 10, "read the help of {seen} commands only");
    assert!(missing.is_empty(), "flags in --help but not in man/quotafs.8:\n{}", missing.join("\n"));
}
