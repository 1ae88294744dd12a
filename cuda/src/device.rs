//! Finding a CUDA device: the driver library loaded at run time, and
//! NVRTC (see [`crate::nvrtc`]) to compile kernels for it.
//!
//! Nothing here links against CUDA. The driver (`libcuda`) is opened when
//! [`probe`] is called, so recc builds and runs on a machine without CUDA;
//! there the probe says every place it looked and why each failed, and a
//! driver that loads but sees no GPU is told apart from no driver at all.
//!
//! Where the driver is looked for, in order: the dynamic linker's own
//! search for [`DRIVER_NAMES`] (`LD_LIBRARY_PATH`, its cache, the default
//! folders), then the fixed paths of [`DRIVER_PATHS`] that the linker does
//! not search by default.

use std::ffi::{c_char, c_int, c_uint, CStr};
use std::fmt;

/// The driver's file names, tried through the dynamic linker.
#[cfg(not(windows))]
pub const DRIVER_NAMES: [&str; 2] = ["libcuda.so.1", "libcuda.so"];
#[cfg(windows)]
pub const DRIVER_NAMES: [&str; 1] = ["nvcuda.dll"];

/// Full paths tried after the names: where the driver lives on systems
/// whose linker is not told about it (WSL 2 keeps it outside the cache).
#[cfg(not(windows))]
pub const DRIVER_PATHS: [&str; 1] = ["/usr/lib/wsl/lib/libcuda.so.1"];
#[cfg(windows)]
pub const DRIVER_PATHS: [&str; 0] = [];

/// What the probe found: the driver, every device it sees (at least one)
/// and NVRTC.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    /// The name or path the driver was loaded from.
    pub library: String,
    /// The CUDA version the driver supports, e.g. (12, 4).
    pub driver_version: (i32, i32),
    pub devices: Vec<Device>,
    pub nvrtc: NvrtcInfo,
}

/// The NVRTC library found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvrtcInfo {
    /// The file it was loaded from (a bare name when the system loader found it).
    pub path: String,
    pub version: (i32, i32),
}

impl fmt::Display for NvrtcInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = self.version;
        write!(f, "NVRTC {major}.{minor} ({})", self.path)
    }
}

/// One GPU as the driver describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// Its number for the driver (`cuDeviceGet`).
    pub ordinal: i32,
    pub name: String,
    /// The compute capability, e.g. (9, 0) for an H100.
    pub compute_capability: (i32, i32),
    pub multiprocessors: i32,
    pub memory_bytes: u64,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = self.compute_capability;
        write!(
            f,
            "GPU {}: {} (sm_{major}{minor}, {} multiprocessors, {:.1} GiB)",
            self.ordinal,
            self.name,
            self.multiprocessors,
            self.memory_bytes as f64 / (1u64 << 30) as f64
        )
    }
}

/// One place the driver was looked for, and why it was not usable there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub library: String,
    /// The loader's own words.
    pub error: String,
}

