//! The rendered CUDA C++ runs, and agrees with the plan's emulator.
//!
//! No GPU is needed: the kernel text is compiled by the host's C++ compiler against a small
//! header that plays CUDA's part for one warp (32 threads, shuffles and `__syncwarp` through a
//! barrier), then run on the same examples and tables as `recc_cuda::emulate`. One warp takes
//! the examples in order, so there are no Hogwild races and the two must agree to rounding.
//! Skipped, with the reason printed, when there is no `c++` compiler.

use recc_compiler::model::Optimizer;
use recc_cuda::emulate::{self, Column, Hyper, TableMut};
use recc_cuda::plan::SlotInput;
use recc_cuda::render::render;
use recc_cuda::{lower, KernelKind, KernelPlan, StepOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

/// CUDA's device-side names, for one warp of host threads.
const SHIM: &str = r#"
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <thread>
#include <vector>
struct Dim3 { unsigned int x, y, z; };
static thread_local Dim3 threadIdx;
static const Dim3 blockIdx = {0, 0, 0};
static const Dim3 blockDim = {32, 1, 1};
static const Dim3 gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
static std::barrier<>* warp_barrier;
static float exchange[32];
static float shuffle_from(float x, unsigned int from) {
    exchange[threadIdx.x] = x;
    warp_barrier->arrive_and_wait();
    float y = exchange[from & 31u];
    warp_barrier->arrive_and_wait();
    return y;
}
static float __shfl_xor_sync(unsigned int, float x, int d) { return shuffle_from(x, threadIdx.x ^ (unsigned int)d); }
static float __shfl_sync(unsigned int, float x, int lane) { return shuffle_from(x, (unsigned int)lane); }
static void __syncwarp() { warp_barrier->arrive_and_wait(); }
static unsigned int atomicMin(unsigned int* a, unsigned int v) { unsigned int old = *a; if (v < old) *a = v; return old; }
static double atomicAdd(double* a, double v) { double old = *a; *a = old + v; return old; }
static float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
using std::isfinite;
"#;

fn compiler() -> Option<PathBuf> {
    ["c++", "g++", "clang++"].iter().find_map(|name| {
        let ok = Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| PathBuf::from(name))
    })
}

/// The kernel's arguments in the order `render` declares them, as C++ expressions over the
/// driver's arrays.
fn arguments(plan: &KernelPlan) -> Vec<String> {
    let mut args = vec!["n".to_string()];
    let mut col = 0;
    for slot in &plan.slots {
        match slot {
            SlotInput::Index(_) => args.push(format!("(const unsigned int*)cols[{col}]")),
            SlotInput::Real | SlotInput::Noise { .. } => {
                args.push(format!("(const float*)cols[{col}]"))
            }
            SlotInput::Bag(_) => {
                args.push(format!("(const unsigned int*)cols[{col}]"));
                args.push(format!("(const unsigned int*)cols[{}]", col + 1));
                args.push(format!("(const float*)cols[{}]", col + 2));
                col += 2;
            }
        }
        col += 1;
    }
    let optimizer = match plan.kind {
        KernelKind::Step(options) => Some(options.optimizer),
        KernelKind::Predict => None,
    };
    for t in 0..plan.tables.len() {
        args.push(format!("values[{t}]"));
        let Some(optimizer) = optimizer else {
            continue;
        };
        match optimizer {
            Optimizer::Sgd => {}
            Optimizer::Adagrad => args.push(format!("first[{t}]")),
            Optimizer::Adam { .. } => {
                args.push(format!("first[{t}]"));
                args.push(format!("second[{t}]"));
                args.push(format!("steps[{t}]"));
            }
        }
        args.push(format!("touched[{t}]"));
    }
    for d in 0..plan.domains.len() {
        args.push(format!("sizes[{d}]"));
    }
    let tail: &[&str] = match optimizer {
        Some(_) => &[
            "scratch", "bag_cap", "lr", "beta1", "beta2", "loss", "stopped",
        ],
        None => &["scratch", "bag_cap", "scores"],
    };
    args.extend(tail.iter().map(|a| a.to_string()));
    args
}

