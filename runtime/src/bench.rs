//! Benchmark support: a large Zipf-skewed ratings set and the hand-written
//! training loop a compiled model is measured against.
//!
//! * [`generate_zipf`] draws ratings at MovieLens scale and beyond
//!   ([`ZipfConfig::large`]: 20 million ratings) in a few seconds. Item
//!   popularity follows a Zipf law, because real catalogues do and because the
//!   skew decides how well a training loop's memory accesses hit the cache; a
//!   uniform draw would flatter or punish every implementation alike and
//!   measure nothing.
//! * [`load_or_generate_zipf`] keeps the drawn ratings in a compact binary
//!   cache file, so a benchmark run spends its time training, not drawing.
//! * [`HandwrittenBiasedMf`] is `models/biased_mf.rec` written by hand the way
//!   a performance engineer would: `f32`, vectorised, with optional software
//!   prefetching. It is the practical ceiling for generated code.
//! * [`RatingTriples`] pulls the user, item and rating arrays that loop
//!   trains on out of any dataset with those roles.
//! * [`peak_memory_bytes`] reports the process's high-water mark, for the
//!   memory column of a benchmark table.
//!
//! # The data
//!
//! Columns `user` (`index(user)`, ids `u1`, `u2`, ...), `item`
//! (`index(item)`, ids `i1`, `i2`, ...) and `rating` (`real`, whole stars
//! 1..=5); roles user `user`, item `item`, target `rating`; no time column.
//! That is the layout the ml-100k reader and [`crate::synth`] give those
//! columns, so every model that trains on them trains on this.
//!
//! Each rating picks its item with probability proportional to
//! `1 / rank^exponent` (rank 1 the most popular, ranks a random permutation
//! of the items) and its user with the milder `1 / rank^0.5`. Pairs are drawn
//! independently, so a pair can repeat. The rating is
//! `3.5 + b_u + b_i + p_u · q_i + ε`, rounded to whole stars and clamped to
//! 1..=5, with `b_u ~ N(0, 0.35²)`, `b_i ~ N(0, 0.4²)`, `p_u`, `q_i` four
//! components `~ N(0, 0.5²)` each and `ε ~ N(0, 0.8²)`: biases and a rank-4
//! interaction a model can learn, and noise it cannot.
//!
//! Rows are drawn in chunks of [`CHUNK_ROWS`], each from its own generator
//! seeded by the configuration's seed and the chunk's number, so the chunks
//! run in parallel and the output depends on the configuration only, never on
//! the number of threads.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::data::{Column, ColumnData, DataError, Dataset, IdMap};

/// Rows drawn by one generator; the unit of parallel work.
pub const CHUNK_ROWS: usize = 1 << 16;

/// The user activity exponent: skewed, but far less than item popularity.
const USER_EXPONENT: f64 = 0.5;
/// The dimension of the planted interaction.
const DIM: usize = 4;
const GLOBAL_MEAN: f32 = 3.5;
const USER_BIAS_SD: f32 = 0.35;
const ITEM_BIAS_SD: f32 = 0.4;
const FACTOR_SD: f32 = 0.5;
const NOISE_SD: f32 = 0.8;

/// The size, skew and seed of a Zipf ratings set.
#[derive(Clone, Debug, PartialEq)]
pub struct ZipfConfig {
    /// The number of users (the size of domain `user`).
    pub users: usize,
    /// The number of items (the size of domain `item`).
    pub items: usize,
    /// The number of rating rows.
    pub ratings: usize,
    /// Item popularity: rank `r` is drawn with probability `∝ 1 / r^exponent`.
    /// 0 is uniform; a non-finite exponent is taken as 0.
    pub exponent: f64,
    pub seed: u64,
}

impl ZipfConfig {
    /// The benchmark set: 200,000 users, 50,000 items, 20 million ratings,
    /// exponent 1. Big enough that the factor tables (about 32 MB at
    /// 32 dimensions) do not fit in a cache, as in production.
    pub fn large() -> ZipfConfig {
        ZipfConfig {
            users: 200_000,
            items: 50_000,
            ratings: 20_000_000,
            exponent: 1.0,
            seed: 42,
        }
    }

    /// The dataset's name for reports: `zipf-20m` for 20 million ratings.
    pub fn name(&self) -> String {
        let n = self.ratings;
        for (unit, suffix) in [(1_000_000, "m"), (1_000, "k")] {
            if n >= unit && n / unit * unit == n {
                return format!("zipf-{}{suffix}", n / unit);
            }
        }
        format!("zipf-{n}")
    }

