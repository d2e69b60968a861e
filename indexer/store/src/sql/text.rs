//! A cheap look at a query's text before any database sees it: how many statements, the words
//! they start with, and the functions refused outright.

/// The words SQLite statements start with (its grammar's `cmd`).
pub(super) const STATEMENTS: [&str; 23] = [
    "ALTER",
    "ANALYZE",
    "ATTACH",
    "BEGIN",
    "COMMIT",
    "CREATE",
    "DELETE",
    "DETACH",
    "DROP",
    "END",
    "EXPLAIN",
    "INSERT",
    "PRAGMA",
    "REINDEX",
    "RELEASE",
    "REPLACE",
    "ROLLBACK",
    "SAVEPOINT",
    "SELECT",
    "UPDATE",
    "VACUUM",
    "VALUES",
    "WITH",
];

/// Whether a statement starting with these words is a query (`WITH … DELETE` passes here and
/// is refused by the read-only connection).
pub(super) fn is_query(leading: &[String]) -> bool {
    let query =
        |w: Option<&String>| w.is_some_and(|w| ["SELECT", "WITH", "VALUES"].contains(&w.as_str()));
    match leading.first().map(String::as_str) {
        Some("EXPLAIN") if leading.get(1).is_some_and(|w| w == "QUERY") => {
            leading.get(2).is_some_and(|w| w == "PLAN") && query(leading.get(3))
        }
        Some("EXPLAIN") => query(leading.get(1)),
        _ => query(leading.first()),
    }
}

/// What [`scan`] found in a query's text.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Text {
    /// Statements: non-empty pieces between `;` outside strings, quoted names and comments.
    pub(super) statements: usize,
    /// The first statement's leading words (up to 4, upper-cased), up to its first other token.
    pub(super) leading: Vec<String>,
    /// Whether a word of the text (outside strings and comments) names a table-valued PRAGMA
    /// function (`pragma_…`, SQLite).
    pub(super) pragma_function: bool,
    /// Whether a word of the text is `load_extension` (SQLite).
    pub(super) load_extension: bool,
}

/// Counts the statements of `sql` and reads its first word, skipping comments, string literals
/// and quoted identifiers (SQLite's lexical rules; the PostgreSQL server counts statements itself
/// and refuses more than one in a prepared statement).
pub(super) fn scan(sql: &str) -> Text {
    let b = sql.as_bytes();
    let (mut i, mut statements, mut current) = (0, 0, false);
    let (mut leading, mut collecting) = (Vec::new(), true);
    let (mut pragma_function, mut load_extension) = (false, false);
    let closing = |open: u8| match open {
        b'[' => b']',
        c => c,
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'\'' | b'"' | b'`' | b'[' => {
                current = true;
                collecting = false;
                let close = closing(c);
                i += 1;
                let opened = i;
                while i < b.len() {
                    if b[i] == close {
                        // A doubled quote stands for itself.
                        if close != b']' && b.get(i + 1) == Some(&close) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                // A quoted name is still a name: SQLite resolves "pragma_database_list" (and a
                // string where a name is expected) as the unquoted one.
                let quoted = sql
                    .get(opened..i.min(b.len()))
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_uppercase();
                pragma_function |= quoted.starts_with("PRAGMA_");
                load_extension |= quoted == "LOAD_EXTENSION";
                i += 1;
            }
            b';' => {
                if current {
                    statements += 1;
                }
                current = false;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = b[i..]
                    .iter()
                    .position(|c| !c.is_ascii_alphanumeric() && *c != b'_' && *c != b'$')
                    .map_or(b.len(), |n| i + n);
                let word = sql[i..end].to_ascii_uppercase();
                pragma_function |= word.starts_with("PRAGMA_");
                load_extension |= word == "LOAD_EXTENSION";
                if statements == 0 && collecting && leading.len() < 4 {
                    leading.push(word);
                }
                current = true;
                i = end;
            }
            _ => {
                collecting = false;
                current = true;
                i += 1;
            }
        }
    }
    if current {
        statements += 1;
    }
    Text {
        statements,
        leading,
        pragma_function,
        load_extension,
    }
}
