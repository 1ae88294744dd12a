//! What a model file keeps of the data it was trained on, so that it answers
//! questions without that data: the few rows scoring a pair reads (the
//! latest training row of each user, a row of each item, histories, side
//! features), the id maps and labels of every domain, every item each user
//! has in any row, and a fingerprint of each training row.
//!
//! The rows are a subset of the data's, in their order, under the same id
//! maps, chosen by [`Binding::scoring_rows`]: bound again to them alone a
//! model scores every (user, item) pair as it did bound to all the data.
//!
//! A fingerprint is a 64-bit FNV-1a hash of a row's values, with raw ids
//! rather than indices, so that the same row read from another file, in
//! another order, has the same fingerprint. Evaluation uses them to leave
//! out test rows the model was trained on.

use serde::{Deserialize, Serialize};

use crate::bind::Binding;
use crate::data::{Column, ColumnData, Dataset};
use crate::modelfile::SavedDomain;

/// The rows of a dataset a model file keeps, with its id maps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedData {
    pub name: String,
    pub target: Option<String>,
    pub user: Option<String>,
    pub item: Option<String>,
    pub time: Option<String>,
    /// Every domain of the data, with all its ids and labels (not only
    /// those of the rows kept).
    pub domains: Vec<SavedDomain>,
    pub columns: Vec<SavedColumn>,
}

/// One column of [`SavedData`], numbers packed as little-endian bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SavedColumn {
    Index {
        name: String,
        domain: String,
        #[serde(with = "packed::u32s")]
        values: Vec<u32>,
    },
    Real {
        name: String,
        #[serde(with = "packed::f64s")]
        values: Vec<f64>,
    },
    Time {
        name: String,
        #[serde(with = "packed::i64s")]
        values: Vec<i64>,
    },
    Bag {
        name: String,
        domain: String,
        #[serde(with = "packed::u32s")]
        offsets: Vec<u32>,
        #[serde(with = "packed::u32s")]
        members: Vec<u32>,
        #[serde(with = "packed::f64s")]
        weights: Vec<f64>,
    },
}

/// What a model file knows of its training data besides its tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedContext {
    /// The rows scoring reads ([`Binding::scoring_rows`]).
    pub data: SavedData,
    /// The rows of `data` that were training rows of the binding, sorted.
    #[serde(with = "packed::u32s")]
    pub train_rows: Vec<u32>,
    /// Per user (an index of the data's user domain): `seen_members`
    /// from `seen_offsets[u]` to `seen_offsets[u + 1]`, the items the user
    /// has in any row of the data, sorted.
    #[serde(with = "packed::u32s")]
    pub seen_offsets: Vec<u32>,
    #[serde(with = "packed::u32s")]
    pub seen_members: Vec<u32>,
    /// The fingerprint of every training row ([`fingerprint`]), sorted,
    /// without repeats.
    #[serde(with = "packed::u64s")]
    pub trained_on: Vec<u64>,
    /// How many training rows there were.
    pub train_len: usize,
}

impl SavedContext {
    /// The context of a model bound by `binding` to `data`, whose binding
    /// was made with training rows `bound_train` (a ranking model's
    /// positives) out of the split's training rows `split_train`.
    pub fn new(
        data: &Dataset,
        binding: &Binding,
        bound_train: &[usize],
        split_train: &[usize],
    ) -> SavedContext {
        let rows = binding.scoring_rows(data);
        let is_train = {
            let mut t = vec![false; data.len()];
            for &r in bound_train {
                t[r] = true;
            }
            t
        };
        let train_rows = rows
            .iter()
            .enumerate()
            .filter(|(_, &r)| is_train[r])
            .map(|(k, _)| k as u32)
            .collect();
        let seen = seen_items(data);
        let mut seen_offsets = Vec::with_capacity(seen.len() + 1);
        seen_offsets.push(0u32);
        let mut seen_members = Vec::new();
        for items in &seen {
            seen_members.extend_from_slice(items);
            seen_offsets.push(seen_members.len() as u32);
        }
        SavedContext {
            data: SavedData::from_rows(data, &rows),
            train_rows,
            seen_offsets,
            seen_members,
            trained_on: fingerprints(data, split_train),
            train_len: split_train.len(),
        }
    }

    /// The items each user has, as [`seen_items`] gives them.
    pub fn seen(&self) -> Vec<Vec<u32>> {
        self.seen_offsets
            .windows(2)
            .map(|w| self.seen_members[w[0] as usize..w[1] as usize].to_vec())
            .collect()
    }

    /// Is a row with fingerprint `f` one the model was trained on?
    pub fn trained_on(&self, f: u64) -> bool {
        self.trained_on.binary_search(&f).is_ok()
    }

    /// The kept rows as a dataset, checked as a reader's would be, with
    /// its training rows.
    pub fn dataset(&self) -> Result<(Dataset, Vec<usize>), String> {
        let data = self.data.to_dataset()?;
        let train = self.train_rows.iter().map(|&r| r as usize).collect();
        Ok((data, train))
    }