    /// The cache file of this configuration, naming every field that changes
    /// its contents: `zipf-u200000-i50000-r20000000-e1-s42-v1.bin`.
    pub fn cache_file_name(&self) -> String {
        format!(
            "zipf-u{}-i{}-r{}-e{}-s{}-v{CACHE_VERSION}.bin",
            self.users,
            self.items,
            self.ratings,
            self.exponent(),
            self.seed
        )
    }

    fn exponent(&self) -> f64 {
        if self.exponent.is_finite() {
            self.exponent
        } else {
            0.0
        }
    }

    /// Domain sizes as indices can hold them.
    fn domain_sizes(&self) -> (usize, usize) {
        let cap = u32::MAX as usize;
        (self.users.min(cap), self.items.min(cap))
    }
}

/// Vose's alias table: an index drawn in constant time with probability
/// proportional to its weight, whatever the number of weights.
struct Alias {
    /// Accept column `i` when the draw's fraction is below `threshold[i]`
    /// (a probability scaled to `2^64`), else take `alias[i]`.
    threshold: Vec<u64>,
    alias: Vec<u32>,
}

impl Alias {
    /// `weights` at most `u32::MAX` long; if they do not sum to a positive
    /// finite total, the draw is uniform.
    fn new(weights: &[f64]) -> Alias {
        let n = weights.len();
        let mut total: f64 = weights.iter().sum();
        let uniform = !(total.is_finite() && total > 0.0);
        if uniform {
            total = n as f64;
        }
        let mut scaled: Vec<f64> = weights
            .iter()
            .map(|&w| if uniform { 1.0 } else { w * n as f64 / total })
            .collect();
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Whatever is left is 1 up to rounding: always accepted.
        for i in small.into_iter().chain(large) {
            scaled[i] = 1.0;
        }
        let threshold = scaled
            .iter()
            .map(|&p| {
                if p >= 1.0 {
                    u64::MAX
                } else {
                    (p * 18_446_744_073_709_551_616.0) as u64
                }
            })
            .collect();
        Alias { threshold, alias }
    }

    /// One draw from one 64-bit random number: the high half of `x · n` is
    /// the column, the low half a fraction uniform within it.
    #[inline]
    fn sample(&self, rng: &mut impl RngCore) -> u32 {
        let product = u128::from(rng.next_u64()) * self.threshold.len() as u128;
        let column = (product >> 64) as usize;
        let fraction = product as u64;
        match (self.threshold.get(column), self.alias.get(column)) {
            (Some(&t), Some(&a)) if fraction >= t => a,
            _ => column as u32,
        }
    }
}

/// Weights `1 / rank^exponent` over a random permutation of `n` entries.
fn zipf_weights(rng: &mut StdRng, n: usize, exponent: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut weights = vec![0.0; n];
    for (rank, i) in order.into_iter().enumerate() {
        weights[i] = ((rank + 1) as f64).powf(-exponent);
    }
    weights
}

/// The rows as three columns, the form both the generator and the cache use.
#[derive(Clone, Debug, Default, PartialEq)]
struct Triples {
    users: Vec<u32>,
    items: Vec<u32>,
    ratings: Vec<f32>,
}

/// One entity's planted bias and interaction vector.
#[derive(Clone, Copy)]
struct Planted {
    bias: f32,
    vector: [f32; DIM],
}

fn planted(rng: &mut StdRng, n: usize, bias_sd: f32) -> Vec<Planted> {
    (0..n)
        .map(|_| Planted {
            bias: bias_sd * rng.sample::<f32, _>(StandardNormal),
            vector: std::array::from_fn(|_| FACTOR_SD * rng.sample::<f32, _>(StandardNormal)),
        })
        .collect()
}

