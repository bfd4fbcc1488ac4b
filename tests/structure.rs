//! House rules that keep the workspace easy to live in, checked over the source tree:
//!
//! 1. no import cycle between the modules of a library crate (`use crate::…`, `crate::…` paths and
//!    `super::…` paths outside `#[cfg(test)]` code; a module may use its ancestors and
//!    descendants, the layering is between siblings);
//! 2. no library source file above 800 lines unless its module doc says why, in a line that
//!    starts with `//! File length:`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "bin") {
                rs_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a library source file (`src/a/b.rs` and `src/a/b/mod.rs` → `[a, b]`).
fn module_path(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = parts.pop()?;
    match last.as_str() {
        "main.rs" if parts.is_empty() => None,
        "lib.rs" if parts.is_empty() => Some(parts),
        "mod.rs" => Some(parts),
        name => {
            parts.push(name.trim_end_matches(".rs").to_string());
            Some(parts)
        }
    }
}

/// Non-test, non-comment code of a file.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Leading lower-case path segments of `s` (`a::b::Type` → `[a, b]`), and whether a `{` group
/// follows them.
fn leading_segments(s: &str) -> (Vec<String>, Option<usize>) {
    let mut segs = Vec::new();
    let mut rest = s;
    let mut consumed = 0;
    loop {
        let trimmed = rest.trim_start();
        consumed += rest.len() - trimmed.len();
        rest = trimmed;
        if rest.starts_with('{') {
            return (segs, Some(consumed));
        }
        let n = rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len());
        let ident = &rest[..n];
        if ident.is_empty() || !ident.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            return (segs, None);
        }
        let after = &rest[n..];
        if !after.starts_with("::") {
            // A final lower-case segment is an item (function, macro) or a module; keep it, the
            // resolution below takes the longest prefix that is a module.
            segs.push(ident.to_string());
            return (segs, None);
        }
        segs.push(ident.to_string());
        rest = &after[2..];
        consumed += n + 2;
    }
}

/// Top-level items of a `{ … }` group starting at `s[0] == '{'`.
fn group_items(s: &str) -> Vec<String> {
    let mut depth = 0;
    let mut items = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth > 1 {
                    cur.push(c);
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(std::mem::take(&mut cur));
                    break;
                }
                cur.push(c);
            }
            ',' if depth == 1 => items.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    items
}

/// Module paths (possibly with a trailing item name) referenced by `code`, relative to the crate.
fn references(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `super` of `a/b.rs` and of `a/b/mod.rs` (both module `a::b`) is `a`.
    let parent = here[..here.len().saturating_sub(1)].to_vec();
    for (anchor, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut start = 0;
        while let Some(i) = code[start..].find(anchor) {
            let at = start + i;
            start = at + anchor.len();
            // Part of a longer path (`a::crate::`, `super::super::`): its first anchor handles it.
            if code[..at].ends_with(|c: char| is_ident_char(c) || c == ':') {
                continue;
            }
            let mut base = base.clone();
            let mut rest = &code[start..];
            while anchor == "super::" && rest.starts_with("super::") {
                base.pop();
                rest = &rest["super::".len()..];
            }
            let (segs, group) = leading_segments(rest);
            let mut prefix = base;
            prefix.extend(segs);
            match group {
                Some(off) => {
                    for item in group_items(&rest[off..]) {
                        let (inner, _) = leading_segments(&item);
                        let mut p = prefix.clone();
                        p.extend(inner);
                        out.push(p);
                    }
                }
                None => out.push(prefix),
            }
        }
    }
    out
}

struct CrateGraph {
    /// Sibling-level edges `a → b` with the files that create them.
    edges: BTreeMap<(Vec<String>, Vec<String>), BTreeSet<String>>,
}

fn crate_graph(src: &Path) -> CrateGraph {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let mut modules: BTreeMap<Vec<String>, PathBuf> =
        files.iter().filter_map(|f| module_path(src, f).map(|m| (m, f.clone()))).collect();
    // Modules declared under `#[cfg(test)]` (`#[cfg(test)] mod tests;`, a test oracle) are test
    // code: they may use anything.
    let mut test_only: Vec<Vec<String>> = Vec::new();
    for (here, file) in &modules {
        let text = std::fs::read_to_string(file).expect("readable source");
        let mut after_cfg_test = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("#[cfg(test)]") {
                after_cfg_test = true;
            }
            let decl = line.trim_start_matches("#[cfg(test)]").trim_start();
            let decl = decl.strip_prefix("pub(crate) ").or_else(|| decl.strip_prefix("pub ")).unwrap_or(decl);
            if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';'))
                && after_cfg_test
            {
                let mut m = here.clone();
                m.push(name.trim().to_string());
                test_only.push(m);
            }
            if !line.starts_with("#[") && !line.is_empty() {
                after_cfg_test = line.starts_with("#[cfg(test)]");
            }
        }
    }
    modules.retain(|m, _| !test_only.iter().any(|t| m.starts_with(t)));
    let mut edges: BTreeMap<(Vec<String>, Vec<String>), BTreeSet<String>> = BTreeMap::new();
    for (here, file) in &modules {
        let text = std::fs::read_to_string(file).expect("readable source");
        for r in references(&code_of(&text), here) {
            // Longest prefix that is a module of the crate.
            let Some(target) = (0..=r.len()).rev().map(|n| r[..n].to_vec()).find(|p| modules.contains_key(p)) else {
                continue;
            };
            let common = here.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common == here.len() || common == target.len() {
                continue; // ancestor or descendant
            }
            let a = here[..=common].to_vec();
            let b = target[..=common].to_vec();
            edges.entry((a, b)).or_default().insert(file.display().to_string());
        }
    }
    CrateGraph { edges }
}

