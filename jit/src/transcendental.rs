//! f32 `exp` and `log` in Cranelift IR, vectorised, and the functions the
//! language builds on them: `sigmoid`, `softplus`, `log_sigmoid`, `tanh`.
//!
//! Each function emits straight-line code for one chunk, an `f32x4` vector
//! or one scalar lane (the same instructions either way, so the lanes of a
//! vector and the scalar tail lanes of one value agree bit for bit), with
//! no branches and no calls: a row of 16 log-variances is four inline
//! `exp`s instead of sixteen calls into libm through f64.
//!
//! The forms follow the evaluator's (`UnaryFn::apply`): `sigmoid` and
//! `softplus` split on the sign of `x` so that neither overflows nor loses
//! the tail, and `log1p` keeps its relative accuracy for tiny arguments.
//! The polynomials are Cephes' single-precision ones (`expf`, `logf`,
//! `tanhf`); every function is within a few ulp of the f64 result over the
//! whole f32 range (the tests below sweep each against f64), and the
//! special values are libm's: `exp` overflows to `+inf` and underflows
//! through the denormals to 0, `log(0) = -inf`, `log` of a negative number
//! is NaN, and NaN stays NaN everywhere.

use crate::lanes::{constant, V4};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData as MemFlags, Value};
use cranelift_frontend::FunctionBuilder;

/// `eˣ`: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `eʳ` by a polynomial, and
/// `2ⁿ` put into the exponent bits.
pub fn exp(b: &mut FunctionBuilder, x: Value, vector: bool) -> Value {
    // Past 89 every result overflows and below -104 every one underflows
    // (the smallest denormal is e^-103.3); clamping keeps `n` in the range
    // the two scale factors below can hold. NaN passes through both.
    let hi = constant(b, 89.0, vector);
    let lo = constant(b, -104.0, vector);
    let x = at_most(b, x, hi, vector);
    let x = at_least(b, x, lo, vector);

    // Round x·log₂e to an integer by adding 1.5·2²³: the sum's low mantissa
    // bits are then the integer, both as a float and as bits.
    let log2e = constant(b, std::f32::consts::LOG2_E, vector);
    let magic = constant(b, ROUNDING_MAGIC, vector);
    let t = mul_add(b, x, log2e, magic);
    let n_float = b.ins().fsub(t, magic);
    let t_bits = bits(b, t, vector);
    let magic_bits = int(b, ROUNDING_MAGIC.to_bits() as i32, vector);
    let n = b.ins().isub(t_bits, magic_bits);

    // r = x − n·ln 2 in two parts (Cody and Waite): n·LN2_HI is exact, so
    // r keeps its low bits however large n is.
    let minus_ln2_hi = constant(b, -LN2_HI, vector);
    let minus_ln2_lo = constant(b, -LN2_LO, vector);
    let r = mul_add(b, n_float, minus_ln2_hi, x);
    let r = mul_add(b, n_float, minus_ln2_lo, r);

    // eʳ = 1 + r + r²·P(r) (Cephes expf).
    let poly = polynomial(b, r, &EXP_POLY, vector);
    let r2 = b.ins().fmul(r, r);
    let y = mul_add(b, poly, r2, r);
    let one = constant(b, 1.0, vector);
    let y = b.ins().fadd(y, one);

    // n lies in [-150, 128]: 2ⁿ as two normal factors 2^(n/2) · 2^(n − n/2),
    // so a denormal result is rounded once, by the second product, and an
    // overflowing one becomes +inf.
    let half = b.ins().sshr_imm_u(n, 1);
    let rest = b.ins().isub(n, half);
    let s1 = power_of_two(b, half, vector);
    let s2 = power_of_two(b, rest, vector);
    let y = b.ins().fmul(y, s1);
    b.ins().fmul(y, s2)
}