/// The seed of chunk `c`: distinct per chunk, and `seed_from_u64` spreads
/// neighbouring seeds into unrelated streams.
fn chunk_seed(seed: u64, c: usize) -> u64 {
    seed ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn draw(config: &ZipfConfig) -> Triples {
    let (users, items) = config.domain_sizes();
    if users == 0 || items == 0 || config.ratings == 0 {
        return Triples::default();
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let user_alias = Alias::new(&zipf_weights(&mut rng, users, USER_EXPONENT));
    let item_alias = Alias::new(&zipf_weights(&mut rng, items, config.exponent()));
    let user_terms = planted(&mut rng, users, USER_BIAS_SD);
    let item_terms = planted(&mut rng, items, ITEM_BIAS_SD);

    let n = config.ratings;
    let mut out = Triples {
        users: vec![0; n],
        items: vec![0; n],
        ratings: vec![0.0; n],
    };
    out.users
        .par_chunks_mut(CHUNK_ROWS)
        .zip(out.items.par_chunks_mut(CHUNK_ROWS))
        .zip(out.ratings.par_chunks_mut(CHUNK_ROWS))
        .enumerate()
        .for_each(|(c, ((us, is), rs))| {
            let mut rng = StdRng::seed_from_u64(chunk_seed(config.seed, c));
            for ((u_out, i_out), r_out) in us.iter_mut().zip(is.iter_mut()).zip(rs.iter_mut()) {
                let u = user_alias.sample(&mut rng);
                let i = item_alias.sample(&mut rng);
                let noise = NOISE_SD * rng.sample::<f32, _>(StandardNormal);
                let (pu, qi) = (user_terms[u as usize], item_terms[i as usize]);
                let taste: f32 = (0..DIM).map(|d| pu.vector[d] * qi.vector[d]).sum();
                let score = GLOBAL_MEAN + pu.bias + qi.bias + taste;
                *u_out = u;
                *i_out = i;
                *r_out = (score + noise).round().clamp(1.0, 5.0);
            }
        });
    out
}

/// A domain of `n` ids `prefix1`, `prefix2`, ...
fn numbered(prefix: &str, n: usize) -> IdMap {
    let mut map = IdMap::new();
    for k in 1..=n {
        map.intern(&format!("{prefix}{k}"));
    }
    map
}

fn assemble(config: &ZipfConfig, t: Triples) -> Dataset {
    let (users, items) = config.domain_sizes();
    let ratings: Vec<f64> = t.ratings.par_iter().map(|&r| f64::from(r)).collect();
    let column = |name: &str, data: ColumnData| Column {
        name: name.to_string(),
        data,
    };
    let (user_map, item_map) = rayon::join(|| numbered("u", users), || numbered("i", items));
    Dataset {
        name: config.name(),
        columns: vec![
            column(
                "user",
                ColumnData::Index {
                    domain: "user".to_string(),
                    values: t.users,
                },
            ),
            column(
                "item",
                ColumnData::Index {
                    domain: "item".to_string(),
                    values: t.items,
                },
            ),
            column("rating", ColumnData::Real(ratings)),
        ],
        domains: [
            ("user".to_string(), user_map),
            ("item".to_string(), item_map),
        ]
        .into_iter()
        .collect(),
        target: Some("rating".to_string()),
        user: Some("user".to_string()),
        item: Some("item".to_string()),
        time: None,
        skipped: 0,
        notes: Vec::new(),
    }
}

/// The Zipf ratings set of `config`; see the module documentation. A
/// configuration with no users or no items has no rows; domains larger than
/// `u32::MAX` are cut to it.
pub fn generate_zipf(config: &ZipfConfig) -> Dataset {
    assemble(config, draw(config))
}

/// The user, item and rating columns of a dataset laid out like
/// [`generate_zipf`]'s (or ml-100k's), ratings as `f32`: the arrays
/// [`HandwrittenBiasedMf::epoch`] trains on.
#[derive(Clone, Debug, PartialEq)]
pub struct RatingTriples<'a> {
    pub users: &'a [u32],
    pub items: &'a [u32],
    pub ratings: Vec<f32>,
}

impl RatingTriples<'_> {
    /// The columns of `data`'s user, item and (real) target roles.
    pub fn of(data: &Dataset) -> Result<RatingTriples<'_>, DataError> {
        let missing = |what: &str| DataError::Invalid(format!("{}: no {what} column", data.name));
        let (_, users) = data.users().ok_or_else(|| missing("user"))?;
        let (_, items) = data.items().ok_or_else(|| missing("item"))?;
        let ratings = match data.target.as_deref().and_then(|t| data.column(t)) {
            Some(Column {
                data: ColumnData::Real(r),
                ..
            }) => r.iter().map(|&x| x as f32).collect(),
            _ => return Err(missing("real target")),
        };
        Ok(RatingTriples {
            users,
            items,
            ratings,
        })
    }
}

// ---------------------------------------------------------------------------
// The cache.

const CACHE_MAGIC: &[u8; 8] = b"RECCZIPF";
/// Bump whenever the draw changes (constants, order of draws, generator), so
/// old cache files are not mistaken for the new data.
const CACHE_VERSION: u32 = 1;
/// Magic, version, a zero word, then users, items, ratings, exponent bits,
/// seed and row count as little-endian `u64`.
const HEADER_BYTES: usize = 8 + 4 + 4 + 6 * 8;
/// Values converted per read or write.
const IO_CHUNK: usize = 1 << 16;