    /// What a well-formed context never lacks: valid rows, training rows
    /// among them, a list of items per user of the data, items inside
    /// their domain, sorted fingerprints.
    pub fn check(&self) -> Result<(), String> {
        let (data, train) = self.dataset()?;
        if let Some(r) = train.iter().find(|&&r| r >= data.len()) {
            return Err(format!(
                "training row {r} of {} kept rows is out of range",
                data.len()
            ));
        }
        if train.windows(2).any(|w| w[0] >= w[1]) {
            return Err("the kept training rows are not sorted".into());
        }
        let users = data.users().map_or(0, |(d, _)| data.domain_size(d));
        let items = data.items().map_or(0, |(d, _)| data.domain_size(d));
        let offsets_ok = self.seen_offsets.first() == Some(&0)
            && self.seen_offsets.last().map(|&n| n as usize) == Some(self.seen_members.len())
            && self.seen_offsets.windows(2).all(|w| w[0] <= w[1]);
        if !offsets_ok || self.seen_offsets.len() != users + 1 {
            return Err(format!(
                "the seen items are malformed ({} offsets for {users} users)",
                self.seen_offsets.len()
            ));
        }
        if let Some(i) = self.seen_members.iter().find(|&&i| i as usize >= items) {
            return Err(format!(
                "a seen item {i} is outside the {items} items of the data"
            ));
        }
        if self.trained_on.windows(2).any(|w| w[0] >= w[1]) {
            return Err("the training fingerprints are not sorted".into());
        }
        Ok(())
    }
}

impl SavedData {
    /// Rows `rows` of `data` (in that order) with all its id maps.
    pub fn from_rows(data: &Dataset, rows: &[usize]) -> SavedData {
        let columns = data
            .columns
            .iter()
            .map(|c| {
                let name = c.name.clone();
                match &c.data {
                    ColumnData::Index { domain, values } => SavedColumn::Index {
                        name,
                        domain: domain.clone(),
                        values: rows.iter().map(|&r| values[r]).collect(),
                    },
                    ColumnData::Real(v) => SavedColumn::Real {
                        name,
                        values: rows.iter().map(|&r| v[r]).collect(),
                    },
                    ColumnData::Time(v) => SavedColumn::Time {
                        name,
                        values: rows.iter().map(|&r| v[r]).collect(),
                    },
                    ColumnData::Bag {
                        domain,
                        offsets,
                        members,
                        weights,
                    } => {
                        let mut o = vec![0u32];
                        let (mut m, mut w) = (Vec::new(), Vec::new());
                        for &r in rows {
                            m.extend_from_slice(&members[offsets[r]..offsets[r + 1]]);
                            w.extend_from_slice(&weights[offsets[r]..offsets[r + 1]]);
                            o.push(m.len() as u32);
                        }
                        SavedColumn::Bag {
                            name,
                            domain: domain.clone(),
                            offsets: o,
                            members: m,
                            weights: w,
                        }
                    }
                }
            })
            .collect();
        SavedData {
            name: data.name.clone(),
            target: data.target.clone(),
            user: data.user.clone(),
            item: data.item.clone(),
            time: data.time.clone(),
            domains: data
                .domains
                .iter()
                .map(|(n, m)| SavedDomain::from_id_map(n, m))
                .collect(),
            columns,
        }
    }

    /// The dataset back, validated.
    pub fn to_dataset(&self) -> Result<Dataset, String> {
        let mut domains = std::collections::BTreeMap::new();
        for d in &self.domains {
            if d.labels.len() != d.ids.len() {
                return Err(format!("data domain `{}` has labels missing", d.name));
            }
            let map = d.to_id_map();
            if map.len() != d.ids.len() {
                return Err(format!("data domain `{}` lists an id twice", d.name));
            }
            if domains.insert(d.name.clone(), map).is_some() {
                return Err(format!("data domain `{}` appears twice", d.name));
            }
        }
        let columns = self
            .columns
            .iter()
            .map(|c| match c {
                SavedColumn::Index {
                    name,
                    domain,
                    values,
                } => Column {
                    name: name.clone(),
                    data: ColumnData::Index {
                        domain: domain.clone(),
                        values: values.clone(),
                    },
                },
                SavedColumn::Real { name, values } => Column {
                    name: name.clone(),
                    data: ColumnData::Real(values.clone()),
                },
                SavedColumn::Time { name, values } => Column {
                    name: name.clone(),
                    data: ColumnData::Time(values.clone()),
                },
                SavedColumn::Bag {
                    name,
                    domain,
                    offsets,
                    members,
                    weights,
                } => Column {
                    name: name.clone(),
                    data: ColumnData::Bag {
                        domain: domain.clone(),
                        offsets: offsets.iter().map(|&o| o as usize).collect(),
                        members: members.clone(),
                        weights: weights.clone(),
                    },
                },
            })
            .collect();
        let data = Dataset {
            name: self.name.clone(),
            columns,
            domains,
            target: self.target.clone(),
            user: self.user.clone(),
            item: self.item.clone(),
            time: self.time.clone(),
            skipped: 0,
            notes: Vec::new(),
        };
        data.validate().map_err(|e| format!("kept rows: {e}"))?;
        Ok(data)
    }
}

