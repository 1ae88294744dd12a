//! Delimited text: one example per line, fields separated by a tab, a comma,
//! `::` or any other string.
//!
//! What each field holds comes from a [`Spec`]: columns named on the command
//! line (`--columns user,item,rating:real`, parsed by [`parse_columns`]),
//! else inferred from the header's names, else the MovieLens convention
//! `user item [rating [timestamp]]`. Empty lines and lines starting with `#`
//! are skipped everywhere.
//!
//! The helpers at the bottom (line numbering, the bad-line policy, number
//! parsing, Latin-1 decoding) are shared with the MovieLens and Last.fm readers.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::Path;

use super::{shown, BadLines, Column, ColumnData, DataError, Dataset, IdMap, Location};

/// How to read a delimited file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// The field separator; `None` detects it from the first line: a tab if
    /// it has one, else a comma, else `;`, else runs of whitespace.
    pub separator: Option<String>,
    /// Whether the first line names the columns.
    pub header: bool,
    /// What each field holds, in order; empty to infer it.
    pub columns: Vec<ColumnSpec>,
    /// Kinds declared for columns the header names, which win over what
    /// their values suggest: a model input bound to a column of numeric
    /// ids (`--bind u=customer`) reads them as ids of its domain.
    pub declared: BTreeMap<String, ColumnKind>,
}

/// One field of a line: the column it fills and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub kind: ColumnKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// A raw id, interned into the id map of the named domain.
    Index(String),
    /// A finite number.
    Real,
    /// Integer unix seconds.
    Time,
    /// Raw ids of one domain separated by `separator`, each of weight 1.
    Bag { domain: String, separator: char },
    /// A field that is read past.
    Skip,
}

impl ColumnSpec {
    fn new(name: &str, kind: ColumnKind) -> ColumnSpec {
        ColumnSpec {
            name: name.to_string(),
            kind,
        }
    }
}

const KINDS: &str = "index, index(DOMAIN), real, time, bag, bag(DOMAIN), bag(DOMAIN,SEP) or skip";

/// Parse a column list such as
/// `user:index(user),item:index(item),rating:real,ts:time,genres:bag(genre,|),_:skip`.
///
/// Shorthands: a bare `name` is an index column of domain `name`; `name:index`
/// and `name:bag` take the name as the domain; a bare kind with a domain
/// (`index(user)`, `bag(genre)`) is named after its domain; `_` and `skip`
/// skip a field. A bag's separator defaults to `|`.
pub fn parse_columns(text: &str) -> Result<Vec<ColumnSpec>, DataError> {
    let invalid = |m: String| DataError::Invalid(format!("--columns `{text}`: {m}"));
    if text.trim().is_empty() {
        return Err(invalid("names no columns".to_string()));
    }
    let mut columns: Vec<ColumnSpec> = Vec::new();
    for item in split_top_level(text, ',').map_err(invalid)? {
        let item = item.trim();
        if item.is_empty() {
            return Err(invalid(
                "an empty entry (two commas in a row, or a trailing comma)".to_string(),
            ));
        }
        let column = parse_column(item).map_err(|m| invalid(format!("in `{item}`: {m}")))?;
        if column.kind != ColumnKind::Skip && columns.iter().any(|c| c.name == column.name) {
            return Err(invalid(format!("column `{}` is named twice", column.name)));
        }
        columns.push(column);
    }
    Ok(columns)
}

/// Split at `sep` outside parentheses.
fn split_top_level(text: &str, sep: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "a `)` without a matching `(`".to_string())?;
            }
            c if c == sep && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err("a `(` without a matching `)`".to_string());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// One entry of a column list, already trimmed and non-empty.