/// Where benchmark data is cached: `$RECC_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/recc`, else `$HOME/.cache/recc`, else `target/recc-cache`
/// (relative to the working directory). Empty variables count as unset.
pub fn default_cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v: &OsString| !v.is_empty());
    if let Some(dir) = var("RECC_CACHE_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = var("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("recc")
    } else if let Some(home) = var("HOME") {
        PathBuf::from(home).join(".cache").join("recc")
    } else {
        PathBuf::from("target").join("recc-cache")
    }
}

/// [`generate_zipf`]`(config)`, read from `cache_dir` when an earlier call
/// left it there. A missing, unreadable, truncated or otherwise corrupt cache
/// file is drawn again and rewritten; the file appears under its final name
/// only once complete, so a concurrent or interrupted run never leaves half a
/// file to be read; the temporary file a killed run leaves
/// (`.NAME.recc-tmp-PID-…`) is removed by the next write. Errors are those of
/// creating the directory or writing the file.
pub fn load_or_generate_zipf(config: &ZipfConfig, cache_dir: &Path) -> Result<Dataset, DataError> {
    let path = cache_dir.join(config.cache_file_name());
    if let Some(t) = read_cache(config, &path) {
        return Ok(assemble(config, t));
    }
    let t = draw(config);
    write_cache(config, &t, &path)?;
    Ok(assemble(config, t))
}

fn header(config: &ZipfConfig, rows: usize) -> [u8; HEADER_BYTES] {
    let (users, items) = config.domain_sizes();
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(CACHE_MAGIC);
    h[8..12].copy_from_slice(&CACHE_VERSION.to_le_bytes());
    let fields = [
        users as u64,
        items as u64,
        config.ratings as u64,
        config.exponent().to_bits(),
        config.seed,
        rows as u64,
    ];
    for (slot, f) in h[16..].chunks_exact_mut(8).zip(fields) {
        slot.copy_from_slice(&f.to_le_bytes());
    }
    h
}

/// Write `values` as little-endian 4-byte words.
fn write_words<W: Write, T: Copy>(
    w: &mut W,
    values: &[T],
    bytes: fn(T) -> [u8; 4],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(IO_CHUNK * 4);
    for chunk in values.chunks(IO_CHUNK) {
        buf.clear();
        buf.extend(chunk.iter().flat_map(|&v| bytes(v)));
        w.write_all(&buf)?;
    }
    Ok(())
}

fn write_cache(config: &ZipfConfig, t: &Triples, path: &Path) -> Result<(), DataError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |e| DataError::io(path, e);
    std::fs::create_dir_all(dir).map_err(io)?;
    // Named after the cache file, so one left by a killed run is recognised
    // and removed by the next write.
    let mut tmp = crate::modelfile::temp_file_beside(path).map_err(io)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        w.write_all(&header(config, t.users.len())).map_err(io)?;
        write_words(&mut w, &t.users, u32::to_le_bytes).map_err(io)?;
        write_words(&mut w, &t.items, u32::to_le_bytes).map_err(io)?;
        write_words(&mut w, &t.ratings, f32::to_le_bytes).map_err(io)?;
        w.flush().map_err(io)?;
    }
    // No fsync: a file torn by a crash fails the checks on reading and is
    // drawn again, which is cheaper than syncing hundreds of megabytes.
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Read `n` little-endian words, each checked by `ok`; `None` at the first
/// short read or failed check.
fn read_words<R: Read, T>(
    r: &mut R,
    n: usize,
    from: fn([u8; 4]) -> T,
    ok: impl Fn(&T) -> bool,
) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0u8; IO_CHUNK * 4];
    while out.len() < n {
        let take = (n - out.len()).min(IO_CHUNK);
        let bytes = &mut buf[..take * 4];
        r.read_exact(bytes).ok()?;
        for w in bytes.chunks_exact(4) {
            let v = from([w[0], w[1], w[2], w[3]]);
            if !ok(&v) {
                return None;
            }
            out.push(v);
        }
    }
    Some(out)
}

