//! The built-in synthetic ratings: what `recc train` uses when no data are given.
//!
//! [`generate`] draws a MovieLens-100k-shaped dataset from a seeded random
//! generator, so every model that runs on ml-100k runs on it, the same seed
//! always gives the same data, and a model with user and item terms visibly
//! learns. The default ([`SynthConfig::default`]) is 600 users, 400 items and
//! about 30,000 ratings, drawn in a few milliseconds.
//!
//! # Columns
//!
//! | column       | kind               | values |
//! |--------------|--------------------|--------|
//! | `user`       | `index(user)`      | ids `u1`, `u2`, ... |
//! | `item`       | `index(item)`      | ids `i1`, `i2`, ...; labels like `Item 17 (Drama, 1994)` |
//! | `rating`     | `real`             | whole stars 1..=5 |
//! | `timestamp`  | `time`             | Unix seconds within the two years from 2021-01-01 UTC |
//! | `age`        | `real`             | the user's age in years, 12..=75 |
//! | `age_group`  | `index(age_group)` | `under 18`, `18-24`, `25-34`, `35-44`, `45-49`, `50-55`, `56+` |
//! | `gender`     | `index(gender)`    | `F`, `M` |
//! | `occupation` | `index(occupation)`| ten occupations, see [`OCCUPATIONS`] |
//! | `genres`     | `bag(genre)`       | 1 to 3 of eight genres ([`GENRES`]), weight 1.0 each |
//! | `year`       | `index(year)`      | the item's release year, ids in increasing order |
//!
//! Roles: user `user`, item `item`, target `rating`, time `timestamp`. Rows
//! are grouped by user and in time order within a user. The user-level
//! columns repeat on each of that user's rows.
//!
//! # How a rating is drawn
//!
//! Everything comes from one `StdRng` seeded with [`SynthConfig::seed`], in a
//! fixed order, so the output depends on the configuration only.
//!
//! * **Users.** Age `round(31 + 11·z)` clamped to 12..=75 (`z` standard
//!   normal), bucketed into the seven age groups. Gender `M` with probability
//!   0.7. Occupation: under 22 a student with probability 0.7, 60 and over
//!   retired with probability 0.6, otherwise drawn from fixed weights. Bias
//!   `b_u ~ N(0, 0.35²)`. Taste `p_u = o_occupation + e_u` in 4 dimensions,
//!   with occupation vectors `o ~ N(0, 0.35²)` per component and
//!   `e_u ~ N(0, 0.35²)`: users who share an occupation share part of their
//!   taste.
//! * **Items.** One to three distinct genres (probabilities 0.45, 0.35,
//!   0.2), drawn without replacement with Drama and Comedy the most common;
//!   the first drawn names the item. Release year `1998 − ⌊9·x⌋`, `x`
//!   standard exponential, at least 1930. Bias `b_i ~ N(0, 0.4²)`. Vector
//!   `q_i` = the mean of its genres' vectors (`N(0, 0.7²)` per component) plus
//!   `N(0, 0.2²)`: items of the same genres point the same way. Drift slope
//!   `s_i ~ N(0, 0.4²)`.
//! * **Who rates what.** Each user rates `m/4 + round((m − m/4)·x)` distinct
//!   items (`m` = [`SynthConfig::ratings_per_user`], `x` standard
//!   exponential, at most every item), drawn without replacement with
//!   Zipf-like popularity: the item of popularity rank `k` (a random
//!   permutation) has weight `1 / (k + 1)^0.9`.
//! * **When.** A user is active from a start uniform in the first 75% of the
//!   two years for a uniform 5%..100% of the time left; ratings fall
//!   uniformly in that window.
//! * **The rating.** With `w` the rating's week (0..=104) and
//!   `d = w / 104 − 0.5`,
//!   `score = 3.5 + b_u + b_i + s_i·d + p_u · q_i`, and the rating is
//!   `score + ε`, `ε ~ N(0, 0.8²)`, rounded to whole stars and clamped to
//!   1..=5.
//!
//! With the default configuration the global mean is about 3.5, predicting
//! the global mean scores an RMSE of about 1.1, and the noise floor (the RMSE
//! of the noiseless score clamped to 1..=5) is about 0.8.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Exp1, StandardNormal};

use crate::data::{Column, ColumnData, Dataset, IdMap};

/// The seed of the default dataset.
pub const DEFAULT_SEED: u64 = 0x5EC_2021;

