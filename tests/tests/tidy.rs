//! Tidy checks of the repository's documents, in the spirit of rust-analyzer's `tidy.rs`:
//!
//! - `ARCHITECTURE.md` names only paths that exist, and names every workspace crate, every
//!   top-level module of each crate (each `src/*.rs` but `lib.rs` and `main.rs`, each
//!   `src/*/`) and every command module `compiler/src/cli/*.rs`;
//! - no code or document cites the design notes outside the repository
//!   (`shared/design/hardware-model.md`), every citation of the hardware model names its file,
//!   `docs/hardware-model.md`, and every section it cites (`§N`) exists there.
//!
//! How a name in `ARCHITECTURE.md` resolves is written at the top of that file; [`resolve`]
//! implements it. Each check is a function of a root directory (and the document's text), so
//! the tests at the end also run it on small synthetic trees, and on a mirror of this
//! repository with one named file left out, to show that it fails when a named path is removed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A backticked path of the document: where it is, and what it resolved to (relative to the
/// root; several paths for a pattern).
struct Mention {
    line: usize,
    text: String,
    resolved: Vec<PathBuf>,
}

impl Mention {
    /// A pattern (`*`, `<name>`) must match something, but names none of what it matches: a
    /// module is named only by a name of its own.
    fn is_pattern(&self) -> bool {
        self.text.contains(['*', '<'])
    }
}

/// Whether a backticked span is a path: only path characters, and either a directory (a
/// trailing `/`) or a file name with one of the extensions below. Names outside the repository
/// (`../`) are not checked.
fn is_path(span: &str) -> bool {
    const EXTENSIONS: &[&str] =
        &["rs", "md", "toml", "py", "sh", "cir", "txt", "json", "svg", "snap", "yml"];
    let path_chars = span.chars().all(|c| c.is_ascii_alphanumeric() || "_-./*<>".contains(c))
        && !span.is_empty();
    if !path_chars || span.starts_with("../") || span.starts_with(['.', '/']) {
        return false;
    }
    if span.ends_with('/') {
        return true;
    }
    let last = span.rsplit('/').next().unwrap_or(span);
    last.rsplit_once('.').is_some_and(|(stem, ext)| !stem.is_empty() && EXTENSIONS.contains(&ext))
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|i| {
                    name.is_char_boundary(head.len() + i)
                        && glob_match(tail, &name[head.len() + i..])
                })
        }
    }
}

/// The paths under `root` that `rel` names, relative to `root`: `*` matches any part of one
/// name and `<name>` any one name; a trailing `/` asks for a directory.
fn expand(root: &Path, rel: &str) -> Vec<PathBuf> {
    let want_dir = rel.ends_with('/');
    let mut found = vec![PathBuf::new()];
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        let pattern = if part.starts_with('<') && part.ends_with('>') { "*" } else { part };
        let mut next = Vec::new();
        for dir in &found {
            if pattern.contains('*') {
                let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| glob_match(pattern, n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| dir.join(n)));
            } else if root.join(dir).join(part).exists() {
                next.push(dir.join(part));
            }
        }
        found = next;
    }
    found.retain(|p| !want_dir || root.join(p).is_dir());
    found
}

/// Resolves a name of the document: against the root, then the section's crate directory and
/// its `src/`, then every directory named earlier in the same paragraph (latest first).
fn resolve(root: &Path, name: &str, section: Option<&Path>, paragraph: &[PathBuf]) -> Vec<PathBuf> {
    let mut bases = vec![PathBuf::new()];
    if let Some(s) = section {
        bases.push(s.to_path_buf());
        bases.push(s.join("src"));
    }
    bases.extend(paragraph.iter().rev().cloned());
    for base in bases {
        let found = expand(&root.join(&base), name);
        if !found.is_empty() {
            return found.into_iter().map(|p| base.join(p)).collect();
        }
    }
    Vec::new()
}

