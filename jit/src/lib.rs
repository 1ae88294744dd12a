//! The recc native backend: Cranelift code for one model's training step.
//!
//! | stage | input → output | module |
//! |---|---|---|
//! | layout | [`Graph`] → [`ArgLayout`] (where each input sits) | [`layout`] |
//! | codegen | [`Graph`] + [`ArgLayout`] + optimiser → Cranelift IR | [`codegen`] |
//! | compile | Cranelift IR → machine code: a [`Kernel`] | this file |
//!
//! A [`Kernel`] runs a range of examples whose inputs the runtime has laid
//! out as columns (see [`ArgLayout`]). The step kernel is the fused
//! training step: forward, loss, gradients and the optimiser's row updates
//! in one native function, with the rows of examples a few steps ahead
//! touched early so they arrive in cache in time. The predict kernel runs
//! the forward graph only.

pub mod codegen;
pub mod lanes;
pub mod layout;
pub mod transcendental;
pub mod wide;

pub use codegen::{KernelKind, StepOptions, REGISTER_LANES};
pub use layout::ArgLayout;

use codegen::Helpers;
use cranelift_codegen::ir::{types, AbiParam, Function, Signature, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};
use recc_compiler::ir::Graph;
use std::time::{Duration, Instant};

/// Examples ahead whose rows the step kernel touches, by default.
pub const DEFAULT_PREFETCH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error("this machine has no native code generator: {0}")]
    Host(String),
    #[error("internal error generating native code: {0}")]
    Codegen(String),
}

/// The kernel's machine-code entry point.
type KernelFn = unsafe extern "C" fn(*const u64, u64, u64) -> u64;

/// A compiled kernel and the code memory it lives in.
pub struct Kernel {
    module: Option<JITModule>,
    entry: KernelFn,
    pub layout: ArgLayout,
    pub kind: KernelKind,
    /// Wall time from graph to machine code.
    pub compile_time: Duration,
    /// Bytes of machine code.
    pub code_size: usize,
}

// SAFETY: after `finalize_definitions` the code is immutable and the
// module is only touched again to free it, in `drop`, with `&mut self`.
unsafe impl Send for Kernel {}
unsafe impl Sync for Kernel {}

impl Drop for Kernel {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: no caller can hold the entry point past `self`.
            unsafe { module.free_memory() };
        }
    }
}

impl Kernel {
    /// Compile `g` into a kernel of `kind`, touching rows `prefetch`
    /// examples ahead (0: never).
    pub fn compile(g: &Graph, kind: KernelKind, prefetch: usize) -> Result<Kernel, JitError> {
        Self::compile_with(g, kind, prefetch, REGISTER_LANES)
    }

    /// [`Kernel::compile`], keeping values of at most `register_lanes`
    /// lanes in registers and computing wider ones by loops over memory
    /// (0 or 1: every vector in memory).
    pub fn compile_with(
        g: &Graph,
        kind: KernelKind,
        prefetch: usize,
        register_lanes: usize,
    ) -> Result<Kernel, JitError> {
        let started = Instant::now();
        let Built {
            mut module,
            id,
            func,
            layout,
        } = build(g, kind, prefetch, register_lanes)?;
        let dump = std::env::var_os("RECC_JIT_DUMP").is_some();
        if dump {
            eprintln!("{}", func.display());
        }
        let mut ctx = Context::for_function(func);
        ctx.set_disasm(dump);
        module
            .define_function(id, &mut ctx)
            .map_err(|e| JitError::Codegen(format!("{e:?}")))?;
        if let Some(text) = ctx.compiled_code().and_then(|c| c.vcode.as_ref()) {
            eprintln!("{text}");
        }
        let code_size = ctx.compiled_code().map_or(0, |c| c.code_buffer().len());
        module
            .finalize_definitions()
            .map_err(|e| JitError::Codegen(e.to_string()))?;
        let code = module.get_finalized_function(id);
        // SAFETY: `code` was compiled from the signature `KernelFn` spells.
        let entry = unsafe { std::mem::transmute::<*const u8, KernelFn>(code) };
        Ok(Kernel {
            module: Some(module),
            entry,
            layout,
            kind,
            compile_time: started.elapsed(),
            code_size,
        })
    }

    /// Run examples `begin..end`; returns the first one not finished.
    ///
    /// # Safety
    /// `args` must follow [`Kernel::layout`]: every pointer valid for the
    /// visits `begin..end` (the order and per-visit columns) and for every
    /// example the order names (columns of examples), every index inside its table, the
    /// scratch at least `bag_lanes × bag_cap` floats, and no bag longer than
    /// `bag_cap`. Other threads may update the same tables (Hogwild): the
    /// kernel's reads and writes of parameters are plain, racy f32 accesses.
    pub unsafe fn run(&self, args: &[u64], begin: usize, end: usize) -> usize {
        debug_assert_eq!(args.len(), self.layout.words);
        // SAFETY: the caller upholds the layout contract above.
        unsafe { (self.entry)(args.as_ptr(), begin as u64, end as u64) as usize }
    }
}

