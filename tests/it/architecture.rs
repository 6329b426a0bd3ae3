//! ARCHITECTURE.md's rules, checked against the code: no file cycles inside
//! a crate, and the "must not depend on" list. The import graph is read from
//! the sources (`crate::…`, `super::…` and `envid_server::…` paths outside
//! comments and test modules), so a new dependency that breaks a rule fails
//! here with the file and line that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside one crate: `["store", "view"]`; the crate root is `[]`.
type ModPath = Vec<String>;

/// One reference from a file to a module of the same crate.
#[derive(Clone, Debug)]
struct Reference {
    from: ModPath,
    to: ModPath,
    file: PathBuf,
    line: usize,
}

struct Crate {
    name: &'static str,
    references: Vec<Reference>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The crates and their library roots.
fn crates() -> Vec<Crate> {
    [
        ("envid", "src"),
        ("envid-server", "crates/envid-server/src"),
        ("envid-cli", "crates/envid-cli/src"),
        ("envid-ffi", "crates/envid-ffi/src"),
    ]
    .into_iter()
    .map(|(name, dir)| read_crate(name, &repo().join(dir)))
    .collect()
}

fn read_crate(name: &'static str, src: &Path) -> Crate {
    let mut modules = BTreeMap::new();
    collect(src, src, &mut modules);
    let mut references = Vec::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in module_references(&text, module) {
            let to = deepest_module(&modules, &target);
            references.push(Reference {
                from: module.clone(),
                to,
                file: file.strip_prefix(repo()).unwrap_or(file).to_path_buf(),
                line,
            });
        }
    }
    Crate { name, references }
}

/// Every `.rs` file below `dir`, by module path. Binaries (`src/bin/`,
/// `main.rs` beside `lib.rs`) are crates of their own and left out.
fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<ModPath, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap();
        if rel.starts_with("bin") {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let mut module: ModPath = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        match module.last().map(String::as_str) {
            Some("lib") if module.len() == 1 => module.clear(),
            Some("main") if module.len() == 1 => {
                if root.join("lib.rs").exists() {
                    continue;
                }
                module.clear();
            }
            Some("mod") => {
                module.pop();
            }
            _ => {}
        }
        out.insert(module, path);
    }
}

/// The module paths `text` (the file of `module`) names, with their line:
/// `crate::a::b`, `crate::{a, b::c}`, `super::x` resolved against `module`.
/// Comments, doc comments and everything from the first `#[cfg(test)]` on
/// are skipped: they are not dependencies of the product.
fn module_references(text: &str, module: &ModPath) -> Vec<(usize, ModPath)> {
    let mut found = Vec::new();
    let mut joined = String::new();
    let mut line_of = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let code = match line.find("//") {
            // Good enough for this code base: no `//` inside strings that
            // precede a path on the same line.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        for _ in code.chars() {
            line_of.push(n + 1);
        }
        line_of.push(n + 1);
        joined.push_str(code);
        joined.push('\n');
    }
    let chars: Vec<char> = joined.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let before_ok = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let rest: String = chars[i..chars.len().min(i + 7)].iter().collect();
        let (base, skip) = if before_ok && rest.starts_with("crate::") {
            (Vec::new(), 7)
        } else if before_ok && rest.starts_with("super::") {
            let mut base = module.clone();
            let mut j = i;
            while chars[j..].iter().take(7).collect::<String>() == "super::" {
                base.pop();
                j += 7;
            }
            (base, j - i)
        } else {
            i += 1;
            continue;
        };
        let line = line_of[i];
        let (paths, end) = parse_tree(&chars, i + skip);
        for p in paths {
            let mut full = base.clone();
            full.extend(p);
            found.push((line, full));
        }
        i = end.max(i + 1);
    }
    found
}