/// The cached rows of `config`, or `None` if the file is missing or is not
/// exactly what `config` would write.
fn read_cache(config: &ZipfConfig, path: &Path) -> Option<Triples> {
    let file = File::open(path).ok()?;
    let rows = match config.domain_sizes() {
        (0, _) | (_, 0) => 0,
        _ => config.ratings,
    };
    let expected_len = (rows as u64)
        .checked_mul(12)?
        .checked_add(HEADER_BYTES as u64)?;
    if file.metadata().ok()?.len() != expected_len {
        return None;
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut h = [0u8; HEADER_BYTES];
    r.read_exact(&mut h).ok()?;
    if h != header(config, rows) {
        return None;
    }
    let (users, items) = config.domain_sizes();
    let users = read_words(&mut r, rows, u32::from_le_bytes, |&u| (u as usize) < users)?;
    let items = read_words(&mut r, rows, u32::from_le_bytes, |&i| (i as usize) < items)?;
    let ratings = read_words(&mut r, rows, f32::from_le_bytes, |r| {
        (1.0..=5.0).contains(r)
    })?;
    Some(Triples {
        users,
        items,
        ratings,
    })
}

// ---------------------------------------------------------------------------
// The hand-written ceiling.

/// Lanes per vector step: one AVX register of `f32`.
const LANES: usize = 8;

/// `models/biased_mf.rec` trained by plain SGD, written by hand for speed:
/// `R(u, i) = b + w_u + m_i + p_u · q_i`, loss `(R − r)²`, penalty
/// `reg · (|p_u|² + |q_i|² + w_u² + m_i²)` on the rows an example touches.
///
/// What a compiled model has to beat, or come close to: `f32` parameters in
/// flat row-major tables, the dot product and the row updates in blocks of
/// eight lanes (AVX intrinsics where the CPU has AVX, found at run time;
/// plain `[f32; 8]` blocks elsewhere), and optional software prefetching of
/// the rows a few examples ahead. Results depend neither on the instruction
/// set nor on prefetching: every path adds in the same order and fuses no
/// multiply-adds (FMA would round differently per machine, and an SGD step
/// is bound by memory, not arithmetic).
#[derive(Clone, Debug, PartialEq)]
pub struct HandwrittenBiasedMf {
    /// The factor dimension (32 in `biased_mf.rec`).
    pub k: usize,
    /// `b`.
    pub global: f32,
    /// `w`, one per user.
    pub user_bias: Vec<f32>,
    /// `m`, one per item.
    pub item_bias: Vec<f32>,
    /// `p`: user `u`'s factors are `user_factors[u·k .. u·k + k]`.
    pub user_factors: Vec<f32>,
    /// `q`: item `i`'s factors are `item_factors[i·k .. i·k + k]`.
    pub item_factors: Vec<f32>,
}

/// The examples of an epoch, in one place for the kernel.
struct Examples<'a> {
    users: &'a [u32],
    items: &'a [u32],
    ratings: &'a [f32],
    order: &'a [u32],
}

impl HandwrittenBiasedMf {
    /// Factors drawn `N(0, 0.1²)` (users first, then items, from one
    /// generator seeded with `seed`) as `init normal(0, 0.1)` asks; biases,
    /// like the model's, start at zero. Set [`Self::global`] to the mean
    /// rating to start closer.
    pub fn new(users: usize, items: usize, k: usize, seed: u64) -> HandwrittenBiasedMf {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut factors = |n: usize| -> Vec<f32> {
            (0..n * k)
                .map(|_| 0.1 * rng.sample::<f32, _>(StandardNormal))
                .collect()
        };
        let user_factors = factors(users);
        let item_factors = factors(items);
        HandwrittenBiasedMf {
            k,
            global: 0.0,
            user_bias: vec![0.0; users],
            item_bias: vec![0.0; items],
            user_factors,
            item_factors,
        }
    }

    /// The model's score `R(u, i)`, or `None` for a user or item outside it.
    pub fn predict(&self, u: u32, i: u32) -> Option<f32> {
        let (u, i, k) = (u as usize, i as usize, self.k);
        let p = self.user_factors.get(row(u, k)?)?;
        let q = self.item_factors.get(row(i, k)?)?;
        let (dot, _, _) = Portable::dot_and_norms(p, q);
        Some(self.global + self.user_bias.get(u)? + self.item_bias.get(i)? + dot)
    }

