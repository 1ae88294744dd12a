//! `--backend cuda`: accepted by the commands that train or measure, and
//! answered before any work with what this machine has. The device runtime
//! (uploading tables, launching the kernels) is not built, so the answer is
//! always a refusal: either what was looked for and not found, or the GPU
//! that was found and the fact that recc cannot train on it yet.

use crate::run::{usage, Result};
use recc_cuda::device::{self, DeviceInfo, Missing};

/// The `--backend` value that names the GPU.
pub const BACKEND: &str = "cuda";

/// Refuse `--backend cuda` with what the device probe found; any other
/// backend passes (the runtime checks its name).
pub fn refuse(backend: Option<&str>) -> Result<()> {
    if backend != Some(BACKEND) {
        return Ok(());
    }
    let text = refusal(&device::probe());
    // One-line failures get their `error:` prefix when printed; several
    // lines are printed as they are.
    Err(usage(if text.contains('\n') {
        format!("error: {text}")
    } else {
        text
    }))
}

/// What `--backend cuda` says, given the probe's answer.
pub fn refusal(probe: &std::result::Result<DeviceInfo, Missing>) -> String {
    match probe {
        Err(missing @ Missing::Nvrtc { .. }) => format!("--backend cuda: {missing}"),
        // The driver or the GPU is missing: say too whether the other half,
        // the compiler of the kernels, is there.
        Err(missing) => format!(
            "--backend cuda: {}\n  NVRTC, to compile the kernels: {}",
            indent_after_first(&missing.to_string()),
            match device::probe_nvrtc() {
                Ok(found) => format!("found {found}"),
                Err(m) => m.to_string(),
            }
        ),
        Ok(info) => {
            let (major, minor) = info.driver_version;
            let mut text = format!(
                "--backend cuda: the CUDA driver {} (CUDA {major}.{minor}) sees:\n",
                info.library
            );
            for d in &info.devices {
                text.push_str(&format!("  {d}\n"));
            }
            text.push_str(&format!("and {} compiles kernels for it, ", info.nvrtc));
            text.push_str(
                "but the CUDA training runtime is not built yet, so recc cannot train or \
                 measure on a GPU; use --backend jit (the kernels can be read with \
                 `recc emit --target cuda`)",
            );
            text
        }
    }
}

/// Continuation lines indented under an `error:` line.
fn indent_after_first(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join("\n  ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use recc_cuda::device::Device;

    /// A machine with a GPU hears about its GPU and, honestly, that recc
    /// cannot train on it yet (CI has no GPU, so the case is built here).
    #[test]
    fn a_found_gpu_is_named_and_the_missing_runtime_admitted() {
        let info = DeviceInfo {
            library: "libcuda.so.1".into(),
            driver_version: (12, 4),
            devices: vec![Device {
                ordinal: 0,
                name: "NVIDIA H200".into(),
                compute_capability: (9, 0),
                multiprocessors: 132,
                memory_bytes: 150 << 30,
            }],
            nvrtc: recc_cuda::device::NvrtcInfo {
                path: "target/nvrtc/nvidia/cu13/lib/libnvrtc.so.13".into(),
                version: (13, 0),
            },
        };
        assert_eq!(
            refusal(&Ok(info)),
            "--backend cuda: the CUDA driver libcuda.so.1 (CUDA 12.4) sees:\n  \
             GPU 0: NVIDIA H200 (sm_90, 132 multiprocessors, 150.0 GiB)\n\
             and NVRTC 13.0 (target/nvrtc/nvidia/cu13/lib/libnvrtc.so.13) compiles kernels \
             for it, but the CUDA training runtime is not built yet, so recc cannot train or \
             measure on a GPU; use --backend jit (the kernels can be read with \
             `recc emit --target cuda`)"
        );
    }

    #[test]
    fn a_machine_without_a_gpu_hears_what_was_missing() {
        let missing = Missing::NoDevice {
            library: "libcuda.so.1".into(),
        };
        let text = refusal(&Err(missing));
        assert!(
            text.starts_with(
                "--backend cuda: the CUDA driver libcuda.so.1 loaded and started, \
                 but found no GPU\n  NVRTC, to compile the kernels: "
            ),
            "{text}"
        );
    }
}
