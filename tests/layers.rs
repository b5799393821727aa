//! The layers of the library: the top-level modules of `src/` depend on each other one way, in
//! the order the crate doc (`src/lib.rs`) states. A module may use itself and the modules before
//! it in [`ORDER`], never one after it, so every dependency cycle is a test failure.
//!
//! A module is a file `src/<m>.rs` with everything under `src/<m>/`. Its dependencies are the
//! `crate::<m>` paths of its code (`use crate::{a, b::C}` groups included, and a name the crate
//! root re-exports counts as its module), and `super::` chains that climb out of it. Comments
//! (so doc links) and test code do not count: a `#[cfg(test)]` item (a `mod tests { … }` at the
//! end of a file runs to its end) and a file named `tests.rs` or declared `#[cfg(test)] mod x;`.
//! The scan works on lines, not a Rust parse: modules declared inline count as their file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first: the order of the list in the crate doc of `src/lib.rs`.
const ORDER: &[&str] = &[
    "spec",
    "rng",
    "batch",
    "kernels",
    "format",
    "infer",
    "reference",
    "reload",
    "metrics",
    "train",
    "data",
    "interop",
    "api",
    "fixtures",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|x| x == "rs") {
            files.push(path);
        }
    }
}

/// The module path of a file under `src/`: `train/fused.rs` is `[train, fused]`, `train/mod.rs`
/// is `[train]`, `lib.rs` is `[]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut path: Vec<String> = relative
        .iter()
        .map(|s| s.to_str().unwrap().to_string())
        .collect();
    let last = path.pop().unwrap();
    let stem = last.strip_suffix(".rs").unwrap();
    if stem != "mod" && !(path.is_empty() && stem == "lib") {
        path.push(stem.to_string());
    }
    path
}

/// `line` without a trailing `//` comment (a `//` inside a string literal is kept).
fn strip_trailing_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// The code of a file that the non-test build compiles, as `(line number, text)`, without
/// comments; and the names of the submodules it declares `#[cfg(test)] mod name;`.
fn non_test_code(text: &str) -> (Vec<(usize, String)>, Vec<String>) {
    let lines: Vec<(usize, String)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, strip_trailing_comment(l).to_string()))
        .collect();
    let mut code = Vec::new();
    let mut test_files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (number, line) = &lines[i];
        if line.trim() != "#[cfg(test)]" {
            code.push((*number, line.clone()));
            i += 1;
            continue;
        }
        // Skip the item the attribute applies to (and any further attributes on it).
        i += 1;
        while i < lines.len() && lines[i].1.trim_start().starts_with("#[") {
            i += 1;
        }
        let Some((_, first)) = lines.get(i) else {
            break;
        };
        let words: Vec<&str> = first.split_whitespace().collect();
        let module = words
            .iter()
            .position(|&w| w == "mod")
            .and_then(|p| words.get(p + 1));
        match module {
            Some(name) if name.ends_with(';') => {
                test_files.push(name.trim_end_matches(';').to_string());
                i += 1;
            }
            // A test module with a body: it runs to the end of the file.
            Some(_) => break,
            None => {
                let mut depth = 0i64;
                let mut opened = false;
                while i < lines.len() {
                    let l = &lines[i].1;
                    depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
                    opened |= l.contains('{');
                    i += 1;
                    if (opened && depth <= 0) || (!opened && l.trim_end().ends_with(';')) {
                        break;
                    }
                }
            }
        }
    }
    (code, test_files)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier at the start of `s`.
fn ident(s: &str) -> &str {
    &s[..s.find(|c| !is_ident(c)).unwrap_or(s.len())]
}

