//! Data specs: the `--data` text of the command line, parsed and loaded.
//!
//! ```text
//! builtin                      the generated default data (see synth)
//! ml-100k:DIR                  MovieLens-100k, all of u.data
//! lastfm:DIR                   Last.fm-2k user-artist plays
//! amazon:FILE                  Amazon reviews, JSON lines
//! csv:FILE  (or any FILE)      a delimited file; see --columns, --sep, --header
//! tree:BxD                     a generated hierarchy: the ancestor pairs of a tree
//! DIR                          ml-100k or lastfm, recognised by their files
//! ```
//!
//! A derived view can follow: `items2vec` (co-occurrence of items in users'
//! time-ordered sequences) or `text` (co-occurrence of review words with
//! product tokens), e.g. `ml-100k:DIR+item2vec`, `amazon:FILE+text`.

use super::tree::{Tree, TreeShape};
use super::{amazon, delimited, lastfm, movielens, text, BadLines, DataError, Dataset};
use crate::split::Split;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The kinds a spec can name before its colon.
const KINDS: [&str; 9] = [
    "builtin",
    "ml-100k",
    "movielens",
    "lastfm",
    "amazon",
    "csv",
    "tsv",
    "file",
    "tree",
];

/// Could `text` be meant as a kind: a short word, not a drive letter or a
/// path?
fn is_kind_like(text: &str) -> bool {
    text.len() > 1
        && text.len() <= 20
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `path` must be a folder holding `files`: say which is missing, the
/// folder itself or a file in it.
fn require_files(kind: &str, dir: &Path, files: &[&str]) -> Result<(), DataError> {
    if !dir.exists() {
        return Err(DataError::Invalid(format!(
            "{kind}:{}: there is no folder {}",
            dir.display(),
            dir.display()
        )));
    }
    if !dir.is_dir() {
        return Err(DataError::Invalid(format!(
            "{kind}:{}: {} is a file, not a folder; {kind} reads a folder holding {}",
            dir.display(),
            dir.display(),
            files.join(", ")
        )));
    }
    if let Some(missing) = files.iter().find(|f| !dir.join(f).exists()) {
        return Err(DataError::Invalid(format!(
            "{kind}:{}: the folder has no {missing}; {kind} reads {}",
            dir.display(),
            files.join(", ")
        )));
    }
    Ok(())
}

/// `path` must be a file (or a device or pipe): say so when it is missing
/// or a folder.
fn require_file(path: &Path) -> Result<(), DataError> {
    if !path.exists() {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        return Err(DataError::Invalid(match dir {
            Some(d) if !d.is_dir() => {
                format!("{}: there is no folder {}", path.display(), d.display())
            }
            _ => format!("{}: there is no such file", path.display()),
        }));
    }
    if path.is_dir() {
        return Err(DataError::Invalid(format!(
            "{}: a folder, not a data file",
            path.display()
        )));
    }
    Ok(())
}

/// Where the data comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Builtin,
    MovieLens(PathBuf),
    LastFm(PathBuf),
    Amazon(PathBuf),
    Delimited(PathBuf),
    /// The transitive closure of a complete tree (see [`super::tree`]).
    Tree(TreeShape),
}

/// A derived view of the loaded data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The rows as they are.
    Rows,
    /// Items co-occurring in each user's time-ordered sequence (item2vec).
    ItemSequences,
    /// Words co-occurring in review text, with product tokens.
    ReviewText,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DataSpec {
    pub source: Source,
    pub view: View,
}

impl FromStr for DataSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<DataSpec, String> {
        let (base, view) = match s.rsplit_once('+') {
            Some((b, "item2vec")) => (b, View::ItemSequences),
            Some((b, "text")) => (b, View::ReviewText),
            Some((_, other)) => {
                return Err(format!(
                    "unknown data view `+{other}`; expected +item2vec or +text"
                ))
            }
            None => (s, View::Rows),
        };
        let source = match base.split_once(':') {
            _ if base == "builtin" => Source::Builtin,
            Some(("ml-100k" | "movielens", p)) => Source::MovieLens(p.into()),
            Some(("lastfm", p)) => Source::LastFm(p.into()),
            Some(("amazon", p)) => Source::Amazon(p.into()),
            Some(("csv" | "tsv" | "file", p)) => Source::Delimited(p.into()),
            Some(("tree", shape)) => Source::Tree(shape.parse()?),
            // `KIND:` that names no kind, unless it is the start of a path
            // that exists (a file name may hold a colon).
            Some((kind, _)) if is_kind_like(kind) && !Path::new(base).exists() => {
                let help = match recc_compiler::diagnostic::closest(&kind.to_lowercase(), KINDS) {
                    Some(k) => format!("did you mean {k}?"),
                    None => format!("the kinds are {}", KINDS.join(", ")),
                };
                return Err(format!("--data {base}: unknown kind `{kind}`; {help}"));
            }
            _ => {
                let p = Path::new(base);
                if p.join("u.data").exists() {
                    Source::MovieLens(p.into())
                } else if p.join("user_artists.dat").exists() {
                    Source::LastFm(p.into())
                } else if [".json", ".jsonl", ".json.gz", ".jsonl.gz"]
                    .iter()
                    .any(|e| base.ends_with(e))
                {
                    Source::Amazon(p.into())
                } else if p.is_dir() {
                    return Err(format!(
                        "{base}: a directory, but neither MovieLens-100k (u.data) nor \
                         Last.fm-2k (user_artists.dat); name its kind, e.g. ml-100k:{base}"
                    ));
                } else {
                    Source::Delimited(p.into())
                }
            }
        };
        if view == View::ReviewText && !matches!(source, Source::Amazon(_)) {
            return Err("+text needs review text: use it with amazon:FILE".into());
        }
        Ok(DataSpec { source, view })
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Builtin => write!(f, "builtin")?,
            Source::MovieLens(p) => write!(f, "ml-100k:{}", p.display())?,
            Source::LastFm(p) => write!(f, "lastfm:{}", p.display())?,
            Source::Amazon(p) => write!(f, "amazon:{}", p.display())?,
            Source::Delimited(p) => write!(f, "csv:{}", p.display())?,
            Source::Tree(shape) => write!(f, "tree:{shape}")?,
        }
        match self.view {
            View::Rows => Ok(()),
            View::ItemSequences => write!(f, "+item2vec"),
            View::ReviewText => write!(f, "+text"),
        }
    }
}