/// Per user of `data`: the items the user has in any of its rows, sorted,
/// without repeats. Empty when the data has no user or item column.
pub fn seen_items(data: &Dataset) -> Vec<Vec<u32>> {
    let (Some((user_domain, users)), Some((_, items))) = (data.users(), data.items()) else {
        return Vec::new();
    };
    let mut seen = vec![Vec::new(); data.domain_size(user_domain)];
    for (&u, &i) in users.iter().zip(items) {
        seen[u as usize].push(i);
    }
    for s in &mut seen {
        s.sort_unstable();
        s.dedup();
    }
    seen
}

/// The fingerprints of `rows` of `data`, sorted, without repeats.
pub fn fingerprints(data: &Dataset, rows: &[usize]) -> Vec<u64> {
    let mut out: Vec<u64> = rows.iter().map(|&r| fingerprint(data, r)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A 64-bit FNV-1a hash of row `r` of `data`: every column's name and
/// value, ids as their raw names, so that it does not depend on the order
/// the rows were read in.
pub fn fingerprint(data: &Dataset, r: usize) -> u64 {
    let mut h = Fnv1a::new();
    let raw = |domain: &str, i: u32| data.domains.get(domain).map_or("?", |m| m.name(i));
    for c in &data.columns {
        h.write(c.name.as_bytes());
        h.write(&[0xff]);
        match &c.data {
            ColumnData::Index { domain, values } => {
                h.write(raw(domain, values[r]).as_bytes());
            }
            ColumnData::Real(v) => h.write(&v[r].to_bits().to_le_bytes()),
            ColumnData::Time(v) => h.write(&v[r].to_le_bytes()),
            ColumnData::Bag {
                domain,
                offsets,
                members,
                weights,
            } => {
                for k in offsets[r]..offsets[r + 1] {
                    h.write(raw(domain, members[k]).as_bytes());
                    h.write(&[0xfe]);
                    h.write(&weights[k].to_bits().to_le_bytes());
                }
            }
        }
        h.write(&[0xff]);
    }
    h.0
}

/// FNV-1a, 64 bits: fixed for all time, unlike the standard library's
/// hasher, so fingerprints written by one recc are read by the next.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Arrays of numbers in a JSON header as base64 of their little-endian
/// bytes: a third of the size of decimal text, and exact.
mod packed {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for k in 0..4 {
                if k <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        let text = text.as_bytes();
        if !text.len().is_multiple_of(4) {
            return Err("packed numbers: base64 text of a length not a multiple of 4".into());
        }
        let value = |c: u8| -> Result<u32, String> {
            match c {
                b'A'..=b'Z' => Ok(u32::from(c - b'A')),
                b'a'..=b'z' => Ok(u32::from(c - b'a') + 26),
                b'0'..=b'9' => Ok(u32::from(c - b'0') + 52),
                b'+' => Ok(62),
                b'/' => Ok(63),
                _ => Err(format!("packed numbers: `{}` is not base64", c as char)),
            }
        };
        let mut out = Vec::with_capacity(text.len() / 4 * 3);
        for (k, chunk) in text.chunks(4).enumerate() {
            let last = k + 1 == text.len() / 4;
            let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && !last) {
                return Err("packed numbers: misplaced base64 padding".into());
            }
            let mut n = 0u32;
            for &c in &chunk[..4 - pad] {
                n = (n << 6) | value(c)?;
            }
            n <<= 6 * pad as u32;
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        Ok(out)
    }

    macro_rules! packed {
        ($name:ident, $t:ty, $n:expr) => {
            pub mod $name {
                use serde::{Deserialize, Deserializer, Serializer};

                pub fn serialize<S: Serializer>(v: &[$t], s: S) -> Result<S::Ok, S::Error> {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    s.serialize_str(&super::encode(&bytes))
                }

                pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<$t>, D::Error> {
                    let text = String::deserialize(d)?;
                    let bytes = super::decode(&text).map_err(serde::de::Error::custom)?;
                    if !bytes.len().is_multiple_of($n) {
                        return Err(serde::de::Error::custom(format!(
                            "packed numbers: {} bytes do not make {}-byte numbers",
                            bytes.len(),
                            $n
                        )));
                    }
                    Ok(bytes
                        .chunks_exact($n)
                        .map(|c| {
                            let mut b = [0u8; $n];
                            b.copy_from_slice(c);
                            <$t>::from_le_bytes(b)
                        })
                        .collect())
                }
            }
        };
    }

    packed!(u32s, u32, 4);
    packed!(u64s, u64, 8);
    packed!(i64s, i64, 8);
    packed!(f64s, f64, 8);
}

#[cfg(test)]
mod tests {
    use super::packed::{decode, encode};

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..10u8 {
            let bytes: Vec<u8> = (0..n)
                .map(|k| k.wrapping_mul(97).wrapping_add(13))
                .collect();
            assert_eq!(decode(&encode(&bytes)).unwrap(), bytes, "{n} bytes");
        }
        assert_eq!(encode(b"Man"), "TWFu");
        assert_eq!(encode(b"Ma"), "TWE=");
        assert!(decode("TW=u").is_err());
        assert!(decode("TWF").is_err());
    }
}