fn parse_column(item: &str) -> Result<ColumnSpec, String> {
    let name_end = item
        .char_indices()
        .scan(0usize, |depth, (i, ch)| {
            match ch {
                '(' => *depth += 1,
                ')' => *depth = depth.saturating_sub(1),
                _ => {}
            }
            Some((i, ch, *depth))
        })
        .find(|&(_, ch, depth)| ch == ':' && depth == 0)
        .map(|(i, _, _)| i);
    let Some(colon) = name_end else {
        // No name: a kind with its domain, a skip, or a name alone.
        if item == "_" || item == "skip" {
            return Ok(ColumnSpec::new("_", ColumnKind::Skip));
        }
        if item.contains('(') {
            let kind = parse_kind(item, None)?;
            let name = match &kind {
                ColumnKind::Index(d) | ColumnKind::Bag { domain: d, .. } => d.clone(),
                _ => {
                    return Err(
                        "only index(DOMAIN) and bag(DOMAIN) may stand without a name".to_string(),
                    )
                }
            };
            return Ok(ColumnSpec { name, kind });
        }
        check_name(item)?;
        return Ok(ColumnSpec::new(item, ColumnKind::Index(item.to_string())));
    };
    let name = item[..colon].trim();
    let kind = item[colon + 1..].trim();
    if name != "_" {
        check_name(name)?;
    }
    if kind.is_empty() {
        return Err(format!("no kind after `{name}:`; expected {KINDS}"));
    }
    let kind = parse_kind(kind, Some(name))?;
    if name == "_" && kind != ColumnKind::Skip {
        return Err("`_` names only skipped fields".to_string());
    }
    Ok(ColumnSpec::new(name, kind))
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a column without a name".to_string());
    }
    match name
        .chars()
        .find(|&c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(c) => Err(format!(
            "`{name}` is not a column name: it contains `{c}` (use letters, digits, `_`, `-` and `.`)"
        )),
        None => Ok(()),
    }
}

/// `index`, `index(user)`, `real`, `bag(genre,|)`… `name` is the default domain.
fn parse_kind(text: &str, name: Option<&str>) -> Result<ColumnKind, String> {
    let (word, args) = match text.find('(') {
        Some(open) => {
            let Some(inner) = text[open + 1..].strip_suffix(')') else {
                return Err(format!("`{text}` should end with `)`"));
            };
            (text[..open].trim(), Some(inner))
        }
        None => (text, None),
    };
    let no_args = |kind: ColumnKind| match args {
        Some(_) => Err(format!("`{word}` takes no arguments")),
        None => Ok(kind),
    };
    let default_domain = || {
        name.map(str::to_string)
            .ok_or_else(|| format!("`{word}` needs a domain: `{word}(DOMAIN)`"))
    };
    match word {
        "index" => {
            let domain = match args {
                Some(a) => domain_arg(a)?,
                None => default_domain()?,
            };
            Ok(ColumnKind::Index(domain))
        }
        "bag" => {
            let (domain, separator) = match args {
                None => (default_domain()?, '|'),
                Some(a) => match a.split_once(',') {
                    None => (domain_arg(a)?, '|'),
                    Some((d, s)) => (domain_arg(d)?, separator_arg(s)?),
                },
            };
            Ok(ColumnKind::Bag { domain, separator })
        }
        "real" => no_args(ColumnKind::Real),
        "time" => no_args(ColumnKind::Time),
        "skip" => no_args(ColumnKind::Skip),
        _ => Err(format!("unknown column kind `{word}`; expected {KINDS}")),
    }
}

fn domain_arg(text: &str) -> Result<String, String> {
    let domain = text.trim();
    if domain.is_empty() {
        return Err("an empty domain".to_string());
    }
    check_name(domain)?;
    Ok(domain.to_string())
}

/// A bag's separator: one character, surrounding spaces ignored unless the
/// separator is a space itself.
fn separator_arg(text: &str) -> Result<char, String> {
    let trimmed = text.trim();
    let text = if trimmed.is_empty() { text } else { trimmed };
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(format!("a bag separator is one character, found `{text}`")),
    }
}

/// Read a delimited file (gzip-compressed or not). The dataset is named
/// after the file.
pub fn read(path: &Path, spec: &Spec, bad: BadLines) -> Result<Dataset, DataError> {
    let text = read_text(path)?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    read_lines(&name, path, &text, spec, bad)
}

/// [`read`] on text in memory; `name` stands for the file in messages.
pub fn read_str(name: &str, text: &str, spec: &Spec, bad: BadLines) -> Result<Dataset, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some((n, _)) = text
        .split('\n')
        .enumerate()
        .find(|(_, l)| l.len() > MAX_LINE_BYTES)
    {
        return Err(line_too_long(Path::new(name), n + 1));
    }
    read_lines(name, Path::new(name), text, spec, bad)
}

/// How fields are separated.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Separator {
    Text(String),
    Whitespace,
}