/// `ln x`: `x = m·2ᵉ` with `m` in `[√½, √2)` from the bits, `ln m` by a
/// polynomial in `m − 1`; `ln 0 = -inf`, `ln(+inf) = +inf`, NaN below 0.
pub fn log(b: &mut FunctionBuilder, x: Value, vector: bool) -> Value {
    // A denormal is scaled into the normal range first, its exponent
    // corrected after.
    let tiny = constant(b, f32::MIN_POSITIVE, vector);
    let scale = constant(b, DENORMAL_SCALE, vector);
    let scaled = b.ins().fmul(x, scale);
    let normal = choose(b, FloatCC::LessThan, x, tiny, scaled, x, vector);
    let zero = constant(b, 0.0, vector);
    let shift = constant(b, DENORMAL_SHIFT, vector);
    let shift = choose(b, FloatCC::LessThan, x, tiny, shift, zero, vector);
    let y = log_normal(b, normal, shift, vector);

    let neg_inf = constant(b, f32::NEG_INFINITY, vector);
    let inf = constant(b, f32::INFINITY, vector);
    let nan = constant(b, f32::NAN, vector);
    let y = choose(b, FloatCC::Equal, x, zero, neg_inf, y, vector);
    let y = choose(b, FloatCC::Equal, x, inf, inf, y, vector);
    // Below zero or NaN (unordered): NaN.
    choose(b, FloatCC::UnorderedOrLessThan, x, zero, nan, y, vector)
}

/// `ln x − exponent_shift·ln 2` for a positive, finite, normal `x`
/// (anything else gives an unspecified value).
fn log_normal(b: &mut FunctionBuilder, x: Value, exponent_shift: Value, vector: bool) -> Value {
    // frexp: x = m·2ᵉ with m in [½, 1).
    let xb = bits(b, x, vector);
    let exponent = b.ins().ushr_imm_u(xb, 23);
    let bias = int(b, 126, vector);
    let e = b.ins().isub(exponent, bias);
    let mantissa_mask = int(b, 0x007f_ffff, vector);
    let half_bits = int(b, 0.5f32.to_bits() as i32, vector);
    let mb = b.ins().band(xb, mantissa_mask);
    let mb = b.ins().bor(mb, half_bits);
    let m = float(b, mb, vector);
    let e = if vector {
        b.ins().fcvt_from_sint(V4, e)
    } else {
        b.ins().fcvt_from_sint(types::F32, e)
    };
    let e = b.ins().fsub(e, exponent_shift);

    // Below √½ take m·2 and e − 1, so f = m − 1 lies in [√½ − 1, √2 − 1)
    // and is exact (Sterbenz).
    let sqrt_half = constant(b, std::f32::consts::FRAC_1_SQRT_2, vector);
    let one = constant(b, 1.0, vector);
    let zero = constant(b, 0.0, vector);
    let twice = b.ins().fadd(m, m);
    let low_f = b.ins().fsub(twice, one);
    let high_f = b.ins().fsub(m, one);
    let f = choose(b, FloatCC::LessThan, m, sqrt_half, low_f, high_f, vector);
    let borrow = choose(b, FloatCC::LessThan, m, sqrt_half, one, zero, vector);
    let e = b.ins().fsub(e, borrow);

    // ln(1 + f) = f − f²/2 + f³·P(f) (Cephes logf), plus e·ln 2 in two
    // parts, the small one added first.
    let z = b.ins().fmul(f, f);
    let poly = polynomial(b, f, &LOG_POLY, vector);
    let fz = b.ins().fmul(f, z);
    let ln2_lo = constant(b, LN2_LO, vector);
    let lo = b.ins().fmul(e, ln2_lo);
    let y = mul_add(b, poly, fz, lo);
    let minus_half = constant(b, -0.5, vector);
    let y = mul_add(b, z, minus_half, y);
    let y = b.ins().fadd(f, y);
    let ln2_hi = constant(b, LN2_HI, vector);
    mul_add(b, e, ln2_hi, y)
}