/// Options that shape how files are read.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub bad_lines: BadLines,
    /// For delimited files.
    pub delimited: delimited::Spec,
    /// Co-occurrence window of derived views.
    pub window: usize,
    /// Words rarer than this are dropped from review text.
    pub min_count: usize,
}

impl DataSpec {
    /// The generated tree, when the data is one: what the hierarchy report
    /// measures an embedding against.
    pub fn tree(&self) -> Option<Tree> {
        match (&self.source, self.view) {
            (Source::Tree(shape), View::Rows) => Some(Tree::new(*shape)),
            _ => None,
        }
    }

    /// The split to use when none is asked for, if the data has its own:
    /// a hierarchy is embedded whole, with nothing held out.
    pub fn default_split(&self) -> Option<&'static str> {
        matches!((&self.source, self.view), (Source::Tree(_), View::Rows)).then_some("none")
    }

    /// Load the data. `fold` names one of the data's own splits (MovieLens
    /// `u1`..`u5`, `ua`, `ub`); the split comes back with it.
    pub fn load(
        &self,
        options: &LoadOptions,
        fold: Option<&str>,
    ) -> Result<(Dataset, Option<Split>), DataError> {
        let bad = options.bad_lines;
        if fold.is_some() && !matches!(self.source, Source::MovieLens(_)) {
            return Err(DataError::Invalid(format!(
                "{self}: only MovieLens-100k comes with its own splits (u1..u5, ua, ub); \
                 use --split random, kfold, user or last"
            )));
        }
        if fold.is_some() && self.view != View::Rows {
            return Err(DataError::Invalid(
                "a given split cannot be combined with a co-occurrence view".into(),
            ));
        }
        match (&self.source, fold) {
            (Source::MovieLens(dir), Some(f)) if movielens::FOLDS.contains(&f) => {
                let (base, test) = (format!("{f}.base"), format!("{f}.test"));
                require_files(
                    "ml-100k",
                    dir,
                    &[&base, &test, "u.user", "u.item", "u.genre", "u.occupation"],
                )?;
            }
            (Source::MovieLens(dir), _) => require_files(
                "ml-100k",
                dir,
                &["u.data", "u.user", "u.item", "u.genre", "u.occupation"],
            )?,
            (Source::LastFm(dir), _) => require_files("lastfm", dir, &["user_artists.dat"])?,
            (Source::Amazon(path) | Source::Delimited(path), _) => require_file(path)?,
            (Source::Builtin | Source::Tree(_), _) => {}
        }
        let (data, given, texts) = match &self.source {
            Source::Builtin => (
                crate::synth::generate(&crate::synth::SynthConfig::default()),
                None,
                None,
            ),
            Source::MovieLens(dir) => match fold {
                Some(f) => {
                    let (d, s) = movielens::load_fold(dir, f, bad)?;
                    (d, Some(s), None)
                }
                None => (movielens::load(dir, bad)?, None, None),
            },
            Source::LastFm(dir) => (lastfm::load(dir, bad)?, None, None),
            Source::Amazon(path) => {
                let r = amazon::load(path, bad)?;
                if self.view == View::ReviewText {
                    (r.dataset.clone(), None, Some(r))
                } else {
                    (r.dataset, None, None)
                }
            }
            Source::Delimited(path) => {
                (delimited::read(path, &options.delimited, bad)?, None, None)
            }
            Source::Tree(shape) => (Tree::new(*shape).closure()?, None, None),
        };
        let window = options.window.max(1);
        let data = match (self.view, texts) {
            (View::Rows, _) => data,
            (View::ItemSequences, _) => {
                let docs = text::item_sequences(&data);
                let labels = data.items().and_then(|(d, _)| data.domains.get(d));
                cooccurrence_view(text::cooccurrence(&docs, window, labels)?)
            }
            (View::ReviewText, Some(reviews)) => {
                let docs = text::review_documents(&reviews, options.min_count.max(1));
                cooccurrence_view(text::cooccurrence(&docs, window, None)?)
            }
            (View::ReviewText, None) => {
                return Err(DataError::Invalid("+text needs review text".into()))
            }
        };
        Ok((data, given))
    }
}

/// Co-occurrence counts are what a word2vec-style loss weighs, not a rating
/// to predict: no target, so the model is judged by its loss.
fn cooccurrence_view(mut data: Dataset) -> Dataset {
    data.target = None;
    data
}
