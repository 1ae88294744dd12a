//! NVRTC, the CUDA run-time compiler, loaded dynamically.
//!
//! Nothing here links against CUDA: the library is opened with `dlopen` when it is first needed,
//! so recc builds and runs on a machine without CUDA, and says where it looked when NVRTC is
//! missing. NVRTC needs no GPU, so CUDA source can be compiled to PTX anywhere the library is.
//!
//! Where the library is looked for, in order:
//! 1. `RECC_NVRTC`: the library itself, or a folder holding it (a `pip install --target` folder
//!    works: its `nvidia/cu13/lib` is searched too). When set, it is the only place looked.
//! 2. `nvrtc/` beside the folders that hold the running program (so `target/nvrtc/`, where the
//!    CI script installs the PyPI package, is found by `target/debug/recc` and by the tests),
//!    and `target/nvrtc/` in the source tree this crate was built from.
//! 3. The system: the dynamic loader's own search (`LD_LIBRARY_PATH`, the linker cache) and
//!    `/usr/local/cuda/lib64`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The file names tried in each folder, newest first.
pub const LIBRARY_NAMES: [&str; 3] = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

/// The environment variable naming the library or a folder that holds it.
pub const ENV_VAR: &str = "RECC_NVRTC";

/// Sub-folders of a search folder where the PyPI wheels put the library
/// (`nvidia-cuda-nvrtc` 13.x and the 12.x `-cu12` package).
const WHEEL_SUBDIRS: [&str; 4] = ["", "lib", "nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib"];

/// A GPU architecture to compile for, as a compute capability (8.0 is `compute_80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arch {
    pub major: u32,
    pub minor: u32,
}

impl Arch {
    /// Ampere (A100).
    pub const SM80: Arch = Arch { major: 8, minor: 0 };
    /// Hopper (H100, H200).
    pub const SM90: Arch = Arch { major: 9, minor: 0 };

    /// The NVRTC option that asks for PTX of this architecture. A virtual architecture
    /// (`compute_XY`) is used because NVRTC returns PTX only for those; the PTX says
    /// `.target sm_XY` and the driver finishes it for the device at load time.
    pub fn option(self) -> String {
        format!("--gpu-architecture=compute_{}{}", self.major, self.minor)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm_{}{}", self.major, self.minor)
    }
}

/// What went wrong finding, loading or using NVRTC.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NvrtcError {
    #[error(
        "NVRTC not found: looked for {} in {} (and in a folder's lib/, nvidia/cu13/lib/ and \
         nvidia/cuda_nvrtc/lib/); set RECC_NVRTC to the library or its folder",
        LIBRARY_NAMES.join(", "),
        .looked.join(", ")
    )]
    NotFound { looked: Vec<String> },
    #[error("NVRTC at {path} could not be loaded: {reason}")]
    Load { path: String, reason: String },
    #[error("the CUDA source contains a NUL byte at offset {offset}")]
    NulInSource { offset: usize },
    #[error("NVRTC {call} failed: {message}")]
    Call { call: &'static str, message: String },
    #[error("NVRTC could not compile {name} for {arch}:\n{log}")]
    Compile {
        name: String,
        arch: Arch,
        log: String,
    },
}

type NvrtcResult = c_int;
type Program = *mut c_void;

type GetErrorString = unsafe extern "C" fn(NvrtcResult) -> *const c_char;
type Version = unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult;
type CreateProgram = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> NvrtcResult;
type CompileProgram = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> NvrtcResult;
type GetSize = unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult;
type GetText = unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult;
type DestroyProgram = unsafe extern "C" fn(*mut Program) -> NvrtcResult;

/// NVRTC's success code.
const NVRTC_SUCCESS: NvrtcResult = 0;

/// The loaded NVRTC library and the entry points recc uses.
pub struct Nvrtc {
    path: PathBuf,
    get_error_string: GetErrorString,
    version: Version,
    create_program: CreateProgram,
    compile_program: CompileProgram,
    get_ptx_size: GetSize,
    get_ptx: GetText,
    get_log_size: GetSize,
    get_log: GetText,
    destroy_program: DestroyProgram,
    // Kept last so the function pointers above never outlive the library they point into.
    _library: libloading::Library,
}

impl fmt::Debug for Nvrtc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nvrtc").field("path", &self.path).finish()
    }
}

/// PTX text NVRTC produced for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ptx {
    pub arch: Arch,
    pub text: String,
    /// Warnings NVRTC printed while compiling (empty when there were none).
    pub log: String,
}

