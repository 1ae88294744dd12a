//! Documents and co-occurrence counts: word2vec as matrix factorisation.
//!
//! A [`Document`] is a list of tokens, optionally with an anchor (the product
//! a review is about) that co-occurs with all of them. [`cooccurrence`] turns
//! documents into a [`Dataset`] of (context, token, count) rows that a model
//! like GloVe fits: `k ≈ exp(w[c] + m[x] + dot(p[c], q[x]))`.
//!
//! Documents come from review texts ([`review_documents`]) or from users'
//! item histories ([`item_sequences`], item2vec).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::amazon::Reviews;
use super::{Column, ColumnData, DataError, Dataset, IdMap};

/// A list of tokens, with an optional anchor co-occurring with every one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub anchor: Option<String>,
    pub tokens: Vec<String>,
}

/// How co-occurrences are counted from text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cooccurrence {
    /// Tokens at most this many positions apart co-occur.
    pub window: usize,
    /// Words seen fewer times than this in the corpus are dropped.
    pub min_count: usize,
}

impl Default for Cooccurrence {
    fn default() -> Cooccurrence {
        Cooccurrence {
            window: 5,
            min_count: 5,
        }
    }
}

/// Words too common to say anything about a product.
const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "but", "by", "do", "for", "from", "had",
    "has", "have", "he", "her", "his", "i", "if", "im", "in", "is", "it", "its", "me", "my", "of",
    "on", "or", "our", "she", "so", "that", "the", "their", "them", "they", "this", "to", "was",
    "we", "were", "with", "you", "your",
];

/// Lower-case words of letters and digits; an apostrophe inside a word is
/// dropped (`don't` → `dont`), anything else separates words.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch.is_alphanumeric() {
            word.extend(ch.to_lowercase());
        } else if is_apostrophe(ch)
            && !word.is_empty()
            && chars.peek().is_some_and(|c| c.is_alphanumeric())
        {
            // Inside a word: drop it and keep going.
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn is_apostrophe(ch: char) -> bool {
    matches!(ch, '\'' | '\u{2019}')
}

/// One document per review: anchor `ITEM_<asin>`, the tokens of its text less
/// stop words and words seen fewer than `min_count` times in all the reviews.
pub fn review_documents(reviews: &Reviews, min_count: usize) -> Vec<Document> {
    let tokenized: Vec<Vec<String>> = reviews.texts.iter().map(|t| tokenize(t)).collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for word in tokenized.iter().flatten() {
        match counts.get_mut(word.as_str()) {
            Some(n) => *n += 1,
            None => {
                counts.insert(word.clone(), 1);
            }
        }
    }
    // Decide once per distinct word.
    let kept: HashMap<String, bool> = counts
        .into_iter()
        .map(|(w, n)| {
            let keep = n >= min_count && !is_stop_word(&w);
            (w, keep)
        })
        .collect();
    let dataset = &reviews.dataset;
    let anchor = |row: usize| -> Option<String> {
        let (domain, items) = dataset.items()?;
        let item = *items.get(row)?;
        let name = dataset.domains.get(domain)?.name(item);
        Some(format!("ITEM_{name}"))
    };
    tokenized
        .into_iter()
        .enumerate()
        .map(|(row, mut tokens)| {
            tokens.retain(|w| kept.get(w.as_str()).copied().unwrap_or(false));
            Document {
                anchor: anchor(row),
                tokens,
            }
        })
        .collect()
}

fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// Item2vec documents: for each user, in order of user index, the raw ids of
/// the items they touched, ordered by time (ties and undated data keep row
/// order). Empty when the dataset has no user or item column.
pub fn item_sequences(dataset: &Dataset) -> Vec<Document> {
    let (Some((user_domain, users)), Some((item_domain, items))) =
        (dataset.users(), dataset.items())
    else {
        return Vec::new();
    };
    let Some(item_ids) = dataset.domains.get(item_domain) else {
        return Vec::new();
    };
    let n_users = dataset
        .domain_size(user_domain)
        .max(users.iter().map(|&u| u as usize + 1).max().unwrap_or(0));
    let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); n_users];
    for (row, &u) in users.iter().enumerate() {
        rows_of[u as usize].push(row);
    }
    let times = dataset.times();
    rows_of
        .into_iter()
        .filter(|rows| !rows.is_empty())
        .map(|mut rows| {
            if let Some(t) = times {
                // Stable: rows of equal time stay in row order.
                rows.sort_by_key(|&r| t.get(r).copied().unwrap_or(0));
            }
            Document {
                anchor: None,
                tokens: rows
                    .iter()
                    .filter_map(|&r| items.get(r))
                    .map(|&i| item_ids.name(i).to_string())
                    .collect(),
            }
        })
        .collect()
}