impl Separator {
    fn detect(line: &str) -> Separator {
        for s in ["\t", ",", ";"] {
            if line.contains(s) {
                return Separator::Text(s.to_string());
            }
        }
        Separator::Whitespace
    }

    fn split<'a>(&self, line: &'a str) -> Vec<&'a str> {
        match self {
            Separator::Text(s) => line.split(s.as_str()).map(str::trim).collect(),
            Separator::Whitespace => line.split_whitespace().collect(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Separator::Text(s) => format!("{s:?}"),
            Separator::Whitespace => "whitespace".to_string(),
        }
    }
}

fn read_lines(
    name: &str,
    path: &Path,
    text: &str,
    spec: &Spec,
    bad: BadLines,
) -> Result<Dataset, DataError> {
    let at = |line: usize| Location {
        path: path.to_path_buf(),
        line,
    };
    let mut lines = data_lines(text).peekable();
    let separator = match &spec.separator {
        Some(s) if s.is_empty() => {
            return Err(DataError::Invalid(format!(
                "{name}: an empty field separator"
            )));
        }
        Some(s) => Separator::Text(s.clone()),
        None => lines
            .peek()
            .map_or(Separator::Whitespace, |&(_, l)| Separator::detect(l)),
    };
    let mut rows: Vec<(usize, Vec<&str>)> = lines.map(|(n, l)| (n, separator.split(l))).collect();
    let mut notes = Vec::new();
    let header = if spec.header {
        if rows.is_empty() {
            return Err(DataError::Invalid(format!("{name}: no header and no rows")));
        }
        Some(rows.remove(0))
    } else if rows
        .split_first()
        .is_some_and(|((_, first), rest)| looks_like_header(first, rest))
    {
        let (n, names) = rows.remove(0);
        notes.push(format!(
            "read line {n} of {name} as a header naming the columns ({}); pass --header to say so",
            names.join(", ")
        ));
        Some((n, names))
    } else {
        None
    };
    if let Some((n, names)) = &header {
        if let Some(bad) = names.iter().find(|f| !is_header_name(f)) {
            return Err(DataError::BadLine {
                at: at(*n),
                message: format!(
                    "the header holds {}, which is not a column name",
                    shown(bad)
                ),
            });
        }
    }

    let columns = match (&header, spec.columns.is_empty()) {
        (_, false) => {
            if let Some((n, names)) = &header {
                if names.len() != spec.columns.len() {
                    return Err(DataError::BadLine {
                        at: at(*n),
                        message: format!(
                            "the header has {} fields but the column list names {}",
                            names.len(),
                            spec.columns.len()
                        ),
                    });
                }
            }
            spec.columns.clone()
        }
        (Some((n, names)), true) => {
            infer_from_header(names, &rows, &spec.declared).map_err(|message| {
                DataError::BadLine {
                    at: at(*n),
                    message,
                }
            })?
        }
        (None, true) => match rows.first() {
            None => return Err(DataError::Invalid(format!("{name}: no rows"))),
            Some((n, fields)) => {
                positional(fields.len()).map_err(|message| DataError::BadLine {
                    at: at(*n),
                    message,
                })?
            }
        },
    };
    for c in &columns {
        if let (ColumnKind::Bag { separator: b, .. }, Separator::Text(s)) = (&c.kind, &separator) {
            if s.contains(*b) {
                return Err(DataError::Invalid(format!(
                    "{name}: column {}: its bag separator `{b}` is also part of the field separator {s:?}",
                    c.name
                )));
            }
        }
    }

    let mut builders: Vec<Builder> = columns.iter().map(Builder::new).collect();
    let mut domains: BTreeMap<String, IdMap> = BTreeMap::new();
    for b in &builders {
        if let Some(d) = b.domain() {
            domains.entry(d.to_string()).or_default();
        }
    }
    let mut policy = Policy::new(path, bad);
    let mut cells = Vec::with_capacity(columns.len());
    let mut n_rows = 0usize;
    for (k, (line, fields)) in rows.iter().enumerate() {
        cells.clear();
        let parsed = parse_row(&columns, fields, &separator, &mut cells).map_err(|m| {
            // A first line of words failing may be a header nothing
            // recognised.
            if k == 0 && header.is_none() && fields.iter().all(|f| f.parse::<f64>().is_err()) {
                format!("{m} (if this line names the columns, pass --header)")
            } else {
                m
            }
        });
        if policy.check(*line, parsed)?.is_none() {
            continue;
        }
        for (b, cell) in builders.iter_mut().zip(cells.drain(..)) {
            b.push(cell, &mut domains);
        }
        n_rows += 1;
    }
    if n_rows == 0 {
        return Err(DataError::Invalid(no_rows(name, policy.skipped)));
    }

    let mut dataset = Dataset {
        name: name.to_string(),
        domains,
        skipped: policy.skipped,
        notes,
        ..Dataset::default()
    };
    for (spec, b) in columns.iter().zip(builders) {
        if let Some(data) = b.finish() {
            dataset.columns.push(Column {
                name: spec.name.clone(),
                data,
            });
        }
    }
    set_roles(&mut dataset);
    dataset.validate()?;
    Ok(dataset)
}