/// A kernel's function, generated and not yet compiled, in the module
/// that will compile it.
struct Built {
    module: JITModule,
    id: FuncId,
    func: Function,
    layout: ArgLayout,
}

/// Generate the Cranelift function of `g` as a kernel of `kind` for this
/// machine, with the helpers it calls declared in a fresh module.
fn build(
    g: &Graph,
    kind: KernelKind,
    prefetch: usize,
    register_lanes: usize,
) -> Result<Built, JitError> {
    let layout = ArgLayout::new(g);
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| {
        f.set(k, v).map_err(|e| JitError::Host(e.to_string()))
    };
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "is_pic", "false")?;
    set(
        &mut flags,
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )?;
    let isa = cranelift_native::builder()
        .map_err(|e| JitError::Host(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| JitError::Host(e.to_string()))?;
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
    builder.symbol("recc_bias_correction", bias_correction as *const u8);
    builder.symbol("recc_prefetch", prefetch_lines as *const u8);
    builder.symbol("recc_scratch_alloc", scratch_alloc as *const u8);
    builder.symbol("recc_scratch_free", scratch_free as *const u8);
    let mut module = JITModule::new(builder);

    let ptr = module.target_config().pointer_type();
    let mut corr_sig = module.make_signature();
    corr_sig.params.push(AbiParam::new(types::F64));
    corr_sig.params.push(AbiParam::new(types::I32));
    corr_sig.returns.push(AbiParam::new(types::F32));
    let mut prefetch_sig = module.make_signature();
    prefetch_sig.params.push(AbiParam::new(ptr));
    prefetch_sig.params.push(AbiParam::new(types::I64));
    let mut alloc_sig = module.make_signature();
    alloc_sig.params.push(AbiParam::new(types::I64));
    alloc_sig.returns.push(AbiParam::new(ptr));
    let mut free_sig = module.make_signature();
    free_sig.params.push(AbiParam::new(ptr));
    free_sig.params.push(AbiParam::new(types::I64));
    let codegen_err = |e: cranelift_module::ModuleError| JitError::Codegen(e.to_string());
    let corr_id = module
        .declare_function("recc_bias_correction", Linkage::Import, &corr_sig)
        .map_err(codegen_err)?;
    let prefetch_id = module
        .declare_function("recc_prefetch", Linkage::Import, &prefetch_sig)
        .map_err(codegen_err)?;

    let alloc_id = module
        .declare_function("recc_scratch_alloc", Linkage::Import, &alloc_sig)
        .map_err(codegen_err)?;
    let free_id = module
        .declare_function("recc_scratch_free", Linkage::Import, &free_sig)
        .map_err(codegen_err)?;

    let mut sig = Signature::new(module.isa().default_call_conv());
    sig.params.push(AbiParam::new(ptr));
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
    sig.returns.push(AbiParam::new(types::I64));
    let name = match kind {
        KernelKind::Step(_) => "step",
        KernelKind::Predict => "predict",
    };
    let id = module
        .declare_function(name, Linkage::Export, &sig)
        .map_err(codegen_err)?;
    let mut func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
    let helpers = Helpers {
        bias_correction: module.declare_func_in_func(corr_id, &mut func),
        prefetch: module.declare_func_in_func(prefetch_id, &mut func),
        scratch_alloc: module.declare_func_in_func(alloc_id, &mut func),
        scratch_free: module.declare_func_in_func(free_id, &mut func),
    };
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        codegen::build_kernel(&mut b, g, &layout, kind, prefetch, &helpers, register_lanes)
            .map_err(JitError::Codegen)?;
        b.finalize(module.target_config());
    }
    Ok(Built {
        module,
        id,
        func,
        layout,
    })
}

/// Which form of a kernel's Cranelift IR [`clif`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClifStage {
    /// As the code generator wrote it, before any Cranelift pass.
    Generated,
    /// After Cranelift's optimisation and legalisation: the function that
    /// was lowered to machine code.
    Optimized,
}