    /// One SGD epoch over `order` (row numbers into `users`, `items` and
    /// `ratings`) with learning rate `lr` and penalty weight `reg`, returning
    /// the summed objective (squared error plus penalty, before each step)
    /// as the recc trainer sums it.
    ///
    /// The step is the gradient of the model's loss applied at once to every
    /// touched row, from the values before the step: with `e = R − r`,
    /// `b −= lr·2e`, `w_u −= lr·(2e + 2·reg·w_u)`, `m_i` likewise,
    /// `p_u −= lr·(2e·q_i + 2·reg·p_u)` and `q_i −= lr·(2e·p_u + 2·reg·q_i)`.
    ///
    /// With `prefetch > 0`, while training example `j` the factor rows and
    /// biases of example `j + prefetch` are prefetched into L1, and the
    /// index and rating entries of example `j + 2·prefetch` (so the indices
    /// of the rows to fetch are at hand in time). Prefetching changes speed
    /// only, never results. It needs x86-64; elsewhere it is ignored.
    ///
    /// Rows of `order` past the shortest of the three columns, and users or
    /// items outside the model, are skipped and add nothing to the sum.
    #[allow(clippy::too_many_arguments)]
    pub fn epoch(
        &mut self,
        users: &[u32],
        items: &[u32],
        ratings: &[f32],
        order: &[u32],
        lr: f32,
        reg: f32,
        prefetch: usize,
    ) -> f64 {
        let n = users.len().min(items.len()).min(ratings.len());
        let ex = Examples {
            users: &users[..n],
            items: &items[..n],
            ratings: &ratings[..n],
            order,
        };
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx") {
                // SAFETY: the CPU supports AVX, checked just above.
                return unsafe { epoch_avx(self, &ex, lr, reg, prefetch) };
            }
        }
        epoch_portable(self, &ex, lr, reg, prefetch)
    }
}

/// The range of row `index` in a table of rows `k` long, if it can exist.
#[inline(always)]
fn row(index: usize, k: usize) -> Option<std::ops::Range<usize>> {
    let start = index.checked_mul(k)?;
    Some(start..start.checked_add(k)?)
}

/// The vector arithmetic of a step, one implementation per instruction set.
/// Every implementation rounds exactly alike: lanes are summed in
/// [`reduce`]'s order, the tail past the last whole block one by one, and
/// no multiply-add is fused.
trait Lanes {
    /// `(p · q, |p|², |q|²)`.
    fn dot_and_norms(p: &[f32], q: &[f32]) -> (f32, f32, f32);
    /// `p ← decay·p − step·q` and `q ← decay·q − step·p`, from the old values.
    fn update_rows(p: &mut [f32], q: &mut [f32], decay: f32, step: f32);
}

/// Plain Rust on `[f32; 8]` blocks, for any target.
struct Portable;

impl Lanes for Portable {
    #[inline(always)]
    fn dot_and_norms(p: &[f32], q: &[f32]) -> (f32, f32, f32) {
        let mut dot = [0.0f32; LANES];
        let mut pp = [0.0f32; LANES];
        let mut qq = [0.0f32; LANES];
        let pc = p.chunks_exact(LANES);
        let qc = q.chunks_exact(LANES);
        let (pt, qt) = (pc.remainder(), qc.remainder());
        for (a, b) in pc.zip(qc) {
            for l in 0..LANES {
                dot[l] += a[l] * b[l];
                pp[l] += a[l] * a[l];
                qq[l] += b[l] * b[l];
            }
        }
        tail_dot_and_norms(pt, qt, (reduce(&dot), reduce(&pp), reduce(&qq)))
    }

    #[inline(always)]
    fn update_rows(p: &mut [f32], q: &mut [f32], decay: f32, step: f32) {
        let mut pc = p.chunks_exact_mut(LANES);
        let mut qc = q.chunks_exact_mut(LANES);
        for (a, b) in (&mut pc).zip(&mut qc) {
            for l in 0..LANES {
                let (x, y) = (a[l], b[l]);
                a[l] = decay * x - step * y;
                b[l] = decay * y - step * x;
            }
        }
        tail_update(pc.into_remainder(), qc.into_remainder(), decay, step);
    }
}

/// The lanes summed as a tree: `((x0+x4) + (x2+x6)) + ((x1+x5) + (x3+x7))`,
/// the order the AVX reduction takes.
#[inline(always)]
fn reduce(x: &[f32; LANES]) -> f32 {
    ((x[0] + x[4]) + (x[2] + x[6])) + ((x[1] + x[5]) + (x[3] + x[7]))
}

#[inline(always)]
fn tail_dot_and_norms(p: &[f32], q: &[f32], sums: (f32, f32, f32)) -> (f32, f32, f32) {
    let (mut d, mut np, mut nq) = sums;
    for (&a, &b) in p.iter().zip(q) {
        d += a * b;
        np += a * a;
        nq += b * b;
    }
    (d, np, nq)
}

#[inline(always)]
fn tail_update(p: &mut [f32], q: &mut [f32], decay: f32, step: f32) {
    for (a, b) in p.iter_mut().zip(q) {
        let (x, y) = (*a, *b);
        *a = decay * x - step * y;
        *b = decay * y - step * x;
    }
}