/// Parses `a::b::c` or `a::{b, c::d}` at `at`; returns the paths and the end.
fn parse_tree(chars: &[char], mut at: usize) -> (Vec<ModPath>, usize) {
    let mut prefix = Vec::new();
    loop {
        if chars.get(at) == Some(&'{') {
            let mut out = Vec::new();
            at += 1;
            loop {
                while chars
                    .get(at)
                    .is_some_and(|c| c.is_whitespace() || *c == ',')
                {
                    at += 1;
                }
                match chars.get(at) {
                    Some('}') | None => return (out, at + 1),
                    _ => {}
                }
                let (inner, end) = parse_tree(chars, at);
                for p in inner {
                    let mut full = prefix.clone();
                    full.extend(p);
                    out.push(full);
                }
                if end <= at {
                    return (out, at + 1);
                }
                at = end;
            }
        }
        let start = at;
        while chars
            .get(at)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            at += 1;
        }
        if start == at {
            return (vec![prefix], at);
        }
        prefix.push(chars[start..at].iter().collect());
        if chars.get(at) == Some(&':') && chars.get(at + 1) == Some(&':') {
            at += 2;
        } else {
            return (vec![prefix], at);
        }
    }
}

/// The longest prefix of `path` that is a module of the crate.
fn deepest_module(modules: &BTreeMap<ModPath, PathBuf>, path: &ModPath) -> ModPath {
    let mut p = path.clone();
    while !p.is_empty() && !modules.contains_key(&p) {
        p.pop();
    }
    p
}

/// For each directory (module with children), the edges between its
/// children that the references make: a reference from anywhere in child A
/// to anywhere in sibling B is an edge A → B. References between a module
/// and its own ancestors (a `mod.rs` and what it re-exports, `super::`
/// types) are the module tree itself, not edges.
fn sibling_edges(c: &Crate) -> BTreeMap<ModPath, BTreeMap<(String, String), Reference>> {
    let mut levels: BTreeMap<ModPath, BTreeMap<(String, String), Reference>> = BTreeMap::new();
    for r in &c.references {
        let common = r.from.iter().zip(&r.to).take_while(|(a, b)| a == b).count();
        if common == r.from.len() || common == r.to.len() {
            continue;
        }
        let parent = r.from[..common].to_vec();
        let edge = (r.from[common].clone(), r.to[common].clone());
        levels
            .entry(parent)
            .or_default()
            .entry(edge)
            .or_insert_with(|| r.clone());
    }
    levels
}

/// The cycles of a directed graph, each once (by its smallest node).
fn cycles(edges: &BTreeMap<(String, String), Reference>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let mut found = Vec::new();
    for start in &nodes {
        // Depth-first search for paths start → … → start through nodes
        // greater than start (each cycle is reported from its smallest node).
        let mut stack = vec![(vec![(*start).clone()], BTreeSet::new())];
        while let Some((path, seen)) = stack.pop() {
            let last = path.last().unwrap();
            for (a, b) in edges.keys() {
                if a != last {
                    continue;
                }
                if b == *start {
                    found.push(path.clone());
                } else if b > *start && !seen.contains(b) {
                    let mut next = path.clone();
                    next.push(b.clone());
                    let mut seen = seen.clone();
                    seen.insert(b.clone());
                    stack.push((next, seen));
                }
            }
        }
    }
    found
}

#[test]
fn no_file_cycles_inside_a_crate() {
    let mut report = String::new();
    for c in crates() {
        for (parent, edges) in sibling_edges(&c) {
            for cycle in cycles(&edges) {
                let dir = if parent.is_empty() {
                    String::from("(root)")
                } else {
                    parent.join("::")
                };
                report.push_str(&format!("{} {dir}: {}", c.name, cycle.join(" → ")));
                let mut ring = cycle.clone();
                ring.push(cycle[0].clone());
                for pair in ring.windows(2) {
                    let r = &edges[&(pair[0].clone(), pair[1].clone())];
                    report.push_str(&format!(
                        "\n    {} → {}: {}:{}",
                        pair[0],
                        pair[1],
                        r.file.display(),
                        r.line
                    ));
                }
                report.push('\n');
            }
        }
    }
    assert!(report.is_empty(), "file cycles:\n{report}");
}