/// The kernel and a driver that runs it on one warp, as a shared library.
/// The flags every translation unit and the precompiled shim share (a precompiled header is
/// used only when they match).
const CXX_FLAGS: [&str; 5] = [
    "-std=c++20",
    "-O1",
    "-ffp-contract=off",
    "-fPIC",
    "-pthread",
];

/// Writes the shim into `dir` and precompiles it there, best effort: parsing the standard
/// headers it includes takes most of each kernel's compile, and there are over a hundred.
/// When the compiler cannot precompile (or is not GCC, which is what looks for `.gch`),
/// each unit parses the header itself.
fn prepare_shim(dir: &Path, cxx: &Path) {
    let header = dir.join("shim.h");
    std::fs::write(&header, SHIM).expect("write the shim");
    let precompiled = Command::new(cxx)
        .args(CXX_FLAGS)
        .args(["-x", "c++-header", "-o"])
        .arg(dir.join("shim.h.gch"))
        .arg(&header)
        .output();
    if !precompiled.is_ok_and(|out| out.status.success()) {
        let _ = std::fs::remove_file(dir.join("shim.h.gch"));
    }
}

fn build(plan: &KernelPlan, dir: &Path, cxx: &Path) -> PathBuf {
    let (name, entry, parameters) = match plan.kind {
        KernelKind::Step(_) => (
            "step",
            "run_step",
            "const void** cols, float** values, float** first, float** second, \
             unsigned int** steps, unsigned char** touched, const unsigned int* sizes, \
             unsigned int n, float* scratch, unsigned int bag_cap, float lr, double beta1, \
             double beta2, double* loss, unsigned int* stopped",
        ),
        KernelKind::Predict => (
            "predict",
            "run_predict",
            "const void** cols, float** values, const unsigned int* sizes, unsigned int n, \
             float* scratch, unsigned int bag_cap, float* scores",
        ),
    };
    let driver = format!(
        r#"
extern "C" void {entry}({parameters}) {{
    std::barrier<> barrier(32);
    warp_barrier = &barrier;
    std::vector<std::thread> lanes;
    for (unsigned int i = 0; i < 32; ++i) {{
        lanes.emplace_back([=] {{
            threadIdx = {{i, 0, 0}};
            recc_{name}::{name}({args});
        }});
    }}
    for (auto& lane : lanes) lane.join();
}}
"#,
        args = arguments(plan).join(", ")
    );
    let source = format!("{}\n{driver}", render(plan));
    let cpp = dir.join(format!("{}_{name}.cpp", plan.model));
    let lib = dir.join(format!("lib{}_{name}.so", plan.model));
    std::fs::write(&cpp, source).expect("write the C++");
    let out = Command::new(cxx)
        .args(CXX_FLAGS)
        .arg("-shared")
        .arg("-include")
        .arg(dir.join("shim.h"))
        // The kernel's own `step`, not the C library's old regexp `step`.
        .arg("-Wl,-Bsymbolic")
        .arg("-o")
        .arg(&lib)
        .arg(&cpp)
        .output()
        .expect("run the C++ compiler");
    assert!(
        out.status.success(),
        "{}: the rendered kernel does not compile as C++:\n{}",
        plan.model,
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

/// A small deterministic generator (no dependence on a crate's sequence).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn below(&mut self, n: usize) -> u32 {
        self.next() % n as u32
    }
    fn float(&mut self, scale: f32) -> f32 {
        (self.next() as f32 / (1u64 << 31) as f32 - 0.5) * 2.0 * scale
    }
}

/// One slot's data: index/real/noise as one column, bags as three.
enum Data {
    U32(Vec<u32>),
    F32(Vec<f32>),
    Bag(Vec<u32>, Vec<u32>, Vec<f32>),
}

type CallPredict = unsafe extern "C" fn(
    *const *const std::ffi::c_void,
    *const *mut f32,
    *const u32,
    u32,
    *mut f32,
    u32,
    *mut f32,
);

