//! Values too wide for registers: lanes in memory, ops as counted loops.
//!
//! Unrolling a value of `n` lanes into `n / 4` SSA vectors makes code (and
//! Cranelift's time) grow with every lane; past a few dozen chunks the
//! register allocator dominates. A wide value instead lives at an address
//! and each op over it is one loop over its whole `f32x4` chunks plus the
//! `n % 4` tail lanes unrolled, so the code for an op has the same size
//! whatever its shape. Accesses are unaligned (see [`mem`]): a slice or a
//! concatenation may start at any lane.

use crate::lanes::{mem, F32, V4};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_frontend::FunctionBuilder;

/// An operand of a loop: lanes at an address, or one scalar broadcast over
/// every lane.
#[derive(Clone, Copy, Debug)]
pub enum Src {
    Mem(Value),
    Scalar(Value),
}

/// The type of a chunk: a vector (`f32x4`) or one scalar lane.
fn chunk_type(vector: bool) -> types::Type {
    if vector {
        V4
    } else {
        F32
    }
}

/// The chunk of `src` at byte offset `off`.
pub fn load(b: &mut FunctionBuilder, src: Src, off: Value, vector: bool) -> Value {
    match src {
        Src::Mem(addr) => {
            let a = b.ins().iadd(addr, off);
            b.ins().load(chunk_type(vector), mem(), a, 0)
        }
        Src::Scalar(s) if vector => b.ins().splat(V4, s),
        Src::Scalar(s) => s,
    }
}

/// Store a chunk at `addr + off`.
pub fn store(b: &mut FunctionBuilder, v: Value, addr: Value, off: Value) {
    let a = b.ins().iadd(addr, off);
    b.ins().store(mem(), v, a, 0);
}

/// One lane of `src`, at a byte offset.
pub fn lane(b: &mut FunctionBuilder, src: Src, off: Value) -> Value {
    load(b, src, off, false)
}

/// `body(off)` for `off` in `0, step, 2·step, … < end`, as a loop that runs
/// at least once (`end > 0`).
pub fn counted_loop(
    b: &mut FunctionBuilder,
    end: i64,
    step: i64,
    body: impl FnOnce(&mut FunctionBuilder, Value),
) {
    debug_assert!(end > 0 && step > 0);
    let var = b.declare_var(types::I64);
    let zero = b.ins().iconst(types::I64, 0);
    b.def_var(var, zero);
    let block = b.create_block();
    let done = b.create_block();
    b.ins().jump(block, &[]);
    b.switch_to_block(block);
    let off = b.use_var(var);
    body(b, off);
    let next = b.ins().iadd_imm_s(off, step);
    b.def_var(var, next);
    let more = b.ins().icmp_imm_s(IntCC::SignedLessThan, next, end);
    b.ins().brif(more, block, &[], done, &[]);
    b.switch_to_block(done);
}

/// `body(off, vector)` for every chunk of `n` lanes: one loop over the whole
/// `f32x4` chunks (`off` 0, 16, …), then each tail lane (`vector` false).
pub fn for_chunks(
    b: &mut FunctionBuilder,
    n: usize,
    mut body: impl FnMut(&mut FunctionBuilder, Value, bool),
) {
    let whole = n / 4;
    if whole > 0 {
        counted_loop(b, 16 * whole as i64, 16, |b, off| body(b, off, true));
    }
    for k in 0..n % 4 {
        let off = b.ins().iconst(types::I64, (16 * whole + 4 * k) as i64);
        body(b, off, false);
    }
}

/// `body(off)` for every lane of `n`, one at a time (`off` 0, 4, …).
pub fn for_lanes(
    b: &mut FunctionBuilder,
    n: usize,
    body: impl FnOnce(&mut FunctionBuilder, Value),
) {
    if n > 0 {
        counted_loop(b, 4 * n as i64, 4, body);
    }
}

