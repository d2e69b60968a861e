//! README's layout table names every module of the crates it describes, so it stays true as
//! files are added.

/// The source files under `dir` (relative to the repository), as module names.
fn modules(dir: &str) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let stem = path.file_stem()?.to_str()?.to_string();
            let module = path.extension().is_some_and(|x| x == "rs") || path.is_dir();
            (module && !["lib", "main", "mod"].contains(&stem.as_str())).then_some(stem)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_readme_layout_names_every_module() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let layout = &readme[readme.find("## Layout").expect("a Layout section")..];
    let layout = &layout[..layout[3..].find("\n## ").map_or(layout.len(), |i| i + 3)];
    let mut missing = Vec::new();
    for dir in [
        "src/commands",
        "api/src",
        "api/src/routes",
        "indexer/src",
        "indexer/store/src",
        "scripts/simulate/src",
    ] {
        for m in modules(dir) {
            let named = [format!("`{m}`"), format!("`{m}.rs`"), format!("`{m}/`")]
                .iter()
                .any(|form| layout.contains(form.as_str()));
            if !named {
                missing.push(format!("{dir}/{m}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README's layout table does not name: {missing:?}"
    );
}

/// The crates' source folders the size and import rules cover (the binary, the indexer, its
/// store, the API; the simulator and the bindings for import circles).
const SOURCES: &[&str] = &["src", "indexer/src", "indexer/store/src", "api/src"];

/// Every `.rs` file under `dir` (relative to the repository), with its text up to its
/// `#[cfg(test)]` tail (tests are not counted); files named `tests.rs` skipped.
fn production_files(dir: &str) -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                let text = match text.find("\n#[cfg(test)]") {
                    Some(i) => text[..i].to_string(),
                    None => text,
                };
                let name = path.strip_prefix(root).unwrap().display().to_string();
                out.push((name, text));
            }
        }
    }
    out.sort();
    out
}

/// A line without its `//` comment and string literals (enough to count braces).
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let (mut in_str, mut escaped) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => break,
            // A char literal of a brace or a quote.
            '\'' if matches!(chars.clone().nth(1), Some('\'')) => {
                chars.next();
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// The length in lines of every function in `text` (from its `fn` line to its closing brace).
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = code_of(line);
        let Some(at) = code.find("fn ") else { continue };
        let before = code[..at].trim();
        let starts_item = before.split_whitespace().all(|w| {
            [
                "pub",
                "pub(crate)",
                "pub(super)",
                "async",
                "const",
                "unsafe",
            ]
            .contains(&w)
                || w.starts_with("pub(")
        });
        if !starts_item {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened) = (0i64, false);
        for (j, l) in lines.iter().enumerate().skip(i) {
            let c = code_of(l);
            for ch in c.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if !opened && c.trim_end().ends_with(';') {
                break;
            }
            if opened && depth == 0 {
                out.push((name.clone(), j - i + 1));
                break;
            }
        }
    }
    out
}

/// No production file over 600 lines, no function over 120 (README, Layout; `KeyMarket.sol` is
/// Solidity and outside it).
#[test]
fn no_big_rooms() {
    let mut over = Vec::new();
    for dir in SOURCES {
        for (name, text) in production_files(dir) {
            let lines = text.lines().count();
            if lines > 600 {
                over.push(format!("{name}: {lines} lines"));
            }
            for (f, n) in function_lengths(&text) {
                if n > 120 {
                    over.push(format!("{name}: fn {f} is {n} lines"));
                }
            }
        }
    }
    assert!(over.is_empty(), "over the size bar: {over:#?}");
}

/// The sibling modules a module's text refers to through `crate::` or `super::` (a `use` list's
/// top-level names included).
fn module_refs(text: &str, modules: &[String], own: &str) -> std::collections::BTreeSet<String> {
    let text: String = text.lines().map(code_of).collect::<Vec<_>>().join("\n");
    let mut found = std::collections::BTreeSet::new();
    for via in ["crate::", "super::"] {
        let mut rest = text.as_str();
        while let Some(i) = rest.find(via) {
            rest = &rest[i + via.len()..];
            if let Some(list) = rest.strip_prefix('{') {
                // Top-level items of the list: the first name of each.
                let mut depth = 0;
                let mut item_start = true;
                let mut name = String::new();
                for c in list.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && (c.is_alphanumeric() || c == '_') => name.push(c),
                        _ if item_start && !name.is_empty() => {
                            found.insert(std::mem::take(&mut name));
                            item_start = false;
                        }
                        _ => {}
                    }
                }
                if !name.is_empty() {
                    found.insert(name);
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.insert(name);
            }
        }
    }
    found
        .into_iter()
        .filter(|m| m != own && modules.contains(m))
        .collect()
}

/// No import circle among the top-level modules of any crate (a module that needs another's
/// items, which needs the first's, is one module in two files — or a missing third).
#[test]
fn no_import_circles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut circles = Vec::new();
    for dir in [
        "src",
        "indexer/src",
        "indexer/store/src",
        "api/src",
        "scripts/simulate/src",
        "contracts/bindings/src",
    ] {
        let mut texts = std::collections::BTreeMap::new();
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = e.unwrap().path();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            if ["lib", "main"].contains(&stem.as_str()) {
                continue;
            }
            let sub = dir.to_string() + "/" + path.file_name().unwrap().to_str().unwrap();
            let text: String = if path.is_dir() {
                production_files(&sub).into_iter().map(|(_, t)| t).collect()
            } else if path.extension().is_some_and(|x| x == "rs") {
                production_files(dir)
                    .into_iter()
                    .find(|(n, _)| *n == sub)
                    .map(|(_, t)| t)
                    .unwrap_or_default()
            } else {
                continue;
            };
            texts
                .entry(stem)
                .or_insert_with(String::new)
                .push_str(&text);
        }
        let names: Vec<String> = texts.keys().cloned().collect();
        let graph: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> = texts
            .iter()
            .map(|(m, t)| (m.as_str(), module_refs(t, &names, m)))
            .collect();
        // A circle: a module that reaches itself.
        for start in graph.keys() {
            let mut seen = std::collections::BTreeSet::new();
            let mut stack: Vec<&str> = graph[start].iter().map(String::as_str).collect();
            while let Some(m) = stack.pop() {
                if m == *start {
                    circles.push(format!("{dir}: {start} reaches itself"));
                    break;
                }
                if seen.insert(m) {
                    stack.extend(graph[m].iter().map(String::as_str));
                }
            }
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

/// The checkers themselves: a `use` list's top-level names, `crate::` paths, and function
/// lengths counted to the closing brace (braces in strings and comments ignored).
#[test]
fn the_checkers_see_what_they_should() {
    let modules: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    let text = "use crate::{a::{b, c}, d};\nfn f() { crate::e::g(); super::c::h(); }";
    let refs: Vec<String> = module_refs(text, &modules, "a").into_iter().collect();
    assert_eq!(
        refs,
        ["c", "d", "e"],
        "b is inside a's list; a is the module itself"
    );
    let text = "pub(crate) async fn one() {\n    let s = \"}}\"; // }\n    if x {\n    }\n}\nfn two();\nfn three() {}\n";
    assert_eq!(
        function_lengths(text),
        [("one".to_string(), 5), ("three".to_string(), 1)]
    );
}