/// `user` and `item`: the first index columns of those domains; `target`:
/// the first real column; `time`: the first time column.
fn set_roles(dataset: &mut Dataset) {
    let first = |pred: &dyn Fn(&ColumnData) -> bool| {
        dataset
            .columns
            .iter()
            .find(|c| pred(&c.data))
            .map(|c| c.name.clone())
    };
    let index_of = |d: &str| {
        first(&|c: &ColumnData| matches!(c, ColumnData::Index { domain, .. } if domain == d))
    };
    let user = index_of("user");
    let item = index_of("item");
    let target = first(&|c: &ColumnData| matches!(c, ColumnData::Real(_)));
    let time = first(&|c: &ColumnData| matches!(c, ColumnData::Time(_)));
    dataset.user = user;
    dataset.item = item;
    dataset.target = target;
    dataset.time = time;
}

pub(crate) fn no_rows(name: &str, skipped: usize) -> String {
    match skipped {
        0 => format!("{name}: no rows"),
        n => format!("{name}: no rows ({n} bad lines skipped)"),
    }
}

/// The MovieLens convention for files without a header or a column list.
fn positional(n_fields: usize) -> Result<Vec<ColumnSpec>, String> {
    let all = [
        ColumnSpec::new("user", ColumnKind::Index("user".to_string())),
        ColumnSpec::new("item", ColumnKind::Index("item".to_string())),
        ColumnSpec::new("rating", ColumnKind::Real),
        ColumnSpec::new("timestamp", ColumnKind::Time),
    ];
    match n_fields {
        2..=4 => Ok(all[..n_fields].to_vec()),
        n => Err(format!(
            "{n} field{} per line and no header: name the columns with --columns, \
             e.g. --columns user,item,rating:real,ts:time",
            if n == 1 { "" } else { "s" }
        )),
    }
}

/// Is `fields` a header rather than data: every field a name (no number,
/// nothing empty), and either every name one recc knows (`user`, `rating`,
/// a declared `name:kind`) or some column numeric in every other line
/// while its first field is not?
fn looks_like_header(fields: &[&str], rest: &[(usize, Vec<&str>)]) -> bool {
    let is_number = |f: &str| f.parse::<f64>().is_ok();
    if fields.is_empty() || fields.iter().any(|f| !is_header_name(f) || is_number(f)) {
        return false;
    }
    if fields
        .iter()
        .all(|f| known_column(f).is_some() || f.contains(':'))
    {
        return true;
    }
    let same_width: Vec<&Vec<&str>> = rest
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f.len() == fields.len())
        .collect();
    !same_width.is_empty() && (0..fields.len()).any(|k| same_width.iter().all(|f| is_number(f[k])))
}

/// A header field that can name a column: not empty (an empty one gets a
/// made-up name), no control characters, not absurdly long.
fn is_header_name(field: &str) -> bool {
    field.chars().count() <= MAX_NAME_CHARS && !field.chars().any(char::is_control)
}

/// The longest column name a header may give.
const MAX_NAME_CHARS: usize = 200;

