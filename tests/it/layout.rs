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
