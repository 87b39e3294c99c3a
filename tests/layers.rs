//! The module layers of docs/design.md §1, checked against the `use` lines: every `crate::`
//! name a top-level module of `src/` uses is a module on a layer strictly below its own, and
//! every module has a layer. A new import on one's own layer or above (a cycle in the making)
//! fails here, with the offending file named. `QUOTAFS_LAYERS_SRC` points the check at
//! another source tree (to see it fail on an older one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first; the same table as docs/design.md §1.
const LAYERS: &[&[&str]] = &[
    &["ids", "failpoint", "logging", "wire"],
    &["backing"],
    &["tag", "route", "quota"],
    &["inode", "scan", "config"],
    &["ledger"],
    &["check", "passthrough"],
    &["fuse", "watch"],
    &["admin"],
    &["rquota"],
    &["exports"],
    &["daemon"],
    &["supervise"],
    &["cli"],
];

/// `lib.rs` declares the modules and `main.rs` calls `cli` through the library's name: neither
/// is a layer.
const ROOTS: &[&str] = &["lib", "main"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of `text` without `//` comments (doc comments name modules freely).
fn code(text: &str) -> String {
    text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

/// The top-level modules named after `crate::` in `text`, brace groups included
/// (`use crate::{a, b::c}` names `a` and `b`).
fn crate_names(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item_start, mut end) = (1, true, group.len());
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 1 => {
                        item_start = false;
                        names.insert(ident(&group[j..]));
                    }
                    _ => {}
                }
            }
            rest = &group[end..];
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

#[test]
fn no_module_imports_one_on_its_layer_or_above() {
    let src = std::env::var_os("QUOTAFS_LAYERS_SRC")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), PathBuf::from);
    let layer_of: BTreeMap<&str, usize> =
        LAYERS.iter().enumerate().flat_map(|(i, mods)| mods.iter().map(move |m| (*m, i))).collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a file name").as_os_str().to_string_lossy();
        let module = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        if ROOTS.contains(&module.as_str()) {
            continue;
        }
        let Some(&own) = layer_of.get(module.as_str()) else {
            wrong.push(format!("{}: module `{module}` has no layer; add it to LAYERS and design §1", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
        for name in crate_names(&code(&text)) {
            if name == module {
                continue;
            }
            graph.entry(module.clone()).or_default().insert(name.clone());
            match layer_of.get(name.as_str()) {
                Some(&l) if l < own => {}
                Some(&l) => wrong.push(format!(
                    "{}: `{module}` (layer {own}) imports `{name}` (layer {l}): only layers below may be imported",
                    rel.display()
                )),
                None => wrong.push(format!("{}: `{module}` imports `{name}`, which has no layer", rel.display())),
            }
        }
    }
    // A parser that found nothing would pass anything.
    assert!(
        graph.get("passthrough").is_some_and(|d| d.contains("ledger")),
        "no import of the ledger found in passthrough/: the use-line parser is broken"
    );
    let drawn: Vec<String> =
        graph.iter().map(|(m, d)| format!("{m} -> {}", Vec::from_iter(d.clone()).join(" "))).collect();
    assert!(wrong.is_empty(), "{}\n\nthe graph from the use lines:\n{}", wrong.join("\n"), drawn.join("\n"));
}

#[test]
fn brace_groups_name_every_module() {
    let names =
        crate_names("use crate::{backing::{self, sys}, ids::BackingIndex,\n quota};\nlet x = crate::tag::NAME;");
    assert_eq!(names, BTreeSet::from(["backing", "ids", "quota", "tag"].map(String::from)));
}