fn infer_from_header(
    names: &[&str],
    rows: &[(usize, Vec<&str>)],
    declared: &BTreeMap<String, ColumnKind>,
) -> Result<Vec<ColumnSpec>, String> {
    let mut columns: Vec<ColumnSpec> = Vec::with_capacity(names.len());
    for (k, &raw) in names.iter().enumerate() {
        let header = if raw.is_empty() {
            format!("column{}", k + 1)
        } else {
            raw.to_string()
        };
        let (name, kind) = if header.contains(':') {
            // A header written by `--write-split` declares what it holds.
            let column = parse_column(&header).map_err(|m| format!("in header `{header}`: {m}"))?;
            (column.name, column.kind)
        } else if let Some(kind) = declared.get(&header) {
            (header, kind.clone())
        } else {
            match known_column(&header) {
                Some(Known::User) => ("user".to_string(), ColumnKind::Index("user".to_string())),
                Some(Known::Item) => ("item".to_string(), ColumnKind::Index("item".to_string())),
                Some(Known::Real) => (header, ColumnKind::Real),
                Some(Known::Time) => (header, ColumnKind::Time),
                None => {
                    // Every value decides, not a sample: one word among
                    // numbers makes the column ids.
                    let numeric = rows
                        .iter()
                        .filter(|(_, f)| f.len() == names.len())
                        .all(|(_, f)| f[k].parse::<f64>().is_ok_and(is_real));
                    let kind = if numeric {
                        ColumnKind::Real
                    } else {
                        ColumnKind::Index(header.clone())
                    };
                    (header, kind)
                }
            }
        };
        // A second `user_id` keeps its own name: roles take the first.
        let name = if columns.iter().any(|c| c.name == name) {
            raw.to_string()
        } else {
            name
        };
        if name != "_" && columns.iter().any(|c| c.name == name) {
            return Err(format!(
                "the header names column `{name}` twice; name the columns with --columns"
            ));
        }
        columns.push(ColumnSpec { name, kind });
    }
    Ok(columns)
}

/// What a header field names, as [`read`] takes it: a plain name says
/// what it holds where it can (`user`, `rating`, a numeric column), else it
/// declares it (`genres:bag(genre)`, `year:index`). `numeric` says whether
/// every value written under it is a number.
pub(crate) fn header_field(name: &str, kind: &ColumnKind, numeric: bool) -> String {
    let plain = match known_column(name) {
        Some(Known::User) => (name == "user").then(|| ColumnKind::Index("user".to_string())),
        Some(Known::Item) => (name == "item").then(|| ColumnKind::Index("item".to_string())),
        Some(Known::Real) => Some(ColumnKind::Real),
        Some(Known::Time) => Some(ColumnKind::Time),
        None if numeric => Some(ColumnKind::Real),
        None => Some(ColumnKind::Index(name.to_string())),
    };
    if plain.as_ref() == Some(kind) {
        return name.to_string();
    }
    let declared = match kind {
        ColumnKind::Index(d) if d == name => "index".to_string(),
        ColumnKind::Index(d) => format!("index({d})"),
        ColumnKind::Real => "real".to_string(),
        ColumnKind::Time => "time".to_string(),
        ColumnKind::Bag { domain, separator } if *separator == '|' => format!("bag({domain})"),
        ColumnKind::Bag { domain, separator } => format!("bag({domain},{separator})"),
        ColumnKind::Skip => "skip".to_string(),
    };
    format!("{name}:{declared}")
}

enum Known {
    User,
    Item,
    Real,
    Time,
}

/// What a header name says about its column: `userId`, `user_id` and `user`
/// are users; `movieId` and `artist` are items; `rating` is a number.
fn known_column(header: &str) -> Option<Known> {
    let key: String = header
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    let base = key.strip_suffix("id").unwrap_or(&key);
    match base {
        "user" => return Some(Known::User),
        "item" | "movie" | "artist" | "product" => return Some(Known::Item),
        _ => {}
    }
    match key.as_str() {
        "rating" | "stars" | "score" | "plays" | "count" | "weight" => Some(Known::Real),
        "timestamp" | "time" | "ts" | "date" => Some(Known::Time),
        _ => None,
    }
}

