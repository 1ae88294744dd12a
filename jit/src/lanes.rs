//! Static-shape values in registers: `f32x4` chunks plus scalar tail lanes.
//!
//! A value of `n` lanes is `n / 4` vectors followed by `n % 4` scalars, so
//! two values of the same shape line up chunk for chunk and elementwise ops
//! are one SIMD instruction per four lanes. Ops that move lanes across chunk
//! boundaries (an unaligned slice, a softmax) go through scalars.

use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData as MemFlags, Type, Value};
use cranelift_frontend::FunctionBuilder;

pub const V4: Type = types::F32X4;
pub const F32: Type = types::F32;

/// Lanes of a static-shape value: whole vectors first, then scalars.
#[derive(Clone, Debug)]
pub struct Lanes {
    pub n: usize,
    pub chunks: Vec<Value>,
}

impl Lanes {
    /// How many `f32x4` chunks a value of `n` lanes has.
    pub fn vectors(n: usize) -> usize {
        n / 4
    }

    pub fn is_vector_chunk(&self, c: usize) -> bool {
        c < Self::vectors(self.n)
    }
}

/// Memory flags for parameter, state and scratch accesses: indices are
/// validated when data is loaded, so these never trap. Rows are only 4-byte
/// aligned, so vector accesses must not claim 16.
pub fn mem() -> MemFlags {
    let mut flags = MemFlags::new();
    flags.set_notrap();
    flags
}

pub fn zeros(b: &mut FunctionBuilder, n: usize) -> Lanes {
    let z = b.ins().f32const(0.0);
    splat_to(b, z, n)
}

/// A scalar broadcast to `n` lanes.
pub fn splat_to(b: &mut FunctionBuilder, s: Value, n: usize) -> Lanes {
    let mut chunks = Vec::with_capacity(Lanes::vectors(n) + n % 4);
    if n >= 4 {
        let v = b.ins().splat(V4, s);
        chunks.extend(std::iter::repeat_n(v, Lanes::vectors(n)));
    }
    chunks.extend(std::iter::repeat_n(s, n % 4));
    Lanes { n, chunks }
}

/// Load `n` lanes from `addr + offset`.
pub fn load(b: &mut FunctionBuilder, addr: Value, offset: i32, n: usize) -> Lanes {
    let mut chunks = Vec::with_capacity(Lanes::vectors(n) + n % 4);
    for c in 0..Lanes::vectors(n) {
        chunks.push(b.ins().load(V4, mem(), addr, offset + 16 * c as i32));
    }
    let base = 4 * Lanes::vectors(n);
    for k in 0..n % 4 {
        chunks.push(
            b.ins()
                .load(F32, mem(), addr, offset + 4 * (base + k) as i32),
        );
    }
    Lanes { n, chunks }
}

/// Store `x` at `addr + offset`.
pub fn store(b: &mut FunctionBuilder, x: &Lanes, addr: Value, offset: i32) {
    let nv = Lanes::vectors(x.n);
    for (c, &v) in x.chunks.iter().enumerate() {
        let at = if c < nv {
            16 * c as i32
        } else {
            4 * (4 * nv + (c - nv)) as i32
        };
        b.ins().store(mem(), v, addr, offset + at);
    }
}

/// Every lane as a scalar.
pub fn scalars(b: &mut FunctionBuilder, x: &Lanes) -> Vec<Value> {
    let mut out = Vec::with_capacity(x.n);
    for (c, &v) in x.chunks.iter().enumerate() {
        if x.is_vector_chunk(c) {
            for k in 0..4u8 {
                out.push(b.ins().extractlane(v, k));
            }
        } else {
            out.push(v);
        }
    }
    out
}

/// Lanes from scalars.
pub fn from_scalars(b: &mut FunctionBuilder, xs: &[Value]) -> Lanes {
    let n = xs.len();
    let mut chunks = Vec::with_capacity(Lanes::vectors(n) + n % 4);
    for c in 0..Lanes::vectors(n) {
        let mut v = b.ins().scalar_to_vector(V4, xs[4 * c]);
        for k in 1..4 {
            v = b.ins().insertlane(v, xs[4 * c + k], k as u8);
        }
        chunks.push(v);
    }
    chunks.extend_from_slice(&xs[4 * Lanes::vectors(n)..]);
    Lanes { n, chunks }
}