/// One cycle of the graph, if any, as a list of module paths.
fn find_cycle(g: &CrateGraph) -> Option<Vec<String>> {
    let mut adj: BTreeMap<&Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
    for (a, b) in g.edges.keys() {
        adj.entry(a).or_default().push(b);
    }
    // 0 = unseen, 1 = on the stack, 2 = done.
    let mut state: BTreeMap<&Vec<String>, u8> = BTreeMap::new();
    fn dfs<'a>(
        n: &'a Vec<String>,
        adj: &BTreeMap<&'a Vec<String>, Vec<&'a Vec<String>>>,
        state: &mut BTreeMap<&'a Vec<String>, u8>,
        stack: &mut Vec<&'a Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for &m in adj.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let pos = stack.iter().position(|x| *x == m).unwrap_or(0);
                    let mut cyc: Vec<String> = stack[pos..].iter().map(|p| p.join("::")).collect();
                    cyc.push(m.join("::"));
                    return Some(cyc);
                }
                0 => {
                    if let Some(c) = dfs(m, adj, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let nodes: Vec<&Vec<String>> = adj.keys().copied().collect();
    for n in nodes {
        if state.get(n).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = dfs(n, &adj, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn crate_src_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/ exists")
        .flatten()
        .map(|e| e.path().join("src"))
        .filter(|p| p.join("lib.rs").exists())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn no_import_cycles_between_modules() {
    let mut problems = Vec::new();
    for src in crate_src_dirs() {
        let g = crate_graph(&src);
        if let Some(cycle) = find_cycle(&g) {
            let files: Vec<String> = cycle
                .windows(2)
                .filter_map(|w| {
                    let key =
                        (w[0].split("::").map(String::from).collect(), w[1].split("::").map(String::from).collect());
                    g.edges.get(&key).map(|f| format!("{} -> {}: {:?}", w[0], w[1], f))
                })
                .collect();
            problems.push(format!("{}: cycle {}\n    {}", src.display(), cycle.join(" -> "), files.join("\n    ")));
        }
    }
    assert!(problems.is_empty(), "import cycles:\n{}", problems.join("\n"));
}

#[test]
fn the_cycle_detector_sees_a_cycle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("train")).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "pub mod data;\npub mod train;\npub mod experiment;\n").expect("write");
    std::fs::write(src.join("data.rs"), "pub struct D;\n").expect("write");
    std::fs::write(src.join("experiment.rs"), "use crate::{data::D, train::step::Step};\n").expect("write");
    std::fs::write(src.join("train/mod.rs"), "pub mod step;\nuse super::data::D;\n").expect("write");
    std::fs::write(src.join("train/step.rs"), "use super::super::data::D;\npub struct Step;\n").expect("write");
    assert_eq!(find_cycle(&crate_graph(&src)), None, "a layered crate has no cycle");
    // experiment → data exists; data → experiment closes a cycle.
    std::fs::write(src.join("data.rs"), "pub struct D;\nfn f() { let _ = crate::experiment::run; }\n").expect("write");
    let cyc = find_cycle(&crate_graph(&src)).expect("a cycle");
    assert!(cyc.contains(&"data".to_string()) && cyc.contains(&"experiment".to_string()), "{cyc:?}");
    // Between siblings inside a directory module.
    std::fs::write(src.join("data.rs"), "pub struct D;\n").expect("write");
    std::fs::write(src.join("train/mod.rs"), "pub mod step;\npub mod sched;\n").expect("write");
    std::fs::write(src.join("train/sched.rs"), "use super::step::Step;\npub struct S;\n").expect("write");
    std::fs::write(src.join("train/step.rs"), "use crate::train::sched::S;\npub struct Step;\n").expect("write");
    let cyc = find_cycle(&crate_graph(&src)).expect("a sibling cycle");
    assert!(cyc.contains(&"train::step".to_string()) && cyc.contains(&"train::sched".to_string()), "{cyc:?}");
    // Test-only modules may use anything: `train::tests` → `experiment` → `train` is no cycle.
    std::fs::write(src.join("train/step.rs"), "pub struct Step;\n").expect("write");
    std::fs::write(src.join("train/mod.rs"), "pub mod step;\npub mod sched;\n#[cfg(test)]\nmod tests;\n")
        .expect("write");
    std::fs::write(src.join("train/tests.rs"), "use crate::experiment::run;\n").expect("write");
    assert_eq!(find_cycle(&crate_graph(&src)), None, "test modules are not layered");
}

#[test]
fn long_files_state_why() {
    let mut long = Vec::new();
    for src in crate_src_dirs() {
        let mut files = Vec::new();
        rs_files(&src, &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).expect("readable source");
            let n = text.lines().count();
            if n > MAX_LINES && !text.lines().any(|l| l.starts_with("//! File length:")) {
                long.push(format!("{} ({n} lines)", f.display()));
            }
        }
    }
    assert!(long.is_empty(), "files above {MAX_LINES} lines without a `//! File length:` reason:\n{}", long.join("\n"));
}