/// The first path segment of each item of the `use` group that starts `s` (just after its `{`).
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if at_item_start && depth == 0 && is_ident(c) => {
                heads.push(ident(&s[i..]).to_string());
                at_item_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The crate-root names `code` refers to: what follows `crate::` (each head of a group) and
/// what follows a `super::` chain that climbs `depth` levels (out of the top-level module), with
/// the line of each. `code` is the joined code lines, so that groups may span lines.
fn root_references(code: &[(usize, String)], depth: usize) -> Vec<(usize, String)> {
    let mut joined = String::new();
    let mut line_at = Vec::new(); // line number of each byte of `joined`
    for (number, line) in code {
        joined.push_str(line);
        joined.push('\n');
        line_at.resize(joined.len(), *number);
    }
    let mut found = Vec::new();
    let push_after = |start: usize, found: &mut Vec<(usize, String)>| {
        let rest = &joined[start..];
        let line = line_at[start.min(line_at.len() - 1)];
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(group_heads(group).into_iter().map(|h| (line, h)));
        } else if !ident(rest).is_empty() {
            found.push((line, ident(rest).to_string()));
        }
    };
    for (at, _) in joined.match_indices("crate::") {
        let before = joined[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$') {
            continue;
        }
        push_after(at + "crate::".len(), &mut found);
    }
    if depth > 0 {
        let chain = "super::".repeat(depth);
        for (at, _) in joined.match_indices(&chain) {
            let before = joined[..at].chars().next_back();
            if before.is_some_and(|c| is_ident(c) || c == ':') {
                continue;
            }
            push_after(at + chain.len(), &mut found);
        }
    }
    found
}

/// The names the crate root re-exports (`pub use m::{…}` in `src/lib.rs`), each with its module.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let (code, _) = non_test_code(lib);
    let code: String = code.into_iter().map(|(_, l)| l + "\n").collect();
    let mut names = BTreeMap::new();
    for statement in code.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path = path.trim_start_matches("crate::");
        let module = ident(path).to_string();
        for name in path[module.len()..].split(|c: char| !is_ident(c)) {
            if !name.is_empty() && name != "self" && name != "as" {
                names.insert(name.to_string(), module.clone());
            }
        }
    }
    names
}

/// The module list of the crate doc of `src/lib.rs`: its numbered items, each naming its module
/// first in backticks (``1. [`spec`]: …``).
fn documented_order(lib: &str) -> Vec<String> {
    let mut order = Vec::new();
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim_start();
        let digits = doc.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
        let Some(item) = doc[digits..].strip_prefix(". ").filter(|_| digits > 0) else {
            continue;
        };
        let number: usize = doc[..digits].parse().unwrap();
        assert_eq!(
            number,
            order.len() + 1,
            "src/lib.rs: the module list is numbered out of order at {line:?}"
        );
        let name = item
            .split('`')
            .nth(1)
            .unwrap_or_else(|| panic!("src/lib.rs: no `module` named in {line:?}"));
        order.push(name.to_string());
    }
    order
}

#[test]
fn the_order_is_the_one_the_crate_doc_states() {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    assert_eq!(
        documented_order(&lib),
        ORDER,
        "the numbered module list in the crate doc of src/lib.rs and ORDER in tests/layers.rs differ"
    );
}

/// The top-level modules of `src/`: its folders and its `.rs` files but `lib.rs`.
fn modules_on_disk() -> BTreeSet<String> {
    let mut on_disk = BTreeSet::new();
    for entry in fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if path.is_dir() || (name != "lib" && path.extension().is_some_and(|x| x == "rs")) {
            on_disk.insert(name);
        }
    }
    on_disk
}