/// Every path the document names, resolved. A level-3 heading that is a backticked directory
/// (`` ### `ir/` ``) opens that crate's section; any other heading of level 1 to 3 closes it.
/// Fenced code blocks are skipped.
fn mentions(root: &Path, doc: &str) -> Vec<Mention> {
    let mut out = Vec::new();
    let mut section: Option<PathBuf> = None;
    let mut paragraph: Vec<PathBuf> = Vec::new();
    let mut fenced = false;
    for (i, line) in doc.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if trimmed.is_empty() {
            paragraph.clear();
            continue;
        }
        let level = trimmed.chars().take_while(|&c| c == '#').count();
        if (1..=3).contains(&level) {
            section = None;
            paragraph.clear();
        }
        for (k, span) in line.split('`').enumerate() {
            if k % 2 == 0 || !is_path(span) {
                continue;
            }
            let resolved = resolve(root, span, section.as_deref(), &paragraph);
            if span.ends_with('/') {
                if let Some(dir) = resolved.first() {
                    paragraph.push(dir.clone());
                }
            }
            out.push(Mention { line: i + 1, text: span.to_string(), resolved });
        }
        if level == 3 {
            let heading = trimmed.trim_start_matches('#').trim();
            let crate_dir = heading.strip_prefix('`').and_then(|h| h.strip_suffix("/`"));
            if let Some(dir) = crate_dir.filter(|d| root.join(d).is_dir()) {
                section = Some(PathBuf::from(dir));
            }
        }
    }
    out
}