type CallStep = unsafe extern "C" fn(
    *const *const std::ffi::c_void,
    *const *mut f32,
    *const *mut f32,
    *const *mut f32,
    *const *mut u32,
    *const *mut u8,
    *const u32,
    u32,
    *mut f32,
    u32,
    f32,
    f64,
    f64,
    *mut f64,
    *mut u32,
);

struct Tables {
    values: Vec<Vec<f32>>,
    first: Vec<Vec<f32>>,
    second: Vec<Vec<f32>>,
    steps: Vec<Vec<u32>>,
    touched: Vec<Vec<u8>>,
}

/// Runs the model's step (with its own optimiser, or `optimizer`) and predict kernels against
/// the emulator; `None` when the plan does not lower.
fn run_model(stem: &str, optimizer: Option<Optimizer>, cxx: &Path, dir: &Path) -> Option<f32> {
    let file = format!("{stem}.rec");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(&file);
    let text = std::fs::read_to_string(path).expect("model file");
    let compiled = recc_compiler::compile(&file, &text);
    let model = compiled.model.expect("a checked model");
    let gradient = recc_compiler::gradient_graph(&model).expect("gradient graph");
    let options = StepOptions {
        optimizer: optimizer.unwrap_or(model.fit.optimizer),
        max_ball_norm: recc_runtime::init::MAX_BALL_NORM,
    };
    let plan = lower(&gradient, KernelKind::Step(options)).ok()?;

    let examples = 40usize;
    let sizes: Vec<usize> = plan.domains.iter().map(|_| 6).collect();
    let mut rng = Lcg(0x5eed ^ stem.len() as u64);
    let mut bag_cap = 1usize;
    let data: Vec<Data> = plan
        .slots
        .iter()
        .map(|slot| match slot {
            SlotInput::Index(d) => {
                Data::U32((0..examples).map(|_| rng.below(sizes[d.index()])).collect())
            }
            // Positive, as counts and ratings are (a model may take their log).
            SlotInput::Real => Data::F32((0..examples).map(|_| 2.0 + rng.float(1.5)).collect()),
            SlotInput::Noise { lanes } => {
                Data::F32((0..examples * lanes).map(|_| rng.float(1.0)).collect())
            }
            SlotInput::Bag(d) => {
                let mut offsets = vec![0u32];
                let (mut members, mut weights) = (Vec::new(), Vec::new());
                for _ in 0..examples {
                    let len = rng.below(4) as usize;
                    bag_cap = bag_cap.max(len);
                    for _ in 0..len {
                        members.push(rng.below(sizes[d.index()]));
                        weights.push(0.5 + rng.float(0.4));
                    }
                    offsets.push(members.len() as u32);
                }
                Data::Bag(offsets, members, weights)
            }
        })
        .collect();
    let fresh = |rng: &mut Lcg| {
        let mut t = Tables {
            values: vec![],
            first: vec![],
            second: vec![],
            steps: vec![],
            touched: vec![],
        };
        for table in &plan.tables {
            let rows = table.domain.map_or(1, |d| sizes[d.index()]);
            let n = rows * table.lanes;
            t.values.push((0..n).map(|_| rng.float(0.2)).collect());
            t.first.push(vec![0.0; n]);
            t.second.push(vec![0.0; n]);
            t.steps.push(vec![0; rows]);
            t.touched.push(vec![0; rows]);
        }
        t
    };
    let mut init = Lcg(rng.0);
    let mut emulated = fresh(&mut init);
    let mut init = Lcg(rng.0);
    let mut native = fresh(&mut init);
    let mut init = Lcg(rng.0);
    let initial = fresh(&mut init);
    let (lr, beta1, beta2) = match options.optimizer {
        Optimizer::Adam { beta1, beta2 } => (0.01, beta1, beta2),
        _ => (0.05, 0.9, 0.999),
    };

    // The emulator.
    let columns: Vec<Column> = data
        .iter()
        .map(|d| match d {
            Data::U32(v) => Column::Index(v),
            Data::F32(v) => Column::Real(v),
            Data::Bag(o, m, w) => Column::Bag {
                offsets: o,
                members: m,
                weights: w,
            },
        })
        .collect();
    let mut views: Vec<TableMut> = Vec::new();
    for ((((v, f), s), st), to) in emulated
        .values
        .iter_mut()
        .zip(&mut emulated.first)
        .zip(&mut emulated.second)
        .zip(&mut emulated.steps)
        .zip(&mut emulated.touched)
    {
        let sgd = options.optimizer == Optimizer::Sgd;
        let adam = matches!(options.optimizer, Optimizer::Adam { .. });
        views.push(TableMut {
            values: v,
            first: if sgd { &mut [] } else { f },
            second: if adam { s } else { &mut [] },
            steps: if adam { st } else { &mut [] },
            touched: to,
        });
    }
    let hyper = Hyper { lr, beta1, beta2 };
    let ran = emulate::step(&plan, &columns, examples, &sizes, &mut views, hyper)
        .unwrap_or_else(|e| panic!("{e}"));
    drop(views);

    // The rendered kernel.
    let lib_path = build(&plan, dir, cxx);
    let mut cols: Vec<*const std::ffi::c_void> = Vec::new();
    for d in &data {
        match d {
            Data::U32(v) => cols.push(v.as_ptr().cast()),
            Data::F32(v) => cols.push(v.as_ptr().cast()),
            Data::Bag(o, m, w) => {
                cols.push(o.as_ptr().cast());
                cols.push(m.as_ptr().cast());
                cols.push(w.as_ptr().cast());
            }
        }
    }
    let ptrs = |v: &mut Vec<Vec<f32>>| v.iter_mut().map(|x| x.as_mut_ptr()).collect::<Vec<_>>();
    let values = ptrs(&mut native.values);
    let first = ptrs(&mut native.first);
    let second = ptrs(&mut native.second);
    let steps: Vec<*mut u32> = native.steps.iter_mut().map(|x| x.as_mut_ptr()).collect();
    let touched: Vec<*mut u8> = native.touched.iter_mut().map(|x| x.as_mut_ptr()).collect();
    let sizes32: Vec<u32> = sizes.iter().map(|&s| s as u32).collect();
    let mut scratch = vec![0f32; bag_cap * plan.bag_lanes.max(1)];
    let mut loss = 0f64;
    let mut stopped = examples as u32;
    // SAFETY: the library was just built from this plan; every array is sized as the kernel's
    // launch contract asks, and outlives the call.
    unsafe {
        let lib = libloading::Library::new(&lib_path).expect("load the kernel");
        let run: libloading::Symbol<CallStep> = lib.get(b"run_step\0").expect("run_step");
        run(
            cols.as_ptr(),
            values.as_ptr(),
            first.as_ptr(),
            second.as_ptr(),
            steps.as_ptr(),
            touched.as_ptr(),
            sizes32.as_ptr(),
            examples as u32,
            scratch.as_mut_ptr(),
            bag_cap as u32,
            lr as f32,
            beta1,
            beta2,
            &mut loss,
            &mut stopped,
        );
    }
    assert_eq!(
        stopped as usize,
        ran.done.min(examples),
        "{stem}: where it stopped"
    );
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * (1.0 + a.abs().max(b.abs()));
    assert!(
        close(loss, ran.loss),
        "{stem}: loss {loss} against {}",
        ran.loss
    );
    // The step did something: the loss is counted and some parameter moved.
    assert!(ran.loss != 0.0, "{stem}: no loss");
    let moved = (0..plan.tables.len()).any(|t| native.values[t] != initial.values[t]);
    assert!(moved, "{stem}: no parameter changed");
    let mut worst = 0f32;
    for (t, table) in plan.tables.iter().enumerate() {
        for (i, (a, b)) in native.values[t].iter().zip(&emulated.values[t]).enumerate() {
            assert!(
                close(f64::from(*a), f64::from(*b)),
                "{stem}: table `{}` [{i}]: kernel {a}, emulator {b}",
                table.name
            );
            worst = worst.max((a - b).abs());
        }
        assert_eq!(
            native.touched[t], emulated.touched[t],
            "{stem}: touched rows"
        );
        assert_eq!(native.steps[t], emulated.steps[t], "{stem}: step counts");
    }

    // The predict kernel on the trained tables.
    let forward = recc_compiler::forward_graph(&model).expect("forward graph");
    let plan = lower(&forward, KernelKind::Predict).ok()?;
    let views: Vec<&[f32]> = emulated.values.iter().map(Vec::as_slice).collect();
    let mut expected = vec![0f32; examples];
    emulate::predict(&plan, &columns, examples, &sizes, &views, &mut expected)
        .unwrap_or_else(|e| panic!("{e}"));
    let lib_path = build(&plan, dir, cxx);
    let mut scores = vec![f32::NAN; examples];
    // SAFETY: as for the step.
    unsafe {
        let lib = libloading::Library::new(&lib_path).expect("load the kernel");
        let run: libloading::Symbol<CallPredict> = lib.get(b"run_predict\0").expect("run_predict");
        run(
            cols.as_ptr(),
            values.as_ptr(),
            sizes32.as_ptr(),
            examples as u32,
            scratch.as_mut_ptr(),
            bag_cap as u32,
            scores.as_mut_ptr(),
        );
    }
    for (i, (a, b)) in scores.iter().zip(&expected).enumerate() {
        assert!(
            close(f64::from(*a), f64::from(*b)),
            "{stem}: score {i}: kernel {a}, emulator {b}"
        );
        worst = worst.max((a - b).abs());
    }
    Some(worst)
}

