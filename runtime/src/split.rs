//! Splits: which rows of a [`Dataset`](crate::data::Dataset) train and which test.
//!
//! Every function here returns row numbers that are sorted, disjoint and
//! together cover `0..n`, and gives the same answer for the same seed. The
//! per-user splits never leave a user without training rows: a user's last
//! remaining row always stays in train.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::{DataError, Dataset};

/// Row numbers of one dataset: disjoint, each list in increasing order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

impl Split {
    /// Sort both lists; every constructor here ends with it.
    fn sorted(mut train: Vec<usize>, mut test: Vec<usize>) -> Split {
        train.sort_unstable();
        test.sort_unstable();
        Split { train, test }
    }
}

/// `round(fraction × count)`, kept within `0..=count` (NaN counts as 0).
fn share(fraction: f64, count: usize) -> usize {
    let k = (fraction * count as f64).round();
    if k.is_nan() || k <= 0.0 {
        0
    } else {
        (k as usize).min(count)
    }
}

/// Shuffle all `n` rows and send `round(test_fraction × n)` of them to test.
pub fn random_holdout(n: usize, test_fraction: f64, seed: u64) -> Split {
    let mut rows: Vec<usize> = (0..n).collect();
    rows.shuffle(&mut StdRng::seed_from_u64(seed));
    let test = rows.split_off(n - share(test_fraction, n));
    Split::sorted(rows, test)
}

/// `k` folds of shuffled rows. Fold sizes differ by at most one and every
/// row is in exactly one fold's test set. `k == 0` gives no folds.
pub fn kfold(n: usize, k: usize, seed: u64) -> Vec<Split> {
    let mut rows: Vec<usize> = (0..n).collect();
    rows.shuffle(&mut StdRng::seed_from_u64(seed));
    (0..k)
        .map(|f| {
            // Fold f holds positions f*n/k .. (f+1)*n/k of the shuffled rows.
            let (lo, hi) = (f * n / k, (f + 1) * n / k);
            let mut train = rows[..lo].to_vec();
            train.extend_from_slice(&rows[hi..]);
            Split::sorted(train, rows[lo..hi].to_vec())
        })
        .collect()
}

/// Row numbers grouped by user, users in increasing order, rows in row order.
fn rows_by_user(users: &[u32]) -> BTreeMap<u32, Vec<usize>> {
    let mut by_user: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (row, &u) in users.iter().enumerate() {
        by_user.entry(u).or_default().push(row);
    }
    by_user
}

/// Per user: shuffle the user's rows and send `round(test_fraction × count)`
/// to test, but never the last one: a user with one row is all train.
pub fn per_user_holdout(users: &[u32], test_fraction: f64, seed: u64) -> Split {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut rows in rows_by_user(users).into_values() {
        rows.shuffle(&mut rng);
        let k = share(test_fraction, rows.len()).min(rows.len() - 1);
        test.extend_from_slice(&rows[..k]);
        train.extend_from_slice(&rows[k..]);
    }
    Split::sorted(train, test)
}

/// How many of a user's rows a leave-last-out split tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    /// This many rows per user.
    Count(usize),
    /// `round(fraction × count)` rows per user.
    Fraction(f64),
}

impl Amount {
    fn of(self, count: usize) -> usize {
        match self {
            Amount::Count(c) => c.min(count),
            Amount::Fraction(f) => share(f, count),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(c) => write!(f, "{c}"),
            Amount::Fraction(x) => {
                // Six decimals hide float noise (0.07 × 100 = 7.000000000000001).
                let p = format!("{:.6}", x * 100.0);
                write!(f, "{}%", p.trim_end_matches('0').trim_end_matches('.'))
            }
        }
    }
}

/// Per user: the latest rows go to test, the rest to train. Rows are ordered
/// by `times` if given, ties and everything else by row number (a later row
/// is later). At least one row per user stays in train.
pub fn leave_last_out(users: &[u32], times: Option<&[i64]>, last: Amount) -> Split {
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut rows in rows_by_user(users).into_values() {
        if let Some(times) = times {
            // Stable: equal times keep row order.
            rows.sort_by_key(|&r| times.get(r).copied().unwrap_or(i64::MIN));
        }
        let k = last.of(rows.len()).min(rows.len() - 1);
        let cut = rows.len() - k;
        train.extend_from_slice(&rows[..cut]);
        test.extend_from_slice(&rows[cut..]);
    }
    Split::sorted(train, test)
}

/// How to split a dataset, as written on the command line (`--split kfold:5`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SplitSpec {
    /// The split the data's own files define (ml-100k's `u1.base`/`u1.test`).
    Given,
    /// `random:F`: a random fraction `F` of all rows to test.
    Random(f64),
    /// `kfold:K`: `K` shuffled folds, each tested once.
    KFold(usize),
    /// `user:F`: a random fraction `F` of each user's rows to test.
    PerUser(f64),
    /// `last:N` or `last:P%`: each user's latest rows to test.
    LastOut(Amount),
    /// `none`: everything trains, nothing tests.
    None,
}

/// The forms [`SplitSpec`] parses, for messages.
pub const SPLIT_FORMS: &str = "given, random[:F], kfold[:K], user[:F], last[:N], last:P%, none \
     (F a fraction between 0 and 1, e.g. random:0.2; K at least 2, e.g. kfold:5; \
     N a row count, e.g. last:1; P a percentage, e.g. last:20%)";

/// A `--split` that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SplitSpecError(pub String);

fn bad_spec(text: &str, why: &str) -> SplitSpecError {
    SplitSpecError(format!(
        "bad split `{text}`: {why}; expected one of {SPLIT_FORMS}"
    ))
}