/// Why no CUDA device is usable: what was looked for and not found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// No driver library could be loaded from any place tried.
    Driver { tried: Vec<Attempt> },
    /// The driver loaded but lacks a function the probe calls: a stub
    /// library or one too old.
    Symbol { library: String, symbol: String },
    /// The driver loaded but a call failed (`cuInit` fails this way when
    /// the kernel module is not loaded or the driver is older than the
    /// library).
    Call {
        library: String,
        call: &'static str,
        code: i32,
        name: String,
    },
    /// The driver loaded and started, and sees no GPU.
    NoDevice { library: String },
    /// NVRTC, which compiles the kernels, was not found or did not load:
    /// its own message, naming every place looked.
    Nvrtc { message: String },
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Driver { tried } => {
                writeln!(
                    f,
                    "no CUDA driver found; tried \
                    (names through the dynamic linker: LD_LIBRARY_PATH, its cache and \
                     the default folders):"
                )?;
                for a in tried {
                    writeln!(f, "  {}: {}", a.library, a.error)?;
                }
                write!(
                    f,
                    "install the NVIDIA driver, or add the folder holding {} to LD_LIBRARY_PATH",
                    DRIVER_NAMES.first().copied().unwrap_or("the driver")
                )
            }
            Missing::Symbol { library, symbol } => write!(
                f,
                "the CUDA driver {library} has no `{symbol}`: it is a stub or too old \
                 (the probe needs CUDA 10 or later)"
            ),
            Missing::Call {
                library,
                call,
                code,
                name,
            } => write!(
                f,
                "the CUDA driver {library} loaded, but {call} failed with {name} ({code})"
            ),
            Missing::NoDevice { library } => write!(
                f,
                "the CUDA driver {library} loaded and started, but found no GPU"
            ),
            Missing::Nvrtc { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for Missing {}

/// `CUresult`: 0 is success.
type CuResult = c_int;
/// `CUDA_ERROR_NO_DEVICE`: what `cuInit` says on a machine without a GPU.
const CUDA_ERROR_NO_DEVICE: CuResult = 100;
/// `CUdevice_attribute` values (cuda.h).
const ATTR_MULTIPROCESSOR_COUNT: c_int = 16;
const ATTR_COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const ATTR_COMPUTE_CAPABILITY_MINOR: c_int = 76;

type CuInit = unsafe extern "C" fn(c_uint) -> CuResult;
type CuDriverGetVersion = unsafe extern "C" fn(*mut c_int) -> CuResult;
type CuDeviceGetCount = unsafe extern "C" fn(*mut c_int) -> CuResult;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> CuResult;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> CuResult;
type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> CuResult;
type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> CuResult;
type CuGetErrorName = unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult;

/// The driver's functions the probe calls.
struct Driver {
    library: String,
    init: CuInit,
    driver_get_version: CuDriverGetVersion,
    device_get_count: CuDeviceGetCount,
    device_get: CuDeviceGet,
    device_get_name: CuDeviceGetName,
    device_get_attribute: CuDeviceGetAttribute,
    device_total_mem: CuDeviceTotalMem,
    get_error_name: CuGetErrorName,
    // Declared last: the function pointers above are dropped before it.
    _lib: libloading::Library,
}

/// Look for a CUDA driver, the GPUs it sees, and NVRTC.
pub fn probe() -> Result<DeviceInfo, Missing> {
    let driver = load_driver()?;
    let (version, devices) = driver.devices()?;
    Ok(DeviceInfo {
        library: driver.library.clone(),
        driver_version: version,
        devices,
        nvrtc: probe_nvrtc()?,
    })
}

/// Look for NVRTC alone (it needs no GPU).
pub fn probe_nvrtc() -> Result<NvrtcInfo, Missing> {
    let missing = |e: crate::nvrtc::NvrtcError| Missing::Nvrtc {
        message: e.to_string(),
    };
    let nvrtc = crate::nvrtc::shared().map_err(missing)?;
    Ok(NvrtcInfo {
        path: nvrtc.path().display().to_string(),
        version: nvrtc.version().map_err(missing)?,
    })
}

fn load_driver() -> Result<Driver, Missing> {
    let mut tried = Vec::new();
    for library in DRIVER_NAMES.iter().chain(DRIVER_PATHS.iter()) {
        // SAFETY: loading the NVIDIA driver runs only its own initialisers,
        // which have no preconditions on the loading program.
        match unsafe { libloading::Library::new(library) } {
            Ok(lib) => return Driver::bind(library, lib),
            Err(e) => tried.push(Attempt {
                library: (*library).to_string(),
                error: loader_message(&e),
            }),
        }
    }
    Err(Missing::Driver { tried })
}

/// The loader's message, without the name it already repeats.
fn loader_message(e: &libloading::Error) -> String {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((_, rest)) if !rest.is_empty() => rest.to_string(),
        _ => text,
    }
}

impl Driver {
    fn bind(library: &str, lib: libloading::Library) -> Result<Driver, Missing> {
        macro_rules! symbol {
            ($name:literal) => {{
                // SAFETY: each name is looked up with the signature cuda.h
                // gives it; the pointer is used only while `lib` lives.
                match unsafe { lib.get(concat!($name, "\0").as_bytes()) } {
                    Ok(s) => *s,
                    Err(_) => {
                        return Err(Missing::Symbol {
                            library: library.to_string(),
                            symbol: $name.to_string(),
                        })
                    }
                }
            }};
        }
        Ok(Driver {
            library: library.to_string(),
            init: symbol!("cuInit"),
            driver_get_version: symbol!("cuDriverGetVersion"),
            device_get_count: symbol!("cuDeviceGetCount"),
            device_get: symbol!("cuDeviceGet"),
            device_get_name: symbol!("cuDeviceGetName"),
            device_get_attribute: symbol!("cuDeviceGetAttribute"),
            device_total_mem: symbol!("cuDeviceTotalMem_v2"),
            get_error_name: symbol!("cuGetErrorName"),
            _lib: lib,
        })
    }