impl Nvrtc {
    /// Finds and loads NVRTC from the places listed in the module documentation.
    pub fn load() -> Result<Nvrtc, NvrtcError> {
        if let Some(value) = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
            let given = PathBuf::from(value);
            let place = format!("{ENV_VAR}={}", given.display());
            return load_first(vec![(place, candidates_in(&given))]);
        }
        let mut places: Vec<(String, Vec<PathBuf>)> = local_folders()
            .into_iter()
            .map(|folder| (folder.display().to_string(), candidates_in(&folder)))
            .collect();
        // Bare names: the dynamic loader searches LD_LIBRARY_PATH and its cache.
        let bare = LIBRARY_NAMES.iter().map(PathBuf::from).collect();
        places.push(("the system library path".to_string(), bare));
        let cuda = Path::new("/usr/local/cuda/lib64");
        let in_cuda = LIBRARY_NAMES.iter().map(|n| cuda.join(n)).collect();
        places.push((cuda.display().to_string(), in_cuda));
        load_first(places)
    }

    /// Loads NVRTC from exactly this file.
    pub fn load_from(path: &Path) -> Result<Nvrtc, NvrtcError> {
        let load_error = |reason: String| NvrtcError::Load {
            path: path.display().to_string(),
            reason,
        };
        // SAFETY: opening NVRTC runs only its own initialisers, which have no preconditions.
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|e| load_error(e.to_string()))?;
        macro_rules! symbol {
            ($name:literal, $ty:ty) => {{
                // SAFETY: the type is NVRTC's documented C signature for this symbol.
                let symbol: libloading::Symbol<$ty> =
                    unsafe { library.get(concat!($name, "\0").as_bytes()) }
                        .map_err(|e| load_error(format!("missing {}: {e}", $name)))?;
                *symbol
            }};
        }
        let nvrtc = Nvrtc {
            path: path.to_path_buf(),
            get_error_string: symbol!("nvrtcGetErrorString", GetErrorString),
            version: symbol!("nvrtcVersion", Version),
            create_program: symbol!("nvrtcCreateProgram", CreateProgram),
            compile_program: symbol!("nvrtcCompileProgram", CompileProgram),
            get_ptx_size: symbol!("nvrtcGetPTXSize", GetSize),
            get_ptx: symbol!("nvrtcGetPTX", GetText),
            get_log_size: symbol!("nvrtcGetProgramLogSize", GetSize),
            get_log: symbol!("nvrtcGetProgramLog", GetText),
            destroy_program: symbol!("nvrtcDestroyProgram", DestroyProgram),
            _library: library,
        };
        Ok(nvrtc)
    }

    /// The file the library was loaded from (a bare name when the system loader found it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// NVRTC's version, as (major, minor).
    pub fn version(&self) -> Result<(i32, i32), NvrtcError> {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: both pointers are valid for writes.
        let code = unsafe { (self.version)(&mut major, &mut minor) };
        self.check("nvrtcVersion", code)?;
        Ok((major, minor))
    }

    /// Compiles CUDA C++ `source` (named `name` in messages) to PTX for `arch`.
    /// A compile error carries NVRTC's log, which names the line and the problem.
    pub fn compile_ptx(&self, source: &str, name: &str, arch: Arch) -> Result<Ptx, NvrtcError> {
        let source_c = CString::new(source).map_err(|e| NvrtcError::NulInSource {
            offset: e.nul_position(),
        })?;
        // A NUL in the name is the caller's slip, not the user's: drop it rather than fail.
        let name_c = CString::new(name.replace('\0', "")).unwrap_or_default();
        let options: Vec<CString> = [arch.option(), "--std=c++17".to_string()]
            .into_iter()
            .filter_map(|o| CString::new(o).ok())
            .collect();
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();

        let mut program: Program = std::ptr::null_mut();
        // SAFETY: the strings are NUL-terminated and outlive the call; no headers are passed.
        let code = unsafe {
            (self.create_program)(
                &mut program,
                source_c.as_ptr(),
                name_c.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        self.check("nvrtcCreateProgram", code)?;
        let program = ProgramGuard {
            nvrtc: self,
            program,
        };

        // SAFETY: the program is live; the option pointers are valid for the call.
        let code = unsafe {
            (self.compile_program)(
                program.program,
                option_ptrs.len() as c_int,
                option_ptrs.as_ptr(),
            )
        };
        let log = self.log(program.program)?;
        if code != NVRTC_SUCCESS {
            let log = if log.trim().is_empty() {
                self.message(code)
            } else {
                log
            };
            return Err(NvrtcError::Compile {
                name: name.to_string(),
                arch,
                log,
            });
        }
        let text = self.text(
            program.program,
            ("nvrtcGetPTXSize", self.get_ptx_size),
            ("nvrtcGetPTX", self.get_ptx),
        )?;
        Ok(Ptx { arch, text, log })
    }

    fn log(&self, program: Program) -> Result<String, NvrtcError> {
        self.text(
            program,
            ("nvrtcGetProgramLogSize", self.get_log_size),
            ("nvrtcGetProgramLog", self.get_log),
        )
    }

    /// Reads a NUL-terminated text out of the program with its size and copy calls.
    fn text(
        &self,
        program: Program,
        (size_call, size): (&'static str, GetSize),
        (text_call, text): (&'static str, GetText),
    ) -> Result<String, NvrtcError> {
        let mut len = 0usize;
        // SAFETY: the program is live and `len` is valid for writes.
        let code = unsafe { size(program, &mut len) };
        self.check(size_call, code)?;
        // The size counts the terminating NUL; keep one byte even when NVRTC says 0.
        let mut buffer = vec![0u8; len.max(1)];
        // SAFETY: the buffer holds the `len` bytes NVRTC said it will write.
        let code = unsafe { text(program, buffer.as_mut_ptr().cast()) };
        self.check(text_call, code)?;
        let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
        buffer.truncate(end);
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }

    fn check(&self, call: &'static str, code: NvrtcResult) -> Result<(), NvrtcError> {
        if code == NVRTC_SUCCESS {
            Ok(())
        } else {
            Err(NvrtcError::Call {
                call,
                message: self.message(code),
            })
        }
    }

    fn message(&self, code: NvrtcResult) -> String {
        // SAFETY: nvrtcGetErrorString accepts any code and returns a static string or null.
        let text = unsafe { (self.get_error_string)(code) };
        if text.is_null() {
            format!("error code {code}")
        } else {
            // SAFETY: non-null results are static NUL-terminated strings.
            let message = unsafe { CStr::from_ptr(text) }.to_string_lossy();
            format!("{message} (code {code})")
        }
    }
}

/// Destroys the program however compilation ends.
struct ProgramGuard<'a> {
    nvrtc: &'a Nvrtc,
    program: Program,
}

impl Drop for ProgramGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the program was created by nvrtcCreateProgram and is destroyed once.
        unsafe {
            (self.nvrtc.destroy_program)(&mut self.program);
        }
    }
}