/// The Cranelift IR of the kernel [`Kernel::compile`] would build from `g`,
/// as text, after a comment naming each function of the module (the IR
/// calls them `u0:N`). The same graph on the same architecture gives the
/// same text: entities are numbered in the order they are created and
/// helpers are named, never addressed (addresses are bound at link time).
pub fn clif(
    g: &Graph,
    kind: KernelKind,
    prefetch: usize,
    stage: ClifStage,
) -> Result<String, JitError> {
    let Built {
        mut module,
        id,
        func,
        ..
    } = build(g, kind, prefetch, REGISTER_LANES)?;
    let mut text = String::new();
    for (fid, decl) in module.declarations().get_functions() {
        let name = decl.name.as_deref().unwrap_or("(anonymous)");
        text.push_str(&format!("; u0:{} = {name}\n", fid.as_u32()));
    }
    text += &match stage {
        ClifStage::Generated => func.display().to_string(),
        ClifStage::Optimized => {
            let mut ctx = Context::for_function(func);
            module
                .define_function(id, &mut ctx)
                .map_err(|e| JitError::Codegen(format!("{e:?}")))?;
            // Compiling rewrote `ctx.func` in place.
            ctx.func.display().to_string()
        }
    };
    // SAFETY: nothing was finalised, so no pointer into the module exists.
    unsafe { module.free_memory() };
    Ok(text)
}

/// Adam's bias correction `1 − βⁿ`, in f64 as the evaluator's trainer computes it.
/// `powi` is a loop of squarings, called for every row of every step, so
/// the first [`CORRECTION_STEPS`] values of the last two βs (Adam's β₁ and
/// β₂) are kept per thread: the same numbers, computed once.
extern "C" fn bias_correction(beta: f64, steps: i32) -> f32 {
    let exact = |n: i32| (1.0 - beta.powi(n)) as f32;
    let Ok(n) = usize::try_from(steps) else {
        return exact(steps);
    };
    CORRECTIONS.with(|cell| {
        let mut tables = cell.borrow_mut();
        let bits = beta.to_bits();
        let at = match tables.iter().position(|(b, _)| *b == bits) {
            Some(at) => at,
            None => {
                // One more than kept: the correction at `CORRECTION_STEPS`.
                let table = (0..=CORRECTION_STEPS as i32).map(exact).collect();
                if tables.len() == 2 {
                    tables.remove(0);
                }
                tables.push((bits, table));
                tables.len() - 1
            }
        };
        let table = &tables[at].1;
        match table.get(n) {
            Some(&c) if n < CORRECTION_STEPS => c,
            // βⁿ only shrinks with n for 0 ≤ β < 1: once the correction has rounded to 1 in
            // f32 it stays 1. A scalar parameter steps every example and gets here within
            // an epoch, so this saves a `powi` per example.
            _ if (0.0..1.0).contains(&beta) && table[CORRECTION_STEPS] == 1.0 => 1.0,
            _ => exact(steps),
        }
    })
}

/// Step counts whose bias corrections are kept (see [`bias_correction`]).
const CORRECTION_STEPS: usize = 1 << 16;

thread_local! {
    /// Per β (as bits): `1 − βⁿ` for `n ≤ CORRECTION_STEPS`.
    static CORRECTIONS: std::cell::RefCell<Vec<(u64, Vec<f32>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Prefetch `count` addresses into every cache level.
extern "C" fn prefetch_lines(addresses: *const u64, count: i64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for k in 0..count.max(0) as usize {
            // SAFETY: the kernel passes `count` words of its own stack slot;
            // a prefetch of any address never faults.
            unsafe {
                let a = *addresses.add(k);
                _mm_prefetch::<_MM_HINT_T0>(a as *const i8);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addresses, count);
}

/// The layout of a kernel call's scratch for wide values: whole cache lines.
fn scratch_layout(bytes: i64) -> std::alloc::Layout {
    // The code generator bounds `bytes` (`codegen::MAX_SCRATCH`), so this
    // layout always exists.
    match std::alloc::Layout::from_size_align(bytes.clamp(64, 1 << 40) as usize, 64) {
        Ok(layout) => layout,
        Err(_) => std::process::abort(),
    }
}

/// Scratch for one kernel call's wide values (uninitialised: every value
/// is written before it is read).
extern "C" fn scratch_alloc(bytes: i64) -> *mut u8 {
    let layout = scratch_layout(bytes);
    // SAFETY: the layout's size is at least 64.
    let at = unsafe { std::alloc::alloc(layout) };
    if at.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    at
}

extern "C" fn scratch_free(at: *mut u8, bytes: i64) {
    // SAFETY: `at` came from `scratch_alloc(bytes)` of the same call.
    unsafe { std::alloc::dealloc(at, scratch_layout(bytes)) }
}

#[cfg(test)]
mod correction_tests {
    use super::*;

    #[test]
    fn kept_bias_corrections_equal_the_exact_ones() {
        // Three βs in turn, so a table is also evicted and rebuilt.
        for beta in [0.9, 0.999, 0.95, 0.9, 0.99999, 0.0] {
            for n in [0, 1, 2, 17, 1000, 65535, 65536, 65537, 1 << 20, i32::MAX] {
                assert_eq!(
                    bias_correction(beta, n),
                    (1.0 - f64::powi(beta, n)) as f32,
                    "β {beta}, n {n}"
                );
            }
        }
        assert_eq!(bias_correction(0.9, -1), (1.0 - 0.9f64.powi(-1)) as f32);
    }
}