/// One parsed field, before its ids are interned.
enum Cell<'a> {
    Index(&'a str),
    Real(f64),
    Time(i64),
    Bag(Vec<&'a str>),
    Skip,
}

/// Parse every field of a line; nothing is interned until all of them parse,
/// so a skipped bad line leaves no ids behind.
fn parse_row<'a>(
    columns: &[ColumnSpec],
    fields: &[&'a str],
    separator: &Separator,
    cells: &mut Vec<Cell<'a>>,
) -> Result<(), String> {
    if fields.len() != columns.len() {
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "expected {} fields separated by {} ({}), found {}",
            columns.len(),
            separator.describe(),
            names.join(", "),
            fields.len()
        ));
    }
    for (c, &field) in columns.iter().zip(fields) {
        let cell = match &c.kind {
            ColumnKind::Index(_) => Cell::Index(parse_id(&c.name, field)?),
            ColumnKind::Real => Cell::Real(parse_real(&c.name, field)?),
            ColumnKind::Time => Cell::Time(parse_time(&c.name, field)?),
            ColumnKind::Bag { separator, .. } => Cell::Bag(
                field
                    .split(*separator)
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect(),
            ),
            ColumnKind::Skip => Cell::Skip,
        };
        cells.push(cell);
    }
    Ok(())
}

/// A column under construction.
enum Builder {
    Index {
        domain: String,
        values: Vec<u32>,
    },
    Real(Vec<f64>),
    Time(Vec<i64>),
    Bag {
        domain: String,
        offsets: Vec<usize>,
        members: Vec<u32>,
    },
    Skip,
}

impl Builder {
    fn new(spec: &ColumnSpec) -> Builder {
        match &spec.kind {
            ColumnKind::Index(domain) => Builder::Index {
                domain: domain.clone(),
                values: Vec::new(),
            },
            ColumnKind::Real => Builder::Real(Vec::new()),
            ColumnKind::Time => Builder::Time(Vec::new()),
            ColumnKind::Bag { domain, .. } => Builder::Bag {
                domain: domain.clone(),
                offsets: vec![0],
                members: Vec::new(),
            },
            ColumnKind::Skip => Builder::Skip,
        }
    }

    fn domain(&self) -> Option<&str> {
        match self {
            Builder::Index { domain, .. } | Builder::Bag { domain, .. } => Some(domain),
            Builder::Real(_) | Builder::Time(_) | Builder::Skip => None,
        }
    }

    fn push(&mut self, cell: Cell<'_>, domains: &mut BTreeMap<String, IdMap>) {
        match (self, cell) {
            (Builder::Index { domain, values }, Cell::Index(id)) => {
                values.push(domains.entry(domain.clone()).or_default().intern(id));
            }
            (Builder::Real(v), Cell::Real(x)) => v.push(x),
            (Builder::Time(v), Cell::Time(t)) => v.push(t),
            (
                Builder::Bag {
                    domain,
                    offsets,
                    members,
                },
                Cell::Bag(ids),
            ) => {
                let map = domains.entry(domain.clone()).or_default();
                members.extend(ids.into_iter().map(|id| map.intern(id)));
                offsets.push(members.len());
            }
            // Cells are made from the same specs as the builders, in order.
            _ => {}
        }
    }

    fn finish(self) -> Option<ColumnData> {
        match self {
            Builder::Index { domain, values } => Some(ColumnData::Index { domain, values }),
            Builder::Real(v) => Some(ColumnData::Real(v)),
            Builder::Time(v) => Some(ColumnData::Time(v)),
            Builder::Bag {
                domain,
                offsets,
                members,
            } => Some(ColumnData::Bag {
                domain,
                weights: vec![1.0; members.len()],
                offsets,
                members,
            }),
            Builder::Skip => None,
        }
    }
}

// Shared with the other readers.

/// The lines that hold data, numbered from 1: empty lines and `#` comments
/// are left out.
pub(crate) fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
}

/// The bad-line policy: a located error, or a skipped line counted.
pub(crate) struct Policy<'a> {
    path: &'a Path,
    bad: BadLines,
    pub skipped: usize,
}

impl<'a> Policy<'a> {
    pub fn new(path: &'a Path, bad: BadLines) -> Policy<'a> {
        Policy {
            path,
            bad,
            skipped: 0,
        }
    }

    /// `Ok(Some)` for a good line, `Ok(None)` for a bad one that is skipped.
    pub fn check<T>(
        &mut self,
        line: usize,
        parsed: Result<T, String>,
    ) -> Result<Option<T>, DataError> {
        match (parsed, self.bad) {
            (Ok(v), _) => Ok(Some(v)),
            (Err(_), BadLines::Skip) => {
                self.skipped += 1;
                Ok(None)
            }
            (Err(message), BadLines::Fail) => Err(DataError::BadLine {
                at: Location {
                    path: self.path.to_path_buf(),
                    line,
                },
                message,
            }),
        }
    }
}

pub(crate) fn parse_id<'a>(column: &str, text: &'a str) -> Result<&'a str, String> {
    if text.is_empty() {
        Err(format!("column {column}: an empty id"))
    } else {
        Ok(text)
    }
}