/// AVX intrinsics, 8 lanes to a register. Only reachable through
/// [`epoch_avx`], which runs after AVX has been detected.
#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{tail_dot_and_norms, tail_update, LANES};
    use std::arch::x86_64::*;

    /// The lanes of `v` summed in [`super::reduce`]'s order.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn hsum(v: __m256) -> f32 {
        // [x0+x4, x1+x5, x2+x6, x3+x7]
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        // [s0+s2, s1+s3, ..]
        let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)))
    }

    /// # Safety
    /// The CPU must support AVX.
    #[inline]
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn dot_and_norms(p: &[f32], q: &[f32]) -> (f32, f32, f32) {
        let (mut dot, mut pp, mut qq) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let pc = p.chunks_exact(LANES);
        let qc = q.chunks_exact(LANES);
        let (pt, qt) = (pc.remainder(), qc.remainder());
        for (a, b) in pc.zip(qc) {
            // In bounds: each chunk holds exactly eight floats.
            let a = _mm256_loadu_ps(a.as_ptr());
            let b = _mm256_loadu_ps(b.as_ptr());
            dot = _mm256_add_ps(dot, _mm256_mul_ps(a, b));
            pp = _mm256_add_ps(pp, _mm256_mul_ps(a, a));
            qq = _mm256_add_ps(qq, _mm256_mul_ps(b, b));
        }
        tail_dot_and_norms(pt, qt, (hsum(dot), hsum(pp), hsum(qq)))
    }

    /// # Safety
    /// The CPU must support AVX.
    #[inline]
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn update_rows(p: &mut [f32], q: &mut [f32], decay: f32, step: f32) {
        let (d, s) = (_mm256_set1_ps(decay), _mm256_set1_ps(step));
        let mut pc = p.chunks_exact_mut(LANES);
        let mut qc = q.chunks_exact_mut(LANES);
        for (a, b) in (&mut pc).zip(&mut qc) {
            // In bounds: each chunk holds exactly eight floats.
            let x = _mm256_loadu_ps(a.as_ptr());
            let y = _mm256_loadu_ps(b.as_ptr());
            _mm256_storeu_ps(
                a.as_mut_ptr(),
                _mm256_sub_ps(_mm256_mul_ps(d, x), _mm256_mul_ps(s, y)),
            );
            _mm256_storeu_ps(
                b.as_mut_ptr(),
                _mm256_sub_ps(_mm256_mul_ps(d, y), _mm256_mul_ps(s, x)),
            );
        }
        tail_update(pc.into_remainder(), qc.into_remainder(), decay, step);
    }
}

/// The AVX implementation. Private, and used only as `kernel::<Avx, _>`
/// inside [`epoch_avx`], which runs only where AVX was detected: that is what
/// makes its calls sound.
#[cfg(target_arch = "x86_64")]
struct Avx;

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx {
    #[inline(always)]
    fn dot_and_norms(p: &[f32], q: &[f32]) -> (f32, f32, f32) {
        // SAFETY: `Avx` is used only inside `epoch_avx`, which runs only
        // once AVX has been detected.
        unsafe { avx::dot_and_norms(p, q) }
    }

    #[inline(always)]
    fn update_rows(p: &mut [f32], q: &mut [f32], decay: f32, step: f32) {
        // SAFETY: as above.
        unsafe { avx::update_rows(p, q, decay, step) }
    }
}

/// The epoch with AVX arithmetic, compiled with AVX enabled throughout so
/// the intrinsics inline into the loop.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn epoch_avx(
    m: &mut HandwrittenBiasedMf,
    ex: &Examples,
    lr: f32,
    reg: f32,
    prefetch: usize,
) -> f64 {
    if prefetch == 0 {
        kernel::<Avx, false>(m, ex, lr, reg, 0)
    } else {
        kernel::<Avx, true>(m, ex, lr, reg, prefetch)
    }
}

/// The epoch with portable arithmetic.
fn epoch_portable(
    m: &mut HandwrittenBiasedMf,
    ex: &Examples,
    lr: f32,
    reg: f32,
    prefetch: usize,
) -> f64 {
    if prefetch == 0 {
        kernel::<Portable, false>(m, ex, lr, reg, 0)
    } else {
        kernel::<Portable, true>(m, ex, lr, reg, prefetch)
    }
}