/// The age groups, in order; MovieLens-100k's buckets.
pub const AGE_GROUPS: [&str; 7] = [
    "under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+",
];

/// The occupations, in domain order.
pub const OCCUPATIONS: [&str; 10] = [
    "student",
    "engineer",
    "educator",
    "programmer",
    "administrator",
    "writer",
    "artist",
    "healthcare",
    "retired",
    "other",
];
/// Weights of [`OCCUPATIONS`] for users neither young nor old enough to be
/// drawn a student or retired first.
const OCCUPATION_WEIGHTS: [f64; 10] = [0.06, 0.16, 0.14, 0.14, 0.12, 0.08, 0.07, 0.07, 0.02, 0.14];
const STUDENT: usize = 0;
const RETIRED: usize = 8;

/// The genres, in domain order.
pub const GENRES: [&str; 8] = [
    "Action",
    "Comedy",
    "Drama",
    "Romance",
    "Thriller",
    "Sci-Fi",
    "Animation",
    "Documentary",
];
const GENRE_WEIGHTS: [f64; 8] = [0.15, 0.20, 0.25, 0.10, 0.12, 0.08, 0.05, 0.05];

/// 2021-01-01 00:00 UTC.
const START: i64 = 1_609_459_200;
const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// Two years.
const SPAN: i64 = 730 * DAY;

/// The dimension of the planted tastes.
const DIM: usize = 4;
const GLOBAL_MEAN: f64 = 3.5;
const USER_BIAS_SD: f64 = 0.35;
const ITEM_BIAS_SD: f64 = 0.4;
const OCCUPATION_TASTE_SD: f64 = 0.35;
const USER_TASTE_SD: f64 = 0.35;
const GENRE_VECTOR_SD: f64 = 0.7;
const ITEM_VECTOR_SD: f64 = 0.2;
const DRIFT_SD: f64 = 0.4;
const NOISE_SD: f64 = 0.8;
const ZIPF_EXPONENT: f64 = 0.9;

/// The size and seed of a synthetic dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    pub users: usize,
    pub items: usize,
    /// The mean number of ratings per user (capped by `items`).
    pub ratings_per_user: usize,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> SynthConfig {
        SynthConfig {
            users: 600,
            items: 400,
            ratings_per_user: 50,
            seed: DEFAULT_SEED,
        }
    }
}

fn normal(rng: &mut StdRng, sd: f64) -> f64 {
    sd * rng.sample::<f64, _>(StandardNormal)
}

fn exponential(rng: &mut StdRng) -> f64 {
    rng.sample::<f64, _>(Exp1)
}

fn vector(rng: &mut StdRng, sd: f64) -> [f64; DIM] {
    std::array::from_fn(|_| normal(rng, sd))
}

/// An index drawn with probability proportional to `weights`.
fn pick(rng: &mut StdRng, weights: &[f64]) -> usize {
    let mut x = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

/// `k` distinct indices drawn without replacement with probability
/// proportional to `weights`, in the order drawn (Efraimidis–Spirakis: the
/// `k` smallest keys `x / w`, `x` standard exponential).
fn pick_distinct(rng: &mut StdRng, weights: &[f64], k: usize) -> Vec<usize> {
    let mut keys: Vec<(f64, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (exponential(rng) / w, i))
        .collect();
    let k = k.min(keys.len());
    if k < keys.len() {
        keys.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0));
        keys.truncate(k);
    }
    keys.sort_by(|a, b| a.0.total_cmp(&b.0));
    keys.into_iter().map(|(_, i)| i).collect()
}

fn age_group(age: f64) -> usize {
    match age as u32 {
        0..=17 => 0,
        18..=24 => 1,
        25..=34 => 2,
        35..=44 => 3,
        45..=49 => 4,
        50..=55 => 5,
        _ => 6,
    }
}

struct User {
    age: f64,
    gender: u32,
    occupation: usize,
    bias: f64,
    taste: [f64; DIM],
}

struct Item {
    genres: Vec<usize>,
    year: i32,
    bias: f64,
    vector: [f64; DIM],
    drift: f64,
}

/// One rating row before it becomes columns; `score` is the noiseless score.
struct Row {
    user: usize,
    item: usize,
    time: i64,
    score: f64,
    rating: f64,
}

/// A domain holding `names` in order.
fn domain(names: impl IntoIterator<Item = String>) -> IdMap {
    let mut map = IdMap::new();
    for n in names {
        map.intern(&n);
    }
    map
}