/// The members of the workspace's `Cargo.toml` (the strings of its `members = [...]`).
fn workspace_members(root: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml"))
        .map_err(|e| format!("{}: {e}", root.join("Cargo.toml").display()))?;
    let start = text.find("members").ok_or("Cargo.toml has no workspace members")?;
    let open = start + text[start..].find('[').ok_or("members is not a list")?;
    let close = open + text[open..].find(']').ok_or("members is not a list")?;
    Ok(text[open + 1..close]
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// The entries of `dir` (relative to `root`) that are `.rs` files or directories, sorted.
fn rust_entries(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir() || e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| dir.join(e.file_name()))
        .collect();
    out.sort();
    out
}

/// What the architecture document must name: every workspace crate, every top-level module of
/// each crate's `src/` (crate roots `lib.rs` and `main.rs` aside), and every module of
/// `compiler/src/cli/`.
fn required_names(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for member in workspace_members(root)? {
        let dir = PathBuf::from(&member);
        out.push(dir.clone());
        for entry in rust_entries(root, &dir.join("src")) {
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name != "lib.rs" && name != "main.rs" {
                out.push(entry);
            }
        }
    }
    let cli = Path::new("compiler/src/cli");
    out.extend(rust_entries(root, cli).into_iter().filter(|p| !root.join(p).is_dir()));
    Ok(out)
}

/// Every problem of the architecture document `doc` against the tree at `root`: paths that
/// name nothing, and crates or modules it does not name. Empty when the document is right.
fn check_architecture(root: &Path, doc: &str) -> Vec<String> {
    let found = mentions(root, doc);
    // Names are read line by line: a code span across lines would shift every span after it.
    let mut problems: Vec<String> = doc
        .lines()
        .enumerate()
        .filter(|(_, l)| l.matches('`').count() % 2 == 1 && !l.trim_start().starts_with("```"))
        .map(|(i, _)| format!("ARCHITECTURE.md:{}: a code span crosses the line's end", i + 1))
        .collect();
    problems.extend(found.iter().filter(|m| m.resolved.is_empty()).map(|m| {
        format!("ARCHITECTURE.md:{}: `{}` names no file or directory of the tree", m.line, m.text)
    }));
    let named: BTreeSet<PathBuf> =
        found.into_iter().filter(|m| !m.is_pattern()).flat_map(|m| m.resolved).collect();
    let required = match required_names(root) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    for path in required {
        let is_dir = root.join(&path).is_dir();
        let ok = named.contains(&path) || (is_dir && named.iter().any(|n| n.starts_with(&path)));
        if !ok {
            let what = if path.components().count() == 1 { "crate" } else { "module" };
            let slash = if is_dir { "/" } else { "" };
            problems.push(format!(
                "ARCHITECTURE.md does not name the {what} `{}{slash}`",
                path.display()
            ));
        }
    }
    problems
}

/// The text files a citation check reads: `.rs`, `.md`, `.toml`, `.py`, `.sh` under `root`,
/// skipping build output (`target/`), hidden directories, the fuzz seeds and corpora (inputs
/// kept byte for byte, not documents) and this file (whose test data cite the model wrongly on
/// purpose).
fn text_files(root: &Path) -> Vec<PathBuf> {
    const SKIP: &[&str] = &["fuzz/seeds", "fuzz/corpus", "fuzz/artifacts", "tests/tests/tidy.rs"];
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else { continue };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = dir.join(&name);
            let path = root.join(&rel);
            if path.is_dir() {
                let skip = name == "target"
                    || name.starts_with('.')
                    || SKIP.iter().any(|s| rel == Path::new(s));
                if !skip {
                    stack.push(rel);
                }
            } else if !SKIP.iter().any(|s| rel == Path::new(s))
                && path
                    .extension()
                    .is_some_and(|x| ["rs", "md", "toml", "py", "sh"].iter().any(|t| x == *t))
            {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// The section numbers of `docs/hardware-model.md` (its `## §N ...` headings).
fn model_sections(root: &Path) -> Result<BTreeSet<u32>, String> {
    let path = root.join("docs/hardware-model.md");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("## §"))
        .filter_map(|l| l.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect())
}

/// The section numbers cited on a line (`§3`, `§1–§4`, `§2/§4`).
fn cited_sections(line: &str) -> Vec<u32> {
    line.split('§')
        .skip(1)
        .filter_map(|s| {
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Every citation of the hardware model under `root` that points outside the repository, lacks
/// the file name, or cites a section `docs/hardware-model.md` does not have.
fn check_design_citations(root: &Path) -> Vec<String> {
    let sections = match model_sections(root) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for rel in text_files(root) {
        let Ok(text) = std::fs::read_to_string(root.join(&rel)) else { continue };
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", rel.display(), i + 1);
            if line.contains("shared/design/hardware-model") {
                problems.push(format!(
                    "{at}: cites the design notes outside the repository; cite docs/hardware-model.md"
                ));
            } else if line.to_lowercase().contains("hardware-model") {
                if !line.contains("hardware-model.md") {
                    problems.push(format!(
                        "{at}: cites the hardware model without its file, docs/hardware-model.md"
                    ));
                }
                for s in cited_sections(line).into_iter().filter(|s| !sections.contains(s)) {
                    problems.push(format!("{at}: docs/hardware-model.md has no §{s}"));
                }
            }
        }
    }
    problems
}

fn root() -> PathBuf {
    cimc_tests::root()
}

fn report(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}: {} problem(s):\n{}", problems.len(), problems.join("\n"));
}

/// With `CIMC_TIDY_LIST=1`, also prints what every name resolved to.
#[test]
fn tidy_architecture_md_names_existing_paths_and_every_crate_and_module() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    if std::env::var_os("CIMC_TIDY_LIST").is_some() {
        for m in mentions(&root(), &doc) {
            eprintln!("{:4} {:40} {:?}", m.line, m.text, m.resolved);
        }
    }
    report("ARCHITECTURE.md", &check_architecture(&root(), &doc));
}

#[test]
fn tidy_hardware_model_citations_stay_in_the_repository() {
    report("citations of the hardware model", &check_design_citations(&root()));
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempTree(PathBuf);

impl TempTree {
    fn new(name: &str) -> TempTree {
        let dir = std::env::temp_dir().join(format!("cimc-tidy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create a temporary directory");
        TempTree(dir)
    }

    /// Writes `files` (path, content) under the tree.
    fn with(self, files: &[(&str, &str)]) -> TempTree {
        for (path, content) in files {
            let p = self.0.join(path);
            std::fs::create_dir_all(p.parent().expect("a file has a parent"))
                .expect("cannot create a directory");
            std::fs::write(p, content).expect("cannot write a file");
        }
        self
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small workspace: crates `alpha` (modules `one.rs`, `two/`) and `compiler` (one command).
fn synthetic_tree(name: &str) -> TempTree {
    TempTree::new(name).with(&[
        ("Cargo.toml", "[workspace]\nmembers = [\"alpha\", \"compiler\"]\n"),
        ("alpha/src/lib.rs", ""),
        ("alpha/src/one.rs", ""),
        ("alpha/src/two/mod.rs", ""),
        ("alpha/src/two/inner.rs", ""),
        ("compiler/src/main.rs", ""),
        ("compiler/src/cli/mod.rs", ""),
        ("compiler/src/cli/run.rs", ""),
        ("docs/x.md", ""),
    ])
}

const SYNTHETIC_DOC: &str = "# Architecture

See `docs/x.md`.

## Code map

### `alpha/`
`one.rs`: the first module. `two/`: the second, with `inner.rs`.

### `compiler/`
`cli/`: one module per command (`run.rs`), clap in `cli/mod.rs`.
";

#[test]
fn tidy_checker_accepts_a_document_that_names_everything() {
    let t = synthetic_tree("complete");
    report("synthetic document", &check_architecture(&t.0, SYNTHETIC_DOC));
}

#[test]
fn tidy_checker_fails_when_a_named_path_is_removed() {
    let t = synthetic_tree("removed");
    std::fs::remove_file(t.0.join("alpha/src/two/inner.rs")).expect("remove a file");
    let problems = check_architecture(&t.0, SYNTHETIC_DOC);
    assert_eq!(
        problems,
        ["ARCHITECTURE.md:8: `inner.rs` names no file or directory of the tree"],
        "{problems:?}"
    );
    std::fs::remove_file(t.0.join("docs/x.md")).expect("remove a file");
    let problems = check_architecture(&t.0, SYNTHETIC_DOC);
    assert!(problems.iter().any(|p| p.contains("`docs/x.md` names no")), "{problems:?}");
}

#[test]
fn tidy_checker_fails_on_unnamed_crates_and_modules() {
    let t = synthetic_tree("unnamed").with(&[
        ("alpha/src/three.rs", ""),
        ("compiler/src/cli/sim.rs", ""),
        ("beta/src/lib.rs", ""),
    ]);
    std::fs::write(t.0.join("Cargo.toml"), "members = [\"alpha\", \"compiler\", \"beta\"]\n")
        .expect("write Cargo.toml");
    let problems = check_architecture(&t.0, SYNTHETIC_DOC);
    assert_eq!(
        problems,
        [
            "ARCHITECTURE.md does not name the module `alpha/src/three.rs`",
            "ARCHITECTURE.md does not name the crate `beta/`",
            "ARCHITECTURE.md does not name the module `compiler/src/cli/sim.rs`",
        ],
        "{problems:?}"
    );
}

#[test]
fn tidy_checker_does_not_count_a_pattern_as_naming_modules() {
    let t = synthetic_tree("pattern");
    let doc = SYNTHETIC_DOC.replace("`one.rs`: the first module.", "`src/*.rs`: the modules.");
    let problems = check_architecture(&t.0, &doc);
    assert_eq!(
        problems,
        ["ARCHITECTURE.md does not name the module `alpha/src/one.rs`"],
        "{problems:?}"
    );
}

#[test]
fn tidy_checker_flags_a_code_span_across_lines() {
    let t = synthetic_tree("span");
    let doc = SYNTHETIC_DOC.replace("`one.rs`: the first", "`one.rs`: the `first\nmodule`, ");
    let problems = check_architecture(&t.0, &doc);
    assert_eq!(
        problems,
        [
            "ARCHITECTURE.md:8: a code span crosses the line's end",
            "ARCHITECTURE.md:9: a code span crosses the line's end",
            // The spans after it are read shifted: `two/` is text.
            "ARCHITECTURE.md does not name the module `alpha/src/two/`",
        ],
        "{problems:?}"
    );
}

#[test]
fn tidy_checker_resolves_against_the_section_and_the_paragraph_only() {
    let t = synthetic_tree("scopes");
    // `inner.rs` resolves in the paragraph that names `two/`, not in the next one; `one.rs`
    // resolves in `alpha/`'s section, not after another heading.
    let doc = format!("{SYNTHETIC_DOC}\n`inner.rs` again.\n\n## Decisions\n`one.rs`, `alpha/src/*.rs`, `alpha/src/<m>/inner.rs`.\n");
    let problems = check_architecture(&t.0, &doc);
    assert_eq!(
        problems,
        [
            "ARCHITECTURE.md:13: `inner.rs` names no file or directory of the tree",
            "ARCHITECTURE.md:16: `one.rs` names no file or directory of the tree",
        ],
        "{problems:?}"
    );
}

#[test]
fn tidy_citation_check_flags_outside_paths_bare_names_and_missing_sections() {
    let t = TempTree::new("citations").with(&[
        ("docs/hardware-model.md", "# The hardware model\n\n## §1 Crossbar\n\n## §2 Codes\n"),
        ("a/src/ok.rs", "//! The arithmetic of `docs/hardware-model.md` §1 and §2.\n"),
        ("a/src/outside.rs", "//! See `../shared/design/hardware-model.md` §1.\n"),
        ("a/src/bare.rs", "/// As hardware-model §2 says.\n"),
        ("docs/y.md", "The ADC ([`hardware-model.md`](hardware-model.md) §3).\n"),
        ("fuzz/seeds/t/seed.toml", "# hardware-model §9: data, not checked\n"),
    ]);
    let problems = check_design_citations(&t.0);
    assert_eq!(
        problems,
        [
            "a/src/bare.rs:1: cites the hardware model without its file, docs/hardware-model.md",
            "a/src/outside.rs:1: cites the design notes outside the repository; cite docs/hardware-model.md",
            "docs/y.md:1: docs/hardware-model.md has no §3",
        ],
        "{problems:?}"
    );
}

/// A mirror of the repository under a temporary directory, made of symbolic links, without
/// the file `removed`: the directories on the way to it are real, everything else is a link.
#[cfg(unix)]
fn mirror_without(name: &str, removed: &Path) -> TempTree {
    let t = TempTree::new(name);
    let (src, dst) = (root(), t.0.clone());
    let mut at = PathBuf::new();
    let parts: Vec<_> = removed.components().collect();
    for (depth, part) in parts.iter().enumerate() {
        let here = src.join(&at);
        for e in std::fs::read_dir(&here).expect("read a directory of the repository") {
            let e = e.expect("a directory entry");
            let name = e.file_name();
            if name == part.as_os_str() {
                continue;
            }
            std::os::unix::fs::symlink(e.path(), dst.join(&at).join(&name))
                .expect("create a symbolic link");
        }
        at.push(part);
        if depth + 1 < parts.len() {
            std::fs::create_dir(dst.join(&at)).expect("create a directory");
        }
    }
    t
}

#[cfg(unix)]
#[test]
fn tidy_architecture_md_fails_when_a_file_it_names_is_removed() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let removed = Path::new("ir/src/graph.rs");
    let mirror = mirror_without("mirror", removed);
    let problems = check_architecture(&mirror.0, &doc);
    assert!(
        problems.iter().any(|p| p.contains("`graph.rs` names no file")),
        "removing {} should make ARCHITECTURE.md wrong; problems: {problems:?}",
        removed.display()
    );
    assert!(
        problems.iter().all(|p| p.contains("graph.rs")),
        "only the removed file should be missing: {problems:?}"
    );
}