#[test]
fn every_module_is_in_the_order() {
    let on_disk = modules_on_disk();
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let (code, _) = non_test_code(&lib);
    let declared: BTreeSet<String> = code
        .iter()
        .filter_map(|(_, l)| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect();
    let order: BTreeSet<String> = ORDER.iter().map(|s| s.to_string()).collect();
    assert_eq!(ORDER.len(), order.len(), "ORDER names a module twice");
    assert_eq!(
        on_disk, order,
        "the top-level modules of src/ and ORDER differ"
    );
    assert_eq!(
        declared, order,
        "the modules src/lib.rs declares and ORDER differ"
    );
}

#[test]
fn modules_use_only_earlier_modules() {
    let root = src();
    let lib = fs::read_to_string(root.join("lib.rs")).unwrap();
    let reexports = root_reexports(&lib);
    let on_disk = modules_on_disk();
    let rank = |m: &str| ORDER.iter().position(|&o| o == m);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    // Files compiled only for tests: `tests.rs`, and those declared `#[cfg(test)] mod x;`.
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    let mut problems = Vec::new();
    let mut not_in_order = BTreeSet::new();
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap();
        let modules = module_path(relative);
        let Some(module) = modules.first() else {
            continue; // lib.rs: the root may name every module
        };
        let text = fs::read_to_string(path).unwrap();
        let (code, test_mods) = non_test_code(&text);
        // `x.rs` or `x/mod.rs` declares its submodules in `x/`.
        let dir = if path.file_name().unwrap() == "mod.rs" {
            path.parent().unwrap().to_path_buf()
        } else {
            path.with_extension("")
        };
        for name in test_mods {
            test_only.insert(dir.join(format!("{name}.rs")));
            test_only.insert(dir.join(&name).join("mod.rs"));
        }
        if path.file_name().unwrap() == "tests.rs" || test_only.contains(path) {
            continue;
        }
        for (line, name) in root_references(&code, modules.len()) {
            let Some(used) = on_disk
                .contains(&name)
                .then(|| name.clone())
                .or_else(|| reexports.get(&name).cloned())
            else {
                problems.push(format!(
                    "src/{}:{line}: crate::{name} is neither a module nor a re-export of the crate root",
                    relative.display()
                ));
                continue;
            };
            if used == *module {
                continue;
            }
            match (rank(module), rank(&used)) {
                (Some(a), Some(b)) if b > a => {
                    let at = format!("src/{}:{line}", relative.display());
                    edges.entry((module.clone(), used.clone())).or_insert(at);
                }
                (Some(_), Some(_)) => {}
                (a, _) => {
                    not_in_order.insert(if a.is_none() { module } else { &used }.clone());
                }
            }
        }
    }
    for module in &not_in_order {
        problems.push(format!("module {module} is not in ORDER"));
    }
    for ((from, to), at) in &edges {
        problems.push(format!("{at}: {from} uses {to}, which comes after it"));
    }
    assert!(
        problems.is_empty(),
        "modules that break the layer order (lowest first: {}):\n{}",
        ORDER.join(" -> "),
        problems.join("\n")
    );
}

/// The scanner on a made-up file: comments, groups over lines, test code, `super` chains.
#[test]
fn the_scanner_finds_what_it_should() {
    let text = r#"//! Uses [`crate::api`] in a doc link only.
use crate::{batch::Columns, spec, infer::{Model,
    Scratch}};
use super::super::kernels::Isa; // crate::data in a comment
/// crate::reload
#[cfg(test)]
pub(crate) fn only_for_tests() {
    crate::fixtures::mixed_small();
}
fn body() { let s = "// not a comment"; crate::format::check(); }
#[cfg(test)]
mod helpers;
#[cfg(test)]
mod tests {
    use crate::train::Trainer;
}
"#;
    let (code, test_mods) = non_test_code(text);
    assert_eq!(test_mods, ["helpers"]);
    let names: Vec<(usize, String)> = root_references(&code, 2);
    let want = [
        (2, "batch"),
        (2, "spec"),
        (2, "infer"),
        (4, "kernels"),
        (10, "format"),
    ];
    let mut names = names;
    names.sort_by_key(|(line, _)| *line);
    assert_eq!(
        names,
        want.map(|(l, n)| (l, n.to_string())),
        "references found in the made-up file"
    );
    // One level deep, `super::` is the crate root.
    assert_eq!(
        root_references(&[(1, "use super::metrics;".into())], 1),
        [(1, "metrics".to_string())]
    );
}