/// The modules (top-level, of the library) that `module` may use.
fn may_use(module: &str) -> Option<&'static [&'static str]> {
    Some(match module {
        // The vocabulary: depends on nothing else in the crate.
        "env_type" | "location" | "source" | "atomic_file" | "vars" => &[],
        "model" => &["env_type"],
        // The wire types: what the service and every client share.
        "protocol" => &["model", "env_type"],
        // What every client shares; never a client itself.
        "client" => &["model", "protocol", "env_type", "read"],
        _ => return None,
    })
}

#[test]
fn library_modules_use_only_what_architecture_md_allows() {
    let lib = crates().into_iter().find(|c| c.name == "envid").unwrap();
    let mut broken = Vec::new();
    for r in &lib.references {
        let (Some(from), Some(to)) = (r.from.first(), r.to.first()) else {
            continue;
        };
        if from == to {
            continue;
        }
        if let Some(allowed) = may_use(from) {
            if !allowed.contains(&to.as_str()) {
                broken.push(format!(
                    "{from} must not use {to}: {}:{}",
                    r.file.display(),
                    r.line
                ));
            }
        }
    }
    broken.dedup();
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_library_never_depends_on_the_service_or_an_async_runtime() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let deps = manifest["dependencies"].as_table().unwrap();
    for banned in ["envid-server", "tokio", "axum", "hyper", "etcd-client"] {
        assert!(
            !deps.contains_key(banned),
            "the library depends on {banned}: it is loaded into JVMs and must not run the service's runtime"
        );
    }
}

#[test]
fn the_cli_where_am_i_commands_do_not_touch_the_service() {
    // `envid inspect`, `check` and `explain` are the main job: they read
    // files and probe the host, and must not need the service's runtime.
    for cmd in ["inspect", "check", "explain"] {
        let path = repo().join(format!("crates/envid-cli/src/cmd/{cmd}.rs"));
        let text = std::fs::read_to_string(&path).unwrap();
        for banned in ["envid_server", "tokio", "etcd"] {
            assert!(!text.contains(banned), "{} names {banned}", path.display());
        }
    }
}

#[test]
fn the_service_store_never_depends_on_its_handlers() {
    // The store is below the HTTP API: handlers use the store, never the
    // reverse, so a store can be tested and benched without a router.
    let server = crates()
        .into_iter()
        .find(|c| c.name == "envid-server")
        .unwrap();
    let broken: Vec<String> = server
        .references
        .iter()
        .filter(|r| r.from.first().is_some_and(|m| m == "store"))
        .filter(|r| r.to.first().is_some_and(|m| m == "http"))
        .map(|r| format!("{}:{}", r.file.display(), r.line))
        .collect();
    assert!(broken.is_empty(), "store uses http: {broken:?}");
}

#[test]
fn the_reader_of_references_sees_what_it_must() {
    // The checks above are only as good as this parser.
    let text = "use crate::a::{b, c::D};\nuse super::e;\n// use crate::ignored;\nfn f() { crate::g::h(); }\n#[cfg(test)]\nuse crate::tests_only;\n";
    let found: Vec<ModPath> = module_references(text, &vec!["x".into(), "y".into()])
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let want: Vec<ModPath> = [
        vec!["a", "b"],
        vec!["a", "c", "D"],
        vec!["x", "e"],
        vec!["g", "h"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(found, want);
}

#[test]
fn no_source_file_is_over_800_lines() {
    // A file past 800 lines holds several concerns; split it along them.
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, usize)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !["target", "corpus", "artifacts", ".git", "node_modules"]
                    .contains(&name.as_str())
                {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") {
                let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                out.push((path, lines));
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo(), &mut files);
    assert!(files.len() > 100, "the walk found the sources");
    let long: Vec<String> = files
        .iter()
        .filter(|(_, n)| *n > 800)
        .map(|(p, n)| format!("{} ({n} lines)", p.strip_prefix(repo()).unwrap().display()))
        .collect();
    assert!(long.is_empty(), "over 800 lines: {long:?}");
}