/// The process's NVRTC, found and loaded once; the outcome (library or reason) is kept.
pub fn shared() -> Result<&'static Nvrtc, NvrtcError> {
    static SHARED: OnceLock<Result<Nvrtc, NvrtcError>> = OnceLock::new();
    SHARED
        .get_or_init(Nvrtc::load)
        .as_ref()
        .map_err(Clone::clone)
}

/// Compiles `source` to PTX for `arch` with the process's NVRTC.
pub fn compile_ptx(source: &str, name: &str, arch: Arch) -> Result<Ptx, NvrtcError> {
    shared()?.compile_ptx(source, name, arch)
}

/// The files to try for a given file or folder: the file itself, or each library name in the
/// folder and in the places the PyPI wheels put it.
fn candidates_in(given: &Path) -> Vec<PathBuf> {
    if given.is_file() {
        return vec![given.to_path_buf()];
    }
    WHEEL_SUBDIRS
        .iter()
        .flat_map(|sub| {
            let folder = if sub.is_empty() {
                given.to_path_buf()
            } else {
                given.join(sub)
            };
            LIBRARY_NAMES.iter().map(move |name| folder.join(name))
        })
        .collect()
}

/// `nvrtc/` folders recc installs for itself: beside the running program's folders
/// (`target/debug/recc` and `target/debug/deps/<test>` both reach `target/nvrtc`) and in the
/// source tree's `target/`.
fn local_folders() -> Vec<PathBuf> {
    let mut folders = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for ancestor in exe.ancestors().skip(1).take(3) {
            folders.push(ancestor.join("nvrtc"));
        }
    }
    if let Some(workspace) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        folders.push(workspace.join("target/nvrtc"));
    }
    let mut unique = Vec::new();
    for folder in folders {
        if !unique.contains(&folder) {
            unique.push(folder);
        }
    }
    unique
}

/// Loads the first candidate that exists, trying each place's files in order; the error lists
/// every place looked.
fn load_first(places: Vec<(String, Vec<PathBuf>)>) -> Result<Nvrtc, NvrtcError> {
    let mut looked = Vec::new();
    for (place, candidates) in places {
        for candidate in candidates {
            let bare = candidate.components().count() == 1;
            if !bare && !candidate.is_file() {
                continue;
            }
            match Nvrtc::load_from(&candidate) {
                Ok(nvrtc) => return Ok(nvrtc),
                // A file that is there but does not load is worth saying so, not skipping.
                Err(error) if !bare => return Err(error),
                Err(_) => {}
            }
        }
        looked.push(place);
    }
    Err(NvrtcError::NotFound { looked })
}