/// The sum over every chunk of `n` lanes of `chunk(off, vector)`.
pub fn reduce(
    b: &mut FunctionBuilder,
    n: usize,
    mut chunk: impl FnMut(&mut FunctionBuilder, Value, bool) -> Value,
) -> Value {
    let whole = n / 4;
    let mut total = None;
    if whole > 0 {
        let acc = b.declare_var(V4);
        let z = b.ins().f32const(0.0);
        let z = b.ins().splat(V4, z);
        b.def_var(acc, z);
        counted_loop(b, 16 * whole as i64, 16, |b, off| {
            let v = chunk(b, off, true);
            let a = b.use_var(acc);
            let s = b.ins().fadd(a, v);
            b.def_var(acc, s);
        });
        let v = b.use_var(acc);
        let l0 = b.ins().extractlane(v, 0u8);
        let l1 = b.ins().extractlane(v, 1u8);
        let l2 = b.ins().extractlane(v, 2u8);
        let l3 = b.ins().extractlane(v, 3u8);
        let s01 = b.ins().fadd(l0, l1);
        let s23 = b.ins().fadd(l2, l3);
        total = Some(b.ins().fadd(s01, s23));
    }
    for k in 0..n % 4 {
        let off = b.ins().iconst(types::I64, (16 * whole + 4 * k) as i64);
        let v = chunk(b, off, false);
        total = Some(match total {
            Some(t) => b.ins().fadd(t, v),
            None => v,
        });
    }
    total.unwrap_or_else(|| b.ins().f32const(0.0))
}

/// `dst[k] = f(x[k], y[k])` over `n` lanes, chunk by chunk.
pub fn zip(
    b: &mut FunctionBuilder,
    n: usize,
    dst: Value,
    x: Src,
    y: Src,
    mut f: impl FnMut(&mut FunctionBuilder, Value, Value, bool) -> Value,
) {
    for_chunks(b, n, |b, off, vector| {
        let p = load(b, x, off, vector);
        let q = load(b, y, off, vector);
        let r = f(b, p, q, vector);
        store(b, r, dst, off);
    });
}

/// `dst[k] = f(x[k])` over `n` lanes, chunk by chunk.
pub fn map(
    b: &mut FunctionBuilder,
    n: usize,
    dst: Value,
    x: Src,
    mut f: impl FnMut(&mut FunctionBuilder, Value, bool) -> Value,
) {
    for_chunks(b, n, |b, off, vector| {
        let p = load(b, x, off, vector);
        let r = f(b, p, vector);
        store(b, r, dst, off);
    });
}

/// Copy (or broadcast) `n` lanes of `x` to `dst`.
pub fn copy(b: &mut FunctionBuilder, n: usize, dst: Value, x: Src) {
    map(b, n, dst, x, |_, v, _| v);
}

/// `Σ x[k]·y[k]` over `n` lanes.
pub fn dot(b: &mut FunctionBuilder, n: usize, x: Src, y: Src) -> Value {
    reduce(b, n, |b, off, vector| {
        let p = load(b, x, off, vector);
        let q = load(b, y, off, vector);
        b.ins().fmul(p, q)
    })
}

/// `Σ x[k]` over `n` lanes.
pub fn sum(b: &mut FunctionBuilder, n: usize, x: Src) -> Value {
    reduce(b, n, |b, off, vector| load(b, x, off, vector))
}

/// An address `bytes` past `addr`.
pub fn offset(b: &mut FunctionBuilder, addr: Value, bytes: i64) -> Value {
    if bytes == 0 {
        addr
    } else {
        b.ins().iadd_imm_s(addr, bytes)
    }
}

/// `src` shifted by `bytes`: an address moves, a broadcast stays.
pub fn advance(b: &mut FunctionBuilder, src: Src, bytes: Value) -> Src {
    match src {
        Src::Mem(a) => Src::Mem(b.ins().iadd(a, bytes)),
        s => s,
    }
}