/// `ln(1 + u)` for `u` in `[0, 1]` (or NaN), to a few ulp however small `u`
/// is: with `w = 1 + u` rounded, `ln w · u / (w − 1)` cancels the rounding
/// of `w` (Goldberg), and `u` itself where `w` rounds to 1.
fn log1p_unit(b: &mut FunctionBuilder, u: Value, vector: bool) -> Value {
    let one = constant(b, 1.0, vector);
    let zero = constant(b, 0.0, vector);
    let w = b.ins().fadd(one, u);
    let d = b.ins().fsub(w, one);
    let l = log_normal(b, w, zero, vector);
    let ratio = b.ins().fdiv(u, d);
    let y = b.ins().fmul(l, ratio);
    choose(b, FloatCC::Equal, d, zero, u, y, vector)
}

/// `1 / (1 + e⁻ˣ)` for `x ≥ 0`, `eˣ / (1 + eˣ)` below: the exponential
/// only ever of `−|x|`, so it never overflows and the tail keeps its digits.
pub fn sigmoid(b: &mut FunctionBuilder, x: Value, vector: bool) -> Value {
    let a = b.ins().fabs(x);
    let na = b.ins().fneg(a);
    let e = exp(b, na, vector);
    let one = constant(b, 1.0, vector);
    let d = b.ins().fadd(one, e);
    let s = b.ins().fdiv(one, d);
    let tail = b.ins().fmul(e, s);
    let zero = constant(b, 0.0, vector);
    // NaN fails the comparison and takes `tail`, which is NaN.
    choose(b, FloatCC::GreaterThanOrEqual, x, zero, s, tail, vector)
}

/// `ln σ(x) = −softplus(−x)`, as the evaluator defines it.
pub fn log_sigmoid(b: &mut FunctionBuilder, x: Value, vector: bool) -> Value {
    let n = b.ins().fneg(x);
    let s = softplus(b, n, vector);
    b.ins().fneg(s)
}

/// `ln(1 + eˣ) = max(x, 0) + ln(1 + e^−|x|)`.
pub fn softplus(b: &mut FunctionBuilder, x: Value, vector: bool) -> Value {
    let a = b.ins().fabs(x);
    let na = b.ins().fneg(a);
    let e = exp(b, na, vector);
    let l = log1p_unit(b, e, vector);
    let zero = constant(b, 0.0, vector);
    let m = at_least(b, x, zero, vector);
    b.ins().fadd(m, l)
}

/// `tanh x`: `x + x³·P(x²)` (Cephes tanhf) for `|x| ≤ 0.625`, where it keeps
/// its relative accuracy down to the denormals; `±(1 − 2 / (e^2|x| + 1))`
/// above, which reaches ±1 without overflowing.
pub fn tanh(b: &mut FunctionBuilder, x: Value, vector: bool) -> Value {
    let a = b.ins().fabs(x);
    let twice = b.ins().fadd(a, a);
    let e = exp(b, twice, vector);
    let one = constant(b, 1.0, vector);
    let two = constant(b, 2.0, vector);
    let d = b.ins().fadd(e, one);
    let q = b.ins().fdiv(two, d);
    let big = b.ins().fsub(one, q);
    let neg_big = b.ins().fneg(big);
    let zero = constant(b, 0.0, vector);
    let big = choose(b, FloatCC::LessThan, x, zero, neg_big, big, vector);

    let z = b.ins().fmul(x, x);
    let poly = polynomial(b, z, &TANH_POLY, vector);
    let xz = b.ins().fmul(x, z);
    let small = mul_add(b, poly, xz, x);

    // NaN fails the comparison and takes `small`, which is NaN.
    let edge = constant(b, 0.625, vector);
    choose(b, FloatCC::GreaterThan, a, edge, big, small, vector)
}

/// 1.5·2²³: adding it to a float below 2²² in size rounds it to an integer
/// held in the low mantissa bits.
const ROUNDING_MAGIC: f32 = 12_582_912.0;