/// `len` lanes from `start`; whole chunks when aligned.
pub fn slice(b: &mut FunctionBuilder, x: &Lanes, start: usize, len: usize) -> Lanes {
    let aligned = start.is_multiple_of(4) && (len.is_multiple_of(4) || start + len == x.n);
    if aligned {
        let first = start / 4;
        let count = Lanes::vectors(len) + len % 4;
        return Lanes {
            n: len,
            chunks: x.chunks[first..first + count].to_vec(),
        };
    }
    let all = scalars(b, x);
    from_scalars(b, &all[start..start + len])
}

/// `a` followed by `c`.
pub fn concat(b: &mut FunctionBuilder, a: &Lanes, c: &Lanes) -> Lanes {
    if a.n.is_multiple_of(4) {
        let mut chunks = a.chunks.clone();
        chunks.extend_from_slice(&c.chunks);
        return Lanes {
            n: a.n + c.n,
            chunks,
        };
    }
    let mut all = scalars(b, a);
    all.extend(scalars(b, c));
    from_scalars(b, &all)
}

/// Sum of all lanes, as one scalar.
pub fn sum(b: &mut FunctionBuilder, x: &Lanes) -> Value {
    let nv = Lanes::vectors(x.n);
    let mut total: Option<Value> = None;
    if nv > 0 {
        // Pairwise: a chain of n adds would wait n latencies.
        let mut level: Vec<Value> = x.chunks[..nv].to_vec();
        while level.len() > 1 {
            let mut next = Vec::with_capacity(level.len().div_ceil(2));
            for pair in level.chunks(2) {
                next.push(match *pair {
                    [a, c] => b.ins().fadd(a, c),
                    [a] => a,
                    _ => unreachable!("chunks(2) yields one or two"),
                });
            }
            level = next;
        }
        let acc = level[0];
        let l0 = b.ins().extractlane(acc, 0u8);
        let l1 = b.ins().extractlane(acc, 1u8);
        let l2 = b.ins().extractlane(acc, 2u8);
        let l3 = b.ins().extractlane(acc, 3u8);
        let s01 = b.ins().fadd(l0, l1);
        let s23 = b.ins().fadd(l2, l3);
        total = Some(b.ins().fadd(s01, s23));
    }
    for &s in &x.chunks[nv..] {
        total = Some(match total {
            Some(t) => b.ins().fadd(t, s),
            None => s,
        });
    }
    total.unwrap_or_else(|| b.ins().f32const(0.0))
}

/// Apply a binary instruction chunk by chunk, broadcasting a one-lane side.
pub fn zip(
    b: &mut FunctionBuilder,
    x: &Lanes,
    y: &Lanes,
    mut f: impl FnMut(&mut FunctionBuilder, Value, Value) -> Value,
) -> Lanes {
    let (x, y) = match (x.n, y.n) {
        (1, n) if n > 1 => (splat_to(b, x.chunks[0], n), y.clone()),
        (n, 1) if n > 1 => (x.clone(), splat_to(b, y.chunks[0], n)),
        _ => (x.clone(), y.clone()),
    };
    let chunks = x
        .chunks
        .iter()
        .zip(&y.chunks)
        .map(|(&a, &c)| f(b, a, c))
        .collect();
    Lanes { n: x.n, chunks }
}

/// Apply a unary instruction chunk by chunk.
pub fn map(
    b: &mut FunctionBuilder,
    x: &Lanes,
    mut f: impl FnMut(&mut FunctionBuilder, Value, bool) -> Value,
) -> Lanes {
    let chunks = x
        .chunks
        .iter()
        .enumerate()
        .map(|(c, &v)| f(b, v, x.is_vector_chunk(c)))
        .collect();
    Lanes { n: x.n, chunks }
}

/// A scalar as a chunk of either kind.
pub fn constant_of(b: &mut FunctionBuilder, s: Value, vector: bool) -> Value {
    if vector {
        b.ins().splat(V4, s)
    } else {
        s
    }
}

/// A constant of either chunk kind.
pub fn constant(b: &mut FunctionBuilder, v: f32, vector: bool) -> Value {
    let s = b.ins().f32const(v);
    if vector {
        b.ins().splat(V4, s)
    } else {
        s
    }
}