#[test]
fn every_rendered_kernel_runs_on_one_warp_and_agrees_with_the_emulator() {
    let Some(cxx) = compiler() else {
        eprintln!("rendered kernels on the CPU: SKIPPED: no c++, g++ or clang++ found");
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary folder");
    prepare_shim(dir.path(), &cxx);
    let stems = model_stems();
    let mut ran = 0;
    for stem in &stems {
        if fitted_by_als_only(stem) {
            eprintln!("{stem}: fitted by ALS only: its SGD step is not run");
            ran += 1;
            continue;
        }
        if let Some(worst) = run_model(stem, None, &cxx, dir.path()) {
            eprintln!(
                "{stem}: step and predict kernels agree with the emulator \
                 (largest difference {worst:e})"
            );
            ran += 1;
        }
    }
    assert_eq!(ran, stems.len(), "every model lowers");
}

#[test]
fn every_rendered_step_agrees_with_the_emulator_under_adagrad_and_adam() {
    let Some(cxx) = compiler() else {
        eprintln!("rendered kernels on the CPU: SKIPPED: no c++, g++ or clang++ found");
        return;
    };
    let adam = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
    };
    for optimizer in [Optimizer::Adagrad, adam] {
        // A folder per optimiser: each library is loaded from a file name not used before.
        let dir = tempfile::tempdir().expect("a temporary folder");
        prepare_shim(dir.path(), &cxx);
        for stem in model_stems() {
            if fitted_by_als_only(&stem) {
                continue;
            }
            let worst = run_model(&stem, Some(optimizer), &cxx, dir.path());
            assert!(worst.is_some(), "{stem} lowers");
        }
    }
}

/// A model with a sum over unobserved pairs: its per-example terms alone
/// have no minimum, so SGD steps on them diverge by design.
fn fitted_by_als_only(stem: &str) -> bool {
    let file = format!("{stem}.rec");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(&file);
    let text = std::fs::read_to_string(path).expect("model file");
    recc_compiler::compile(&file, &text)
        .model
        .is_some_and(|m| !m.unobserved.is_empty())
}

/// Every model file's stem, sorted.
fn model_stems() -> Vec<String> {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut stems: Vec<String> = std::fs::read_dir(models)
        .expect("models/")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rec").map(str::to_string)
        })
        .collect();
    stems.sort();
    stems
}