/// ln 2 as a sum: the high part has 9 significant bits, so its product
/// with any exponent of an f32 is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// 2²³ and its exponent: a denormal times it is normal.
const DENORMAL_SCALE: f32 = 8_388_608.0;
const DENORMAL_SHIFT: f32 = 23.0;

/// Cephes expf: eʳ ≈ 1 + r + r²·P(r) on `|r| ≤ ln 2 / 2`, highest degree first.
const EXP_POLY: [f32; 6] = [
    1.987_569_2e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    5e-1,
];

/// Cephes logf: ln(1 + f) ≈ f − f²/2 + f³·P(f) on `[√½ − 1, √2 − 1)`.
const LOG_POLY: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_5e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];

/// Cephes tanhf: tanh x ≈ x + x³·P(x²) on `|x| ≤ 0.625`.
const TANH_POLY: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_909e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];

/// `P(x)`, coefficients highest degree first, by Estrin's scheme: pairs
/// `a + b·x`, then pairs of those with `x²`, with `x⁴`, …, so a degree-8
/// polynomial is 4 dependent multiply-adds deep instead of Horner's 8. A
/// kernel's scalar lanes are one long dependency chain, where that latency
/// is the cost.
fn polynomial(b: &mut FunctionBuilder, x: Value, coefficients: &[f32], vector: bool) -> Value {
    let mut terms: Vec<Value> = coefficients
        .iter()
        .rev()
        .map(|&c| constant(b, c, vector))
        .collect();
    let mut power = x;
    while terms.len() > 1 {
        let mut next = Vec::with_capacity(terms.len().div_ceil(2));
        for pair in terms.chunks(2) {
            next.push(match *pair {
                [low, high] => mul_add(b, high, power, low),
                [only] => only,
                _ => unreachable!("chunks(2) yields one or two"),
            });
        }
        terms = next;
        if terms.len() > 1 {
            power = b.ins().fmul(power, power);
        }
    }
    terms[0]
}

/// `x·y + z`: one fused multiply-add (a single rounding, half the latency
/// of a multiply then an add) where the machine has one, the two
/// instructions elsewhere. Either way the results are within the bounds
/// the tests check; which one a kernel uses is fixed by the host it is
/// compiled for.
fn mul_add(b: &mut FunctionBuilder, x: Value, y: Value, z: Value) -> Value {
    if fused() {
        b.ins().fma(x, y, z)
    } else {
        let p = b.ins().fmul(x, y);
        b.ins().fadd(p, z)
    }
}

/// Whether the host has a fused multiply-add (Cranelift's `fma` is one
/// instruction there; elsewhere it is a library call per lane).
fn fused() -> bool {
    #[cfg(test)]
    if let Some(fused) = tests::FUSED.with(std::cell::Cell::get) {
        return fused;
    }
    host_fma()
}

#[cfg(target_arch = "x86_64")]
fn host_fma() -> bool {
    std::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "aarch64")]