/// The synthetic dataset of `config`; see the module documentation.
pub fn generate(config: &SynthConfig) -> Dataset {
    draw(config).0
}

/// The dataset and, per row, the noiseless score its rating was drawn from.
fn draw(config: &SynthConfig) -> (Dataset, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(config.seed);

    let occupation_taste: Vec<[f64; DIM]> = (0..OCCUPATIONS.len())
        .map(|_| vector(&mut rng, OCCUPATION_TASTE_SD))
        .collect();
    let genre_vector: Vec<[f64; DIM]> = (0..GENRES.len())
        .map(|_| vector(&mut rng, GENRE_VECTOR_SD))
        .collect();

    let users: Vec<User> = (0..config.users)
        .map(|_| {
            let age = (31.0 + normal(&mut rng, 11.0)).round().clamp(12.0, 75.0);
            let gender = u32::from(rng.random::<f64>() < 0.7);
            let occupation = if age < 22.0 && rng.random::<f64>() < 0.7 {
                STUDENT
            } else if age >= 60.0 && rng.random::<f64>() < 0.6 {
                RETIRED
            } else {
                pick(&mut rng, &OCCUPATION_WEIGHTS)
            };
            let bias = normal(&mut rng, USER_BIAS_SD);
            let own = vector(&mut rng, USER_TASTE_SD);
            let taste = std::array::from_fn(|d| occupation_taste[occupation][d] + own[d]);
            User {
                age,
                gender,
                occupation,
                bias,
                taste,
            }
        })
        .collect();

    let items: Vec<Item> = (0..config.items)
        .map(|_| {
            let count = 1 + pick(&mut rng, &[0.45, 0.35, 0.2]);
            let genres = pick_distinct(&mut rng, &GENRE_WEIGHTS, count);
            let year = (1998 - (9.0 * exponential(&mut rng)) as i32).max(1930);
            let bias = normal(&mut rng, ITEM_BIAS_SD);
            let own = vector(&mut rng, ITEM_VECTOR_SD);
            let n = genres.len().max(1) as f64;
            let vector = std::array::from_fn(|d| {
                own[d] + genres.iter().map(|&g| genre_vector[g][d]).sum::<f64>() / n
            });
            let drift = normal(&mut rng, DRIFT_SD);
            Item {
                genres,
                year,
                bias,
                vector,
                drift,
            }
        })
        .collect();

    // Zipf-like popularity over a random order of the items.
    let mut popularity = vec![0.0; config.items];
    for (rank, item) in pick_distinct(&mut rng, &vec![1.0; config.items], config.items)
        .into_iter()
        .enumerate()
    {
        popularity[item] = 1.0 / ((rank + 1) as f64).powf(ZIPF_EXPONENT);
    }

    let weeks = (SPAN / WEEK) as f64;
    let mean = config.ratings_per_user as f64;
    let least = (config.ratings_per_user / 4) as f64;
    let mut rows = Vec::new();
    for (u, user) in users.iter().enumerate() {
        let count = (least + ((mean - least) * exponential(&mut rng)).round()) as usize;
        let chosen = pick_distinct(&mut rng, &popularity, count.min(config.items));
        let begin = (rng.random::<f64>() * 0.75 * SPAN as f64) as i64;
        let length = ((0.05 + 0.95 * rng.random::<f64>()) * (SPAN - begin) as f64) as i64;
        let mut user_rows: Vec<Row> = chosen
            .into_iter()
            .map(|i| {
                let offset = begin + (rng.random::<f64>() * length as f64) as i64;
                let week = (offset / WEEK) as f64;
                let item = &items[i];
                let taste: f64 = (0..DIM).map(|d| user.taste[d] * item.vector[d]).sum();
                let score =
                    GLOBAL_MEAN + user.bias + item.bias + item.drift * (week / weeks - 0.5) + taste;
                let rating = (score + normal(&mut rng, NOISE_SD)).round().clamp(1.0, 5.0);
                Row {
                    user: u,
                    item: i,
                    time: START + offset,
                    score,
                    rating,
                }
            })
            .collect();
        user_rows.sort_by_key(|r| (r.time, r.item));
        rows.extend(user_rows);
    }

    (
        assemble(config, &users, &items, &rows),
        rows.iter().map(|r| r.score).collect(),
    )
}

