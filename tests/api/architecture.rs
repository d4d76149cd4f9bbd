//! The house rules that keep the code a map: every module of `server/` sits in the layer table of
//! `docs/architecture.md`, imports only from modules above it (so there are no cycles), and no
//! hand-written source file passes 600 lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;
/// Generated from the migrations, not written by hand.
const GENERATED: [&str; 1] = ["db/schema.rs"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer table: module name → row number.
fn layers() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let row = cells.get(1)?.parse::<usize>().ok()?;
            Some((cells.get(2)?.trim_matches('`').to_owned(), row))
        })
        .collect()
}

#[test]
fn modules_import_only_from_the_layers_above_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("server");
    let layers = layers();
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap();
        let module = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        if module == "main" || module == "lib" {
            continue;
        }
        let Some(own) = layers.get(&module) else {
            violations.push(format!("server/{module} is not in the layer table of docs/architecture.md"));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (i, _) in text.match_indices("crate::") {
            let used: String = text[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            match layers.get(&used) {
                Some(row) if used != module && row >= own => {
                    violations.push(format!("{} uses `{used}` (layer {row}) from layer {own}", rel.display()))
                }
                _ => {}
            }
        }
    }
    for module in layers.keys() {
        if !root.join(module).is_dir() && !root.join(format!("{module}.rs")).is_file() {
            violations.push(format!("docs/architecture.md lists `{module}`, which server/ does not have"));
        }
    }
    violations.sort();
    violations.dedup();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn no_hand_written_source_file_passes_600_lines() {
    let mut files = Vec::new();
    for dir in ["server", "tests", "benches"] {
        sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter(|f| !GENERATED.iter().any(|g| f.ends_with(g)))
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} has {lines} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}