/// Is `x` a number the native kernels hold as it is: finite, and within
/// the range of a 32-bit float (beyond it, it would become an infinity)?
pub(crate) fn is_real(x: f64) -> bool {
    x.is_finite() && x.abs() <= f64::from(f32::MAX)
}

/// A finite number within the range of a 32-bit float; NaN, infinities and
/// numbers beyond ±3.4e38 are errors.
pub(crate) fn parse_real(column: &str, text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if is_real(x) => Ok(x),
        Ok(x) if x.is_finite() => Err(format!(
            "column {column}: {} is beyond the range of numbers models compute with \
             (±3.4e38)",
            shown(text)
        )),
        Ok(_) => Err(format!(
            "column {column}: expected a finite number, found {}",
            shown(text)
        )),
        Err(_) => Err(format!(
            "column {column}: expected a number, found {}",
            shown(text)
        )),
    }
}

/// Integer unix seconds.
pub(crate) fn parse_time(column: &str, text: &str) -> Result<i64, String> {
    text.parse::<i64>().map_err(|_| {
        format!(
            "column {column}: expected a time in integer unix seconds, found {}",
            shown(text)
        )
    })
}

/// The longest line any reader accepts, in bytes. A longer one is not data
/// (a binary file, `/dev/zero`) and would otherwise be read until memory
/// runs out.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The UTF-8 byte order mark some editors put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The error for a line longer than [`MAX_LINE_BYTES`].
pub(crate) fn line_too_long(path: &Path, line: usize) -> DataError {
    DataError::BadLine {
        at: Location {
            path: path.to_path_buf(),
            line,
        },
        message: format!(
            "a line longer than {MAX_LINE_BYTES} bytes (1 MiB) without a line break; \
             this is not a data file"
        ),
    }
}

/// Append the next line of `reader`, its `\n` included, to `out`; the
/// number of bytes appended, 0 at the end. A line longer than
/// [`MAX_LINE_BYTES`] is an error located at `line`.
pub(crate) fn read_line_bounded(
    reader: &mut impl BufRead,
    out: &mut Vec<u8>,
    path: &Path,
    line: usize,
) -> Result<usize, DataError> {
    let limit = MAX_LINE_BYTES as u64 + 1;
    let n = reader
        .by_ref()
        .take(limit)
        .read_until(b'\n', out)
        .map_err(|e| DataError::io(path, e))?;
    if n as u64 == limit && out.last() != Some(&b'\n') {
        return Err(line_too_long(path, line));
    }
    Ok(n)
}

/// The first bytes of every gzip stream.
const GZIP_MAGIC: &[u8] = b"\x1f\x8b";

/// A buffered reader of `path`'s contents, decompressed when the file is
/// gzip (told by its first bytes, whatever its name).
pub(crate) fn open(path: &Path) -> Result<Box<dyn BufRead>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    if head.starts_with(GZIP_MAGIC) {
        let decoder = flate2::bufread::MultiGzDecoder::new(reader);
        Ok(Box::new(std::io::BufReader::with_capacity(
            1 << 16,
            decoder,
        )))
    } else {
        Ok(Box::new(reader))
    }
}

/// A file's bytes (decompressed if it is gzip), its byte order mark left
/// out, read line by line so that a line longer than [`MAX_LINE_BYTES`]
/// stops the read with a located error.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    // A regular file's size is known; a device's or a pipe's reads as 0.
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let mut reader = open(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut line = 1;
    while read_line_bounded(&mut reader, &mut bytes, path, line)? > 0 {
        line += 1;
    }
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    Ok(bytes)
}

/// A file's text: UTF-8, or else Latin-1 (every byte one character).
pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = read_bytes(path)?;
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| latin1(e.as_bytes())))
}

/// Latin-1 decoding: each byte is the character with that code point.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// A file's Latin-1 text.
pub(crate) fn read_latin1(path: &Path) -> Result<String, DataError> {
    read_bytes(path).map(|b| latin1(&b))
}