    /// The driver's name for a result code.
    fn error_name(&self, code: CuResult) -> String {
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: `name` is a valid out-pointer; the driver points it at a
        // static string or leaves it null.
        let r = unsafe { (self.get_error_name)(code, &mut name) };
        if r != 0 || name.is_null() {
            return "an unknown error".to_string();
        }
        // SAFETY: non-null, the driver's static NUL-terminated string.
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    }

    fn check(&self, call: &'static str, code: CuResult) -> Result<(), Missing> {
        if code == 0 {
            return Ok(());
        }
        Err(Missing::Call {
            library: self.library.clone(),
            call,
            code,
            name: self.error_name(code),
        })
    }

    /// The driver's CUDA version and its devices.
    fn devices(&self) -> Result<((i32, i32), Vec<Device>), Missing> {
        let no_device = || Missing::NoDevice {
            library: self.library.clone(),
        };
        // SAFETY: every call below passes valid out-pointers and device
        // numbers the driver itself counted.
        let code = unsafe { (self.init)(0) };
        if code == CUDA_ERROR_NO_DEVICE {
            return Err(no_device());
        }
        self.check("cuInit", code)?;
        let mut version: c_int = 0;
        self.check("cuDriverGetVersion", unsafe {
            (self.driver_get_version)(&mut version)
        })?;
        let mut count: c_int = 0;
        self.check("cuDeviceGetCount", unsafe {
            (self.device_get_count)(&mut count)
        })?;
        if count <= 0 {
            return Err(no_device());
        }
        let mut devices = Vec::new();
        for ordinal in 0..count {
            let mut dev: c_int = 0;
            self.check("cuDeviceGet", unsafe {
                (self.device_get)(&mut dev, ordinal)
            })?;
            let mut name = [0 as c_char; 256];
            self.check("cuDeviceGetName", unsafe {
                (self.device_get_name)(name.as_mut_ptr(), name.len() as c_int, dev)
            })?;
            // The buffer's last byte stays 0, so the name always ends.
            name[name.len() - 1] = 0;
            // SAFETY: NUL-terminated inside the buffer (set just above).
            let name = unsafe { CStr::from_ptr(name.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            let attribute = |attr: c_int| -> Result<i32, Missing> {
                let mut v: c_int = 0;
                self.check("cuDeviceGetAttribute", unsafe {
                    (self.device_get_attribute)(&mut v, attr, dev)
                })?;
                Ok(v)
            };
            let major = attribute(ATTR_COMPUTE_CAPABILITY_MAJOR)?;
            let minor = attribute(ATTR_COMPUTE_CAPABILITY_MINOR)?;
            let multiprocessors = attribute(ATTR_MULTIPROCESSOR_COUNT)?;
            let mut bytes: usize = 0;
            self.check("cuDeviceTotalMem_v2", unsafe {
                (self.device_total_mem)(&mut bytes, dev)
            })?;
            devices.push(Device {
                ordinal,
                name,
                compute_capability: (major, minor),
                multiprocessors,
                memory_bytes: bytes as u64,
            });
        }
        Ok(((version / 1000, (version % 1000) / 10), devices))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_driver_names_every_place_tried() {
        let m = Missing::Driver {
            tried: vec![
                Attempt {
                    library: "libcuda.so.1".into(),
                    error: "cannot open shared object file: No such file or directory".into(),
                },
                Attempt {
                    library: "/usr/lib/wsl/lib/libcuda.so.1".into(),
                    error: "cannot open shared object file: No such file or directory".into(),
                },
            ],
        };
        let text = m.to_string();
        assert!(text.starts_with("no CUDA driver"), "{text}");
        assert!(text.contains("\n  libcuda.so.1: cannot open"), "{text}");
        assert!(
            text.contains("\n  /usr/lib/wsl/lib/libcuda.so.1: "),
            "{text}"
        );
        assert!(text.ends_with("to LD_LIBRARY_PATH"), "{text}");
    }

    /// Whatever this machine has, the probe answers, and its answer is
    /// consistent: either devices, or a reason naming what was tried.
    #[test]
    fn the_probe_answers_on_this_machine() {
        match probe() {
            Ok(info) => {
                assert!(!info.devices.is_empty());
                assert!(info.devices.iter().all(|d| d.compute_capability.0 > 0));
            }
            Err(Missing::Driver { tried }) => {
                let names: Vec<&str> = tried.iter().map(|a| a.library.as_str()).collect();
                let expected: Vec<&str> = DRIVER_NAMES
                    .iter()
                    .chain(DRIVER_PATHS.iter())
                    .copied()
                    .collect();
                assert_eq!(names, expected);
                assert!(tried.iter().all(|a| !a.error.is_empty()));
            }
            Err(other) => assert!(!other.to_string().is_empty()),
        }
    }
}