fn host_fma() -> bool {
    true
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn host_fma() -> bool {
    false
}

/// `a` where `p <cc> q`, else `c`, lane by lane.
fn choose(
    b: &mut FunctionBuilder,
    cc: FloatCC,
    p: Value,
    q: Value,
    a: Value,
    c: Value,
    vector: bool,
) -> Value {
    let mask = b.ins().fcmp(cc, p, q);
    if vector {
        let flags = MemFlags::new().with_endianness(Endianness::Little);
        let mask = b.ins().bitcast(V4, flags, mask);
        b.ins().bitselect(mask, a, c)
    } else {
        b.ins().select(mask, a, c)
    }
}

/// `min(x, bound)`, NaN staying NaN: one `minps` (or `minss`) on x86-64,
/// where Cranelift's `fmin` is a sequence that also orders ±0.
fn at_most(b: &mut FunctionBuilder, x: Value, bound: Value, vector: bool) -> Value {
    choose(b, FloatCC::LessThan, bound, x, bound, x, vector)
}

/// `max(x, bound)`, NaN staying NaN: one `maxps` (or `maxss`) on x86-64.
fn at_least(b: &mut FunctionBuilder, x: Value, bound: Value, vector: bool) -> Value {
    choose(b, FloatCC::LessThan, x, bound, bound, x, vector)
}

/// An i32 constant as a chunk of the integer twin of the float chunk.
fn int(b: &mut FunctionBuilder, k: i32, vector: bool) -> Value {
    let s = b.ins().iconst(types::I32, i64::from(k as u32));
    if vector {
        b.ins().splat(types::I32X4, s)
    } else {
        s
    }
}

/// A float chunk's bits as integers.
fn bits(b: &mut FunctionBuilder, v: Value, vector: bool) -> Value {
    let ty = if vector { types::I32X4 } else { types::I32 };
    b.ins().bitcast(ty, MemFlags::new(), v)
}

/// Integer bits as a float chunk.
fn float(b: &mut FunctionBuilder, v: Value, vector: bool) -> Value {
    let ty = if vector { V4 } else { types::F32 };
    b.ins().bitcast(ty, MemFlags::new(), v)
}

/// `2ⁿ` for integer `n` in `[-126, 127]`, built from its exponent bits.
fn power_of_two(b: &mut FunctionBuilder, n: Value, vector: bool) -> Value {
    let bias = int(b, 127, vector);
    let biased = b.ins().iadd(n, bias);
    let exponent = b.ins().ishl_imm_u(biased, 23);
    float(b, exponent, vector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cranelift_codegen::ir::{AbiParam, Function, Signature, UserFuncName};
    use cranelift_codegen::settings::{self, Configurable};
    use cranelift_codegen::Context;
    use cranelift_frontend::FunctionBuilderContext;
    use cranelift_jit::{JITBuilder, JITModule};
    use cranelift_module::{default_libcall_names, Linkage, Module};
    use recc_compiler::types::UnaryFn;

    type Kernel = unsafe extern "C" fn(*const f32, *mut f32);

    thread_local! {
        /// Whether the code under test uses fused multiply-adds (`None`:
        /// as the host does).
        pub(super) static FUSED: std::cell::Cell<Option<bool>> =
            const { std::cell::Cell::new(None) };
    }

    /// `f` over `xs` as the host's kernels compute it.
    fn run(f: UnaryFn, xs: &[f32]) -> Vec<f32> {
        run_fused(f, xs, host_fma())
    }

    /// `f` over `xs`, compiled with `f32x4` chunks and with scalar lanes,
    /// with or without fused multiply-adds (without a native one, a
    /// library call per lane); the two chunk kinds must agree bit for bit.
    fn run_fused(f: UnaryFn, xs: &[f32], fused: bool) -> Vec<f32> {
        FUSED.with(|c| c.set(Some(fused)));
        let vector = run_as(f, xs, true);
        let scalar = run_as(f, xs, false);
        FUSED.with(|c| c.set(None));
        for (k, (v, s)) in vector.iter().zip(&scalar).enumerate() {
            assert!(
                v.to_bits() == s.to_bits() || (v.is_nan() && s.is_nan()),
                "{}({}): vector {v}, scalar {s}",
                f.name(),
                xs[k]
            );
        }
        vector
    }

    fn run_as(f: UnaryFn, xs: &[f32], vector: bool) -> Vec<f32> {
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").expect("flag");
        flags.set("enable_verifier", "true").expect("flag");
        let isa = cranelift_native::builder()
            .expect("host")
            .finish(settings::Flags::new(flags))
            .expect("isa");
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let ptr = module.target_config().pointer_type();
        let mut sig = Signature::new(module.isa().default_call_conv());
        sig.params.push(AbiParam::new(ptr));
        sig.params.push(AbiParam::new(ptr));
        let id = module
            .declare_function("map", Linkage::Export, &sig)
            .expect("declare");
        let mut func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
        let mut fctx = FunctionBuilderContext::new();
        {
            let mut b = FunctionBuilder::new(&mut func, &mut fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let [src, dst] = b.block_params(entry) else {
                unreachable!("two parameters")
            };
            let (src, dst) = (*src, *dst);
            let step = if vector { 16 } else { 4 };
            let ty = if vector { V4 } else { types::F32 };
            let bytes = 16 * xs.len().div_ceil(4) as i64;
            crate::wide::counted_loop(&mut b, bytes, step, |b, off| {
                let at = b.ins().iadd(src, off);
                let v = b.ins().load(ty, MemFlags::new(), at, 0);
                let y = match f {
                    UnaryFn::Exp => exp(b, v, vector),
                    UnaryFn::Log => log(b, v, vector),
                    UnaryFn::Sigmoid => sigmoid(b, v, vector),
                    UnaryFn::Softplus => softplus(b, v, vector),
                    UnaryFn::LogSigmoid => log_sigmoid(b, v, vector),
                    UnaryFn::Tanh => tanh(b, v, vector),
                    other => panic!("{} is not emitted here", other.name()),
                };
                let at = b.ins().iadd(dst, off);
                b.ins().store(MemFlags::new(), y, at, 0);
            });
            b.ins().return_(&[]);
            b.seal_all_blocks();
            b.finalize(module.target_config());
        }
        let mut ctx = Context::for_function(func);
        module.define_function(id, &mut ctx).expect("compile");
        module.finalize_definitions().expect("finalize");
        let code = module.get_finalized_function(id);
        // SAFETY: compiled from the signature `Kernel` spells.
        let kernel = unsafe { std::mem::transmute::<*const u8, Kernel>(code) };
        let mut padded = xs.to_vec();
        padded.resize(xs.len().div_ceil(4) * 4, 0.0);
        let mut out = vec![0.0f32; padded.len()];
        // SAFETY: both buffers hold `padded.len()` floats.
        unsafe { kernel(padded.as_ptr(), out.as_mut_ptr()) };
        // SAFETY: nothing points into the module any more.
        unsafe { module.free_memory() };
        out.truncate(xs.len());
        out
    }

    /// `n` evenly spaced points from `a` to `b`.
    fn grid(a: f64, b: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|k| (a + (b - a) * k as f64 / (n - 1) as f64) as f32)
            .collect()
    }

    /// `n` points spaced evenly in `log10 |x|` from `10^a` to `10^b`.
    fn log_grid(a: f64, b: f64, n: usize) -> Vec<f32> {
        grid(a, b, n)
            .into_iter()
            .map(|e| 10f64.powf(f64::from(e)) as f32)
            .collect()
    }

    /// The worst relative error of `f` against the evaluator's f64 value
    /// (below the normal range, against the smallest normal: a denormal
    /// result has fewer digits to be right about). Infinities and NaN must
    /// match exactly where the f64 result, rounded to f32, has them.
    fn worst_error(f: UnaryFn, xs: &[f32], got: &[f32]) -> (f64, f32) {
        let mut worst = (0.0, 0.0);
        for (&x, &y) in xs.iter().zip(got) {
            let want = f.apply(f64::from(x));
            let rounded = want as f32;
            if rounded.is_nan() || rounded.is_infinite() {
                assert!(
                    y.to_bits() == rounded.to_bits() || (y.is_nan() && rounded.is_nan()),
                    "{}({x}) = {y}, want {rounded}",
                    f.name()
                );
                continue;
            }
            assert!(y.is_finite(), "{}({x}) = {y}, want {want}", f.name());
            let err = (f64::from(y) - want).abs() / want.abs().max(f64::from(f32::MIN_POSITIVE));
            if err > worst.0 {
                worst = (err, x);
            }
        }
        worst
    }

    /// About four ulp (the worst found is under 2e-7).
    const MAX_ERROR: f64 = 5e-7;

    /// Both forms, fused and not, within [`MAX_ERROR`] everywhere.
    fn assert_accurate(f: UnaryFn, xs: &[f32]) {
        for fused in [false, true] {
            let got = run_fused(f, xs, fused);
            let (err, at) = worst_error(f, xs, &got);
            assert!(
                err <= MAX_ERROR,
                "{} (fused multiply-add: {fused}): relative error {err:e} at {at}",
                f.name()
            );
        }
    }

    /// Values every function must get right as libm does.
    fn specials() -> Vec<f32> {
        vec![
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            f32::MAX,
            f32::MIN,
            1.0,
            -1.0,
        ]
    }

    /// Small arguments of both signs, where relative accuracy is hardest.
    fn near_zero() -> Vec<f32> {
        let mut xs = log_grid(-44.0, 0.0, 20_000);
        xs.extend(xs.clone().iter().map(|x| -x));
        xs
    }

    #[test]
    fn exp_is_accurate_over_the_whole_range() {
        let mut xs = grid(-90.0, 90.0, 100_000);
        xs.extend(grid(-110.0, -85.0, 20_000));
        xs.extend(grid(88.0, 89.5, 10_000));
        xs.extend(near_zero());
        xs.extend(specials());
        assert_accurate(UnaryFn::Exp, &xs);
        let got = run(UnaryFn::Exp, &[f32::NEG_INFINITY, -200.0, 100.0, 0.0]);
        assert_eq!(got, [0.0, 0.0, f32::INFINITY, 1.0]);
        assert!(run(UnaryFn::Exp, &[f32::NAN])[0].is_nan());
    }

    #[test]
    fn log_is_accurate_over_the_whole_range() {
        let mut xs = log_grid(-45.0, 38.5, 100_000);
        xs.extend(grid(0.5, 2.0, 50_000));
        // Within a few thousand ulp of 1, where ln x is tiny.
        let one = 1.0f32.to_bits();
        xs.extend((one - 4000..one + 4000).map(f32::from_bits));
        // Every denormal exponent.
        xs.extend((0..23).map(|k| f32::from_bits(1 << k)));
        xs.extend(specials());
        assert_accurate(UnaryFn::Log, &xs);
        let got = run(UnaryFn::Log, &[0.0, -0.0, f32::INFINITY, 1.0]);
        assert_eq!(
            got,
            [f32::NEG_INFINITY, f32::NEG_INFINITY, f32::INFINITY, 0.0]
        );
        for x in [-1.0, -1e-45, f32::NEG_INFINITY, f32::NAN] {
            assert!(run(UnaryFn::Log, &[x])[0].is_nan(), "log({x})");
        }
    }

    #[test]
    fn the_sigmoid_family_is_accurate_over_the_whole_range() {
        let mut xs = grid(-120.0, 120.0, 100_000);
        xs.extend(grid(-2.0, 2.0, 20_000));
        xs.extend(near_zero());
        xs.extend(specials());
        for f in [
            UnaryFn::Sigmoid,
            UnaryFn::Softplus,
            UnaryFn::LogSigmoid,
            UnaryFn::Tanh,
        ] {
            assert_accurate(f, &xs);
            for x in [f32::NAN, -f32::NAN] {
                assert!(run(f, &[x])[0].is_nan(), "{}({x})", f.name());
            }
        }
        let inf = f32::INFINITY;
        assert_eq!(run(UnaryFn::Sigmoid, &[-inf, inf]), [0.0, 1.0]);
        assert_eq!(run(UnaryFn::Softplus, &[-inf, inf]), [0.0, inf]);
        assert_eq!(run(UnaryFn::LogSigmoid, &[-inf, inf]), [-inf, 0.0]);
        assert_eq!(run(UnaryFn::Tanh, &[-inf, inf]), [-1.0, 1.0]);
    }
}