/// Count co-occurrences: tokens `d ≤ window` positions apart add `1/d` to both
/// (a, b) and (b, a); a document's anchor adds 1 with each of its tokens. A
/// token never pairs with itself.
///
/// The result has columns `c` index(token), `x` index(token) and `k` real,
/// one row per distinct ordered pair, sorted by (c, x). Tokens are numbered
/// in the order first seen. With `labels` (an item id map), a token equal to
/// one of its raw ids takes that item's label.
pub fn cooccurrence(
    docs: &[Document],
    window: usize,
    labels: Option<&IdMap>,
) -> Result<Dataset, DataError> {
    let name = format!("co-occurrence (window {window})");
    let mut tokens = IdMap::new();
    // Unordered pairs (lower index first); both orders are written out.
    let mut counts: HashMap<(u32, u32), f64, BuildHasherDefault<PairHasher>> = HashMap::default();
    let mut add = |a: u32, b: u32, w: f64| {
        if a != b {
            *counts.entry((a.min(b), a.max(b))).or_insert(0.0) += w;
        }
    };
    let mut ids = Vec::new();
    for doc in docs {
        let anchor = doc.anchor.as_deref().map(|a| tokens.intern(a));
        ids.clear();
        ids.extend(doc.tokens.iter().map(|t| tokens.intern(t)));
        for (i, &a) in ids.iter().enumerate() {
            if let Some(anchor) = anchor {
                add(anchor, a, 1.0);
            }
            for (d, &b) in ids[i + 1..].iter().take(window).enumerate() {
                add(a, b, 1.0 / (d + 1) as f64);
            }
        }
    }
    if counts.is_empty() {
        return Err(DataError::Invalid(format!(
            "{name}: no co-occurring tokens: the {} documents hold no two distinct tokens \
             within the window and no anchored tokens",
            docs.len()
        )));
    }

    let (c, x, k) = both_orders_sorted(&counts, tokens.len());

    if let Some(items) = labels {
        for t in 0..tokens.len() as u32 {
            let label = items
                .get(tokens.name(t))
                .and_then(|i| items.labels().get(i as usize).cloned().flatten());
            if let Some(label) = label {
                tokens.set_label(t, &label);
            }
        }
    }

    let index = |values: Vec<u32>| ColumnData::Index {
        domain: "token".to_string(),
        values,
    };
    let dataset = Dataset {
        name,
        columns: vec![
            Column {
                name: "c".to_string(),
                data: index(c),
            },
            Column {
                name: "x".to_string(),
                data: index(x),
            },
            Column {
                name: "k".to_string(),
                data: ColumnData::Real(k),
            },
        ],
        domains: [("token".to_string(), tokens)].into_iter().collect(),
        target: Some("k".to_string()),
        user: Some("c".to_string()),
        item: Some("x".to_string()),
        time: None,
        skipped: 0,
        notes: Vec::new(),
    };
    dataset.validate()?;
    Ok(dataset)
}

/// Write each unordered pair both ways, sorted by (c, x): bucket by `c`, then
/// sort each (short) bucket by `x`.
fn both_orders_sorted<S>(
    counts: &HashMap<(u32, u32), f64, S>,
    n_tokens: usize,
) -> (Vec<u32>, Vec<u32>, Vec<f64>) {
    let mut start = vec![0usize; n_tokens + 1];
    for &(a, b) in counts.keys() {
        start[a as usize + 1] += 1;
        start[b as usize + 1] += 1;
    }
    for t in 0..n_tokens {
        start[t + 1] += start[t];
    }
    let mut next = start.clone();
    let mut row = vec![(0u32, 0.0f64); 2 * counts.len()];
    for (&(a, b), &k) in counts {
        for (c, x) in [(a, b), (b, a)] {
            row[next[c as usize]] = (x, k);
            next[c as usize] += 1;
        }
    }
    let mut c = Vec::with_capacity(row.len());
    for t in 0..n_tokens {
        row[start[t]..start[t + 1]].sort_unstable_by_key(|&(x, _)| x);
        c.extend(std::iter::repeat_n(t as u32, start[t + 1] - start[t]));
    }
    let (x, k) = row.into_iter().unzip();
    (c, x, k)
}

/// A quick hash for pairs of small integers (the multiply-rotate of rustc's
/// `FxHasher`); the default SipHash is several times slower here and the keys
/// are not attacker-chosen in any way that matters.
#[derive(Default)]
struct PairHasher(u64);

impl Hasher for PairHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