fn check_fraction(what: &str, f: f64) -> Result<f64, String> {
    if f > 0.0 && f < 1.0 {
        Ok(f)
    } else {
        Err(format!(
            "the {what} fraction must be between 0 and 1 (exclusive), got {f}"
        ))
    }
}

fn check_folds(k: usize) -> Result<usize, String> {
    if k >= 2 {
        Ok(k)
    } else {
        Err(format!("k-fold needs at least 2 folds, got {k}"))
    }
}

fn check_amount(last: Amount) -> Result<Amount, String> {
    match last {
        Amount::Count(0) => Err("last:0 would test nothing; give at least 1 row".to_string()),
        Amount::Count(_) => Ok(last),
        Amount::Fraction(f) => check_fraction("leave-last-out", f).map(Amount::Fraction),
    }
}

impl FromStr for SplitSpec {
    type Err = SplitSpecError;

    fn from_str(text: &str) -> Result<SplitSpec, SplitSpecError> {
        let t = text.trim();
        let (name, arg) = match t.split_once(':') {
            Some((name, arg)) => (name.trim(), Some(arg.trim())),
            None => (t, None),
        };
        let fraction = |what: &str, default: f64| -> Result<f64, SplitSpecError> {
            let f = match arg {
                None => default,
                Some(a) => a
                    .parse::<f64>()
                    .map_err(|_| bad_spec(text, &format!("`{a}` is not a fraction")))?,
            };
            check_fraction(what, f).map_err(|m| bad_spec(text, &m))
        };
        let spec = match name.to_ascii_lowercase().as_str() {
            "given" | "none" if arg.is_some() => {
                return Err(bad_spec(text, &format!("`{name}` takes no argument")))
            }
            "given" => SplitSpec::Given,
            "none" => SplitSpec::None,
            "random" => SplitSpec::Random(fraction("test", 0.2)?),
            "user" => SplitSpec::PerUser(fraction("per-user test", 0.2)?),
            "kfold" => {
                let k = match arg {
                    None => 5,
                    Some(a) => a
                        .parse::<usize>()
                        .map_err(|_| bad_spec(text, &format!("`{a}` is not a fold count")))?,
                };
                SplitSpec::KFold(check_folds(k).map_err(|m| bad_spec(text, &m))?)
            }
            "last" => {
                let amount = match arg {
                    None => Amount::Count(1),
                    Some(a) => parse_amount(a).ok_or_else(|| {
                        bad_spec(
                            text,
                            &format!("`{a}` is neither a row count nor a percentage"),
                        )
                    })?,
                };
                SplitSpec::LastOut(check_amount(amount).map_err(|m| bad_spec(text, &m))?)
            }
            _ => return Err(bad_spec(text, &format!("unknown split `{name}`"))),
        };
        Ok(spec)
    }
}

/// `3` → a count, `20%` → 0.2, `0.2` → a fraction.
fn parse_amount(a: &str) -> Option<Amount> {
    if let Some(p) = a.strip_suffix('%') {
        return p
            .trim()
            .parse::<f64>()
            .ok()
            .map(|p| Amount::Fraction(p / 100.0));
    }
    if let Ok(c) = a.parse::<usize>() {
        return Some(Amount::Count(c));
    }
    a.parse::<f64>().ok().map(Amount::Fraction)
}

impl fmt::Display for SplitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitSpec::Given => write!(f, "given"),
            SplitSpec::Random(x) => write!(f, "random:{x}"),
            SplitSpec::KFold(k) => write!(f, "kfold:{k}"),
            SplitSpec::PerUser(x) => write!(f, "user:{x}"),
            SplitSpec::LastOut(a) => write!(f, "last:{a}"),
            SplitSpec::None => write!(f, "none"),
        }
    }
}

impl SplitSpec {
    /// The splits of `dataset`: one for every spec but `kfold:K`, which gives
    /// `K`. `Given` is an error here: that split comes from the data's own
    /// files, and the caller reads them.
    pub fn apply(&self, dataset: &Dataset, seed: u64) -> Result<Vec<Split>, DataError> {
        let n = dataset.len();
        let invalid =
            |m: String| DataError::Invalid(format!("{}: split `{self}`: {m}", dataset.name));
        let users = || -> Result<&[u32], DataError> {
            let name = dataset.user.as_deref().ok_or_else(|| {
                invalid("a per-user split needs a user column, and the data names none".to_string())
            })?;
            dataset.indices(name).map(|(_, v)| v).ok_or_else(|| {
                invalid(format!(
                    "the user column `{name}` is missing or not an index column"
                ))
            })
        };
        match *self {
            SplitSpec::Given => Err(invalid(
                "the given split comes from the data's own files (e.g. ml-100k's u1..u5 folds), \
                 and these data have none here; choose random, kfold, user, last or none"
                    .to_string(),
            )),
            SplitSpec::None => Ok(vec![Split {
                train: (0..n).collect(),
                test: Vec::new(),
            }]),
            SplitSpec::Random(f) => {
                check_fraction("test", f).map_err(invalid)?;
                Ok(vec![random_holdout(n, f, seed)])
            }
            SplitSpec::KFold(k) => {
                check_folds(k).map_err(invalid)?;
                if k > n {
                    return Err(invalid(format!(
                        "{k} folds need at least {k} rows, the data have {n}"
                    )));
                }
                Ok(kfold(n, k, seed))
            }
            SplitSpec::PerUser(f) => {
                check_fraction("per-user test", f).map_err(invalid)?;
                Ok(vec![per_user_holdout(users()?, f, seed)])
            }
            SplitSpec::LastOut(last) => {
                check_amount(last).map_err(invalid)?;
                Ok(vec![leave_last_out(users()?, dataset.times(), last)])
            }
        }
    }
}