/// Prefetch every 64-byte line `s` touches into all cache levels.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_lines<T>(s: &[T]) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let base = s.as_ptr().cast::<i8>();
    let skew = base as usize & 63;
    let bytes = skew + std::mem::size_of_val(s);
    let first = base.wrapping_sub(skew);
    let mut off = 0;
    while off < bytes {
        // SAFETY: a prefetch is a hint; it reads nothing and cannot fault,
        // whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(off)) };
        off += 64;
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prefetch_lines<T>(_: &[T]) {}

/// Prefetch what example `j + distance` needs, and the indices of example
/// `j + 2·distance`.
#[inline(always)]
fn prefetch_ahead(m: &HandwrittenBiasedMf, ex: &Examples, j: usize, distance: usize) {
    let k = m.k;
    if let Some(&r) = ex.order.get(j.saturating_add(distance.saturating_mul(2))) {
        let r = r as usize;
        if let (Some(u), Some(i), Some(x)) = (
            ex.users.get(r..r + 1),
            ex.items.get(r..r + 1),
            ex.ratings.get(r..r + 1),
        ) {
            prefetch_lines(u);
            prefetch_lines(i);
            prefetch_lines(x);
        }
    }
    let Some(&r) = ex.order.get(j.saturating_add(distance)) else {
        return;
    };
    let (Some(&u), Some(&i)) = (ex.users.get(r as usize), ex.items.get(r as usize)) else {
        return;
    };
    let (u, i) = (u as usize, i as usize);
    if let Some(p) = row(u, k).and_then(|r| m.user_factors.get(r)) {
        prefetch_lines(p);
    }
    if let Some(w) = m.user_bias.get(u..u + 1) {
        prefetch_lines(w);
    }
    if let Some(q) = row(i, k).and_then(|r| m.item_factors.get(r)) {
        prefetch_lines(q);
    }
    if let Some(b) = m.item_bias.get(i..i + 1) {
        prefetch_lines(b);
    }
}

/// The epoch itself, generic over the arithmetic; `PREFETCH` compiles the
/// prefetching in or out so the plain loop carries no trace of it.
#[inline(always)]
fn kernel<L: Lanes, const PREFETCH: bool>(
    m: &mut HandwrittenBiasedMf,
    ex: &Examples,
    lr: f32,
    reg: f32,
    distance: usize,
) -> f64 {
    let k = m.k;
    let decay = 1.0 - lr * 2.0 * reg;
    let mut total = 0.0f64;
    for (j, &r) in ex.order.iter().enumerate() {
        if PREFETCH {
            prefetch_ahead(m, ex, j, distance);
        }
        let r = r as usize;
        let (Some(&u), Some(&i), Some(&rating)) =
            (ex.users.get(r), ex.items.get(r), ex.ratings.get(r))
        else {
            continue;
        };
        let (u, i) = (u as usize, i as usize);
        let (Some(p), Some(q), Some(w), Some(mi)) = (
            row(u, k).and_then(|r| m.user_factors.get_mut(r)),
            row(i, k).and_then(|r| m.item_factors.get_mut(r)),
            m.user_bias.get_mut(u),
            m.item_bias.get_mut(i),
        ) else {
            continue;
        };
        let (dot, pp, qq) = L::dot_and_norms(p, q);
        let (wv, mv) = (*w, *mi);
        let e = m.global + wv + mv + dot - rating;
        total += f64::from(e * e + reg * (pp + qq + wv * wv + mv * mv));
        let step = lr * (2.0 * e);
        m.global -= step;
        *w = decay * wv - step;
        *mi = decay * mv - step;
        L::update_rows(p, q, decay, step);
    }
    total
}

// ---------------------------------------------------------------------------

/// The process's peak resident memory (`VmHWM` in `/proc/self/status`), in
/// bytes; `None` where there is no such file (not Linux).
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut fields = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    // The kernel reports it in kB (kibibytes) and nothing else.
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX and portable kernels agree bit for bit, tail included.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx_matches_portable() {
        if !std::arch::is_x86_feature_detected!("avx") {
            return;
        }
        let data = generate_zipf(&ZipfConfig {
            users: 300,
            items: 100,
            ratings: 20_000,
            exponent: 1.0,
            seed: 3,
        });
        let Ok(t) = RatingTriples::of(&data) else {
            panic!("no rating columns");
        };
        let order: Vec<u32> = (0..data.len() as u32).rev().collect();
        let ex = Examples {
            users: t.users,
            items: t.items,
            ratings: &t.ratings,
            order: &order,
        };
        for k in [32, 21, 5] {
            let mut a = HandwrittenBiasedMf::new(300, 100, k, 9);
            let mut b = a.clone();
            for prefetch in [0, 3] {
                // SAFETY: AVX was detected above.
                let la = unsafe { epoch_avx(&mut a, &ex, 0.01, 0.05, prefetch) };
                let lb = epoch_portable(&mut b, &ex, 0.01, 0.05, prefetch);
                assert_eq!(la.to_bits(), lb.to_bits(), "k {k}");
                assert_eq!(a, b, "k {k}");
            }
        }
    }
}