/// The rows as columns, with their domains.
fn assemble(config: &SynthConfig, users: &[User], items: &[Item], rows: &[Row]) -> Dataset {
    let years: BTreeSet<i32> = items.iter().map(|i| i.year).collect();
    let year_map = domain(years.iter().map(i32::to_string));
    let year_index: BTreeMap<i32, u32> = years.iter().zip(0u32..).map(|(&y, i)| (y, i)).collect();

    let mut item_map = domain((1..=items.len()).map(|i| format!("i{i}")));
    for (i, item) in items.iter().enumerate() {
        let genre = item.genres.first().map_or("Unknown", |&g| GENRES[g]);
        item_map.set_label(
            i as u32,
            &format!("Item {} ({genre}, {})", i + 1, item.year),
        );
    }

    let mut domains = BTreeMap::new();
    domains.insert(
        "user".to_string(),
        domain((1..=users.len()).map(|u| format!("u{u}"))),
    );
    domains.insert("item".to_string(), item_map);
    domains.insert(
        "age_group".to_string(),
        domain(AGE_GROUPS.map(String::from)),
    );
    domains.insert("gender".to_string(), domain(["F", "M"].map(String::from)));
    domains.insert(
        "occupation".to_string(),
        domain(OCCUPATIONS.map(String::from)),
    );
    domains.insert("genre".to_string(), domain(GENRES.map(String::from)));
    domains.insert("year".to_string(), year_map);

    let (mut offsets, mut members, mut weights) = (vec![0], Vec::new(), Vec::new());
    for r in rows {
        for &g in &items[r.item].genres {
            members.push(g as u32);
            weights.push(1.0);
        }
        offsets.push(members.len());
    }
    let index = |domain: &str, f: &dyn Fn(&Row) -> u32| ColumnData::Index {
        domain: domain.to_string(),
        values: rows.iter().map(f).collect(),
    };
    let column = |name: &str, data: ColumnData| Column {
        name: name.to_string(),
        data,
    };
    let columns = vec![
        column("user", index("user", &|r| r.user as u32)),
        column("item", index("item", &|r| r.item as u32)),
        column(
            "rating",
            ColumnData::Real(rows.iter().map(|r| r.rating).collect()),
        ),
        column(
            "timestamp",
            ColumnData::Time(rows.iter().map(|r| r.time).collect()),
        ),
        column(
            "age",
            ColumnData::Real(rows.iter().map(|r| users[r.user].age).collect()),
        ),
        column(
            "age_group",
            index("age_group", &|r| age_group(users[r.user].age) as u32),
        ),
        column("gender", index("gender", &|r| users[r.user].gender)),
        column(
            "occupation",
            index("occupation", &|r| users[r.user].occupation as u32),
        ),
        column(
            "genres",
            ColumnData::Bag {
                domain: "genre".to_string(),
                offsets,
                members,
                weights,
            },
        ),
        column(
            "year",
            index("year", &|r| {
                year_index.get(&items[r.item].year).copied().unwrap_or(0)
            }),
        ),
    ];

    Dataset {
        name: format!(
            "synthetic ({} users, {} items, seed {})",
            config.users, config.items, config.seed
        ),
        columns,
        domains,
        target: Some("rating".to_string()),
        user: Some("user".to_string()),
        item: Some("item".to_string()),
        time: Some("timestamp".to_string()),
        skipped: 0,
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rmse(pairs: impl Iterator<Item = (f64, f64)>) -> f64 {
        let (mut sum, mut n) = (0.0, 0.0);
        for (a, b) in pairs {
            sum += (a - b) * (a - b);
            n += 1.0;
        }
        (sum / n).sqrt()
    }

    /// The mix the module documentation promises: mean about 3.5, global-mean
    /// RMSE about 1.1, noise floor about 0.8.
    #[test]
    fn default_mix() {
        let (data, scores) = draw(&SynthConfig::default());
        let Some(ColumnData::Real(ratings)) = data.column("rating").map(|c| &c.data) else {
            panic!("no rating column");
        };
        let mean = ratings.iter().sum::<f64>() / ratings.len() as f64;
        let global = rmse(ratings.iter().map(|&r| (r, mean)));
        let floor = rmse(
            ratings
                .iter()
                .zip(&scores)
                .map(|(&r, &s)| (r, s.clamp(1.0, 5.0))),
        );
        assert!((3.3..3.7).contains(&mean), "mean {mean}");
        assert!((1.0..1.2).contains(&global), "global-mean RMSE {global}");
        assert!((0.72..0.88).contains(&floor), "noise floor {floor}");
    }
}
