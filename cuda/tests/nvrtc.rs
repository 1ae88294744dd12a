//! NVRTC compiles CUDA C++ to PTX on a machine without a GPU.
//!
//! Skipped, with the reason printed, when NVRTC is not installed; `.ci/run` installs it and sets
//! `RECC_NVRTC_REQUIRED=1`, which turns a skip into a failure.

use recc_cuda::nvrtc::{self, Arch, Nvrtc, NvrtcError};

/// A dot product per warp: each lane multiplies its strided slice, then a butterfly of
/// `__shfl_xor_sync` leaves the sum in every lane.
const WARP_DOT: &str = r#"
extern "C" __global__ void warp_dot(const float* a, const float* b, float* out, int n) {
    int lane = threadIdx.x & 31;
    float acc = 0.0f;
    for (int i = lane; i < n; i += 32) {
        acc += a[i] * b[i];
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    }
    if (lane == 0) {
        out[blockIdx.x] = acc;
    }
}
"#;

/// The NVRTC under test, or `None` (with the reason printed) when it is absent and not required.
fn nvrtc_or_skip(test: &str) -> Option<&'static Nvrtc> {
    match nvrtc::shared() {
        Ok(nvrtc) => {
            eprintln!("{test}: using NVRTC at {}", nvrtc.path().display());
            Some(nvrtc)
        }
        Err(error) => {
            if std::env::var_os("RECC_NVRTC_REQUIRED").is_some_and(|v| v == "1") {
                panic!("{test}: RECC_NVRTC_REQUIRED=1 but {error}");
            }
            eprintln!("{test}: SKIPPED: {error}");
            None
        }
    }
}

#[test]
fn warp_shuffle_kernel_compiles_to_ptx_for_sm80_and_sm90() {
    let Some(nvrtc) = nvrtc_or_skip("warp_shuffle_kernel_compiles") else {
        return;
    };
    let (major, minor) = nvrtc.version().expect("nvrtcVersion");
    eprintln!("NVRTC {major}.{minor}");
    for arch in [Arch::SM80, Arch::SM90] {
        let ptx = nvrtc
            .compile_ptx(WARP_DOT, "warp_dot.cu", arch)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ptx.arch, arch);
        assert!(
            ptx.text.contains(&format!(".target {arch}")),
            "no `.target {arch}` in the PTX:\n{}",
            ptx.text
        );
        assert!(ptx.text.contains(".entry warp_dot"), "{}", ptx.text);
        // The butterfly reduction became warp shuffles, not shared memory.
        assert!(ptx.text.contains("shfl.sync.bfly"), "{}", ptx.text);
    }
}

#[test]
fn a_broken_kernel_fails_with_the_compile_log() {
    let Some(nvrtc) = nvrtc_or_skip("a_broken_kernel_fails") else {
        return;
    };
    let broken =
        "extern \"C\" __global__ void broken(float* x) {\n    x[0] = undeclared_name;\n}\n";
    let error = nvrtc
        .compile_ptx(broken, "broken.cu", Arch::SM90)
        .expect_err("an undeclared identifier must not compile");
    match &error {
        NvrtcError::Compile { name, arch, log } => {
            assert_eq!(name, "broken.cu");
            assert_eq!(*arch, Arch::SM90);
            assert!(log.contains("undeclared_name"), "log: {log}");
            // The log locates the error: file and line.
            assert!(log.contains("broken.cu(2)"), "log: {log}");
        }
        other => panic!("expected a compile error, got {other}"),
    }
    let message = error.to_string();
    assert!(
        message.starts_with("NVRTC could not compile broken.cu for sm_90:"),
        "{message}"
    );
}

#[test]
fn a_missing_library_names_where_it_looked() {
    // Loading from a path that does not exist says which path; it never panics.
    let missing = std::path::Path::new("/nonexistent/libnvrtc.so.13");
    let error = Nvrtc::load_from(missing).expect_err("no library there");
    assert!(
        error.to_string().contains("/nonexistent/libnvrtc.so.13"),
        "{error}"
    );
}

#[test]
fn a_nul_in_the_source_is_refused_before_nvrtc() {
    let Some(nvrtc) = nvrtc_or_skip("a_nul_in_the_source") else {
        return;
    };
    let error = nvrtc
        .compile_ptx("int x;\0", "nul.cu", Arch::SM80)
        .expect_err("NUL byte");
    assert!(
        matches!(error, NvrtcError::NulInSource { offset: 6 }),
        "{error}"
    );
}
