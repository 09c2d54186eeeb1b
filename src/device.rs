//! The one place that knows about backends: which devices this build has (cargo features),
//! which one a run uses (`--device`), and in which precision (`--dtype`).
//!
//! `cpu` is Burn's flex backend (pure Rust), `gpu` is wgpu (Vulkan, Metal, DX12), `cuda` is
//! Burn's native NVIDIA backend (kernels compiled through LLVM to PTX; it needs only the
//! driver and CUDA's `libdevice.10.bc`, found here or explained in one line), and the optional
//! `ndarray` is Burn's older CPU backend. Model and training code never see a feature: they get
//! a `burn::tensor::Device`. Deliberately left out: multi-GPU.

use anyhow::{Result, bail};
use burn::tensor::{Device, FloatDType, Tensor};

/// Where to run, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// Burn's flex CPU backend (feature `cpu`).
    Cpu,
    /// A GPU through wgpu (feature `gpu`).
    Gpu,
    /// An NVIDIA GPU through Burn's CUDA backend (feature `cuda`).
    Cuda,
    /// Burn's ndarray CPU backend (feature `ndarray`).
    Ndarray,
}

/// What the program knows of each backend, in one table: its cargo feature, Burn's name for it
/// (what `BURN_DEVICE` takes), and what a build without it says.
struct Backend {
    kind: DeviceArg,
    feature: &'static str,
    burn_name: &'static str,
    missing: &'static str,
}

const BACKENDS: [Backend; 4] = [
    Backend { kind: DeviceArg::Cpu, feature: "cpu", burn_name: "flex", missing: "this build has no CPU backend" },
    Backend { kind: DeviceArg::Gpu, feature: "gpu", burn_name: "wgpu", missing: "this build has no GPU support" },
    Backend { kind: DeviceArg::Cuda, feature: "cuda", burn_name: "cuda", missing: "this build has no CUDA support" },
    Backend {
        kind: DeviceArg::Ndarray,
        feature: "ndarray",
        burn_name: "ndarray",
        missing: "this build has no ndarray backend",
    },
];

impl DeviceArg {
    fn backend(self) -> &'static Backend {
        BACKENDS.iter().find(|b| b.kind == self).expect("BACKENDS has a row for every DeviceArg")
    }

    /// The cargo feature that builds this backend.
    pub fn feature(self) -> &'static str {
        self.backend().feature
    }
}

/// Floating-point precision of weights and activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Precision {
    /// 32-bit floats: the GPU's, and faster on the CPU.
    F32,
    /// 64-bit floats: the reference's.
    F64,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        })
    }
}

impl Precision {
    fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F64 => FloatDType::F64,
        }
    }
}

/// A device ready for tensors, with what it is.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// The device without autodiff; training calls `.autodiff()` on it.
    pub device: Device,
    /// Which backend.
    pub kind: DeviceArg,
    /// Which float type.
    pub precision: Precision,
}

/// The device used when `--device` is not given: the GPU when the build has one (wgpu before
/// CUDA, when it has both).
pub fn default_device() -> DeviceArg {
    if cfg!(feature = "gpu") {
        DeviceArg::Gpu
    } else if cfg!(feature = "cuda") {
        DeviceArg::Cuda
    } else if cfg!(feature = "cpu") {
        DeviceArg::Cpu
    } else {
        DeviceArg::Ndarray
    }
}

/// The default precision on a device: f64 on CPUs (to follow the f64 reference), f32 on GPUs.
pub fn default_precision(kind: DeviceArg) -> Precision {
    match kind {
        DeviceArg::Gpu | DeviceArg::Cuda => Precision::F32,
        DeviceArg::Cpu | DeviceArg::Ndarray => Precision::F64,
    }
}

/// Whether `kind` is a GPU: it runs kernels asynchronously, fused, and pays per launch.
pub fn is_gpu(kind: DeviceArg) -> bool {
    matches!(kind, DeviceArg::Gpu | DeviceArg::Cuda)
}

/// How many steps' losses to read back at once by default: every step on CPUs, where the value
/// is already on the host; in batches of 100 on the GPU, where each read waits for the device.
pub fn default_sync_every(kind: DeviceArg) -> usize {
    match kind {
        DeviceArg::Gpu | DeviceArg::Cuda => 100,
        DeviceArg::Cpu | DeviceArg::Ndarray => 1,
    }
}

/// How many parts a training step's batch is cut into, each trained on its own core at the
/// same time: one per thread of the CPU's pool (`RAYON_NUM_THREADS`, else every core); one on a
/// GPU, which wants the whole batch in each kernel.
pub fn batch_parts(kind: DeviceArg) -> usize {
    match kind {
        DeviceArg::Gpu | DeviceArg::Cuda => 1,
        DeviceArg::Cpu | DeviceArg::Ndarray => rayon::current_num_threads(),
    }
}

/// Open the requested device in the requested precision, or say in one line why not.
pub fn open(kind: Option<DeviceArg>, precision: Option<Precision>) -> Result<Runtime> {
    let kind = kind.unwrap_or_else(default_device);
    let precision = precision.unwrap_or_else(|| default_precision(kind));
    let device = match kind {
        DeviceArg::Cpu => cpu_device()?,
        DeviceArg::Gpu | DeviceArg::Cuda => {
            if precision == Precision::F64 {
                bail!("the GPU computes in f32 only: drop --dtype f64, or use --device cpu");
            }
            if kind == DeviceArg::Gpu { gpu_device()? } else { cuda_device()? }
        }
        DeviceArg::Ndarray => ndarray_device()?,
    };
    let mut device = device;
    set_precision(&mut device, precision)?;
    make_default(kind);
    Ok(Runtime { device, kind, precision })
}

/// Make `kind` Burn's default device too. Burn materializes loaded optimizer state on
/// `Device::default()` (burn-optim 0.22, `ModuleOptimizer::load_record`), which in a build with
/// several backends would be the GPU, in f32, even for a CPU run in f64. `BURN_DEVICE` is
/// Burn's own switch for that default; it is set once, before any computation.
fn make_default(kind: DeviceArg) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let name = kind.backend().burn_name;
    ONCE.call_once(|| {
        if std::env::var("BURN_DEVICE").as_deref() != Ok(name) {
            // SAFETY: called once, from the thread that opens the device, before the training
            // and sampling code reads the environment.
            unsafe { std::env::set_var("BURN_DEVICE", name) };
        }
    });
}

/// Set the default float type of `device`, once per process; a second call must agree.
fn set_precision(device: &mut Device, precision: Precision) -> Result<()> {
    let wanted = precision.float_dtype();
    if device.configure(wanted).is_err() {
        let current = device.settings().float_dtype;
        if current != wanted {
            bail!("this process already uses the device in {current:?}; it cannot switch to {precision:?}");
        }
    }
    Ok(())
}

/// The error for a device whose cargo feature this build lacks.
// with every backend built, only the tests call it
#[cfg_attr(all(feature = "cpu", feature = "gpu", feature = "cuda", feature = "ndarray"), allow(dead_code))]
fn not_built(kind: DeviceArg) -> anyhow::Error {
    let backend = kind.backend();
    let instead = if kind == DeviceArg::Cpu { "" } else { ", or use --device cpu" };
    anyhow::anyhow!("{}: rebuild with `cargo run --release --features {}`{instead}", backend.missing, backend.feature)
}

#[cfg(feature = "cpu")]
fn cpu_device() -> Result<Device> {
    Ok(Device::flex())
}

#[cfg(not(feature = "cpu"))]
fn cpu_device() -> Result<Device> {
    Err(not_built(DeviceArg::Cpu))
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)] // ndarray is deprecated in Burn 0.22; it stays here for comparison
fn ndarray_device() -> Result<Device> {
    Ok(Device::ndarray())
}

#[cfg(not(feature = "ndarray"))]
fn ndarray_device() -> Result<Device> {
    Err(not_built(DeviceArg::Ndarray))
}

/// Opening the GPU probes Vulkan, and Mesa prints "XDG_RUNTIME_DIR is invalid or not set"
/// four times on headless machines. The directory is not used for computing; point it at the
/// temp dir when it is unset.
#[cfg(feature = "gpu")]
fn quiet_vulkan_loader() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            // SAFETY: called once, before the GPU exists and before its threads start.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
        }
    });
}

#[cfg(feature = "gpu")]
fn gpu_device() -> Result<Device> {
    use burn::tensor::wgpu::WgpuBackend;
    quiet_vulkan_loader();
    // On Linux only Vulkan: wgpu's OpenGL fallback lacks the float atomics Burn's reductions
    // need, and would fail mid-run instead of saying up front that there is no usable GPU.
    let api = if cfg!(target_os = "linux") { WgpuBackend::Vulkan } else { WgpuBackend::Auto };
    Device::wgpu_options().graphics_api(api).init().map_err(|err| {
        anyhow::anyhow!(
            "no GPU adapter found ({}): install Vulkan drivers (Debian: libvulkan1 mesa-vulkan-drivers), or run on the CPU with --device cpu",
            err.to_string().lines().next().unwrap_or("unknown error")
        )
    })
}

#[cfg(not(feature = "gpu"))]
fn gpu_device() -> Result<Device> {
    Err(not_built(DeviceArg::Gpu))
}

/// The CUDA device, once the driver and a device are known to be there: Burn's CUDA backend
/// panics at its first tensor operation without them, so they are looked for first, and so is
/// `libdevice.10.bc`, which its kernels for exp and log need.
#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    cuda_driver_has_a_device()?;
    let root = cuda::libdevice_root(&cuda::python_site_packages()).ok_or_else(|| {
        anyhow::anyhow!(
            "CUDA's libdevice.10.bc (its math library, for exp and log) is not found: install the CUDA toolkit, or `pip install triton`, or set CUDA_PATH to a folder holding nvvm/libdevice/libdevice.10.bc"
        )
    })?;
    if std::env::var_os("CUDA_PATH").as_deref() != Some(root.as_os_str()) {
        // SAFETY: called once, before the CUDA device exists and before its threads start.
        unsafe { std::env::set_var("CUDA_PATH", &root) };
    }
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    Err(not_built(DeviceArg::Cuda))
}

/// Open the NVIDIA driver and count its devices, or say in one line what is missing.
#[cfg(feature = "cuda")]
fn cuda_driver_has_a_device() -> Result<()> {
    const CUDA_ERROR_NO_DEVICE: i32 = 100;
    let name = if cfg!(windows) { "nvcuda.dll" } else { "libcuda.so.1" };
    // SAFETY: the NVIDIA driver library runs no code on load that could break this process.
    let lib = unsafe { libloading::Library::new(name) }.map_err(|_| {
        anyhow::anyhow!(
            "no NVIDIA driver: {name} is not found: install the NVIDIA driver, or use --device gpu or --device cpu"
        )
    })?;
    type CuInit = unsafe extern "C" fn(u32) -> i32;
    type CuDeviceGetCount = unsafe extern "C" fn(*mut i32) -> i32;
    // SAFETY: both symbols have these signatures in every CUDA driver (cuda.h).
    let count = unsafe {
        let init: libloading::Symbol<CuInit> = lib.get(b"cuInit\0")?;
        let get_count: libloading::Symbol<CuDeviceGetCount> = lib.get(b"cuDeviceGetCount\0")?;
        match init(0) {
            0 => {
                let mut count = 0;
                if get_count(&mut count) == 0 { count } else { 0 }
            }
            CUDA_ERROR_NO_DEVICE => 0,
            code => {
                bail!("the NVIDIA driver did not start (CUDA error {code}): check `nvidia-smi`, or use --device cpu")
            }
        }
    };
    if count == 0 {
        bail!("no CUDA device found: the NVIDIA driver sees no GPU (check `nvidia-smi`), or use --device cpu");
    }
    std::mem::forget(lib); // the backend opens the driver again; keep it loaded
    Ok(())
}

/// Where CUDA's math library is, for the CUDA backend: the toolkit, or a Python wheel.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod cuda {
    use std::path::{Path, PathBuf};

    const LIBDEVICE: &str = "libdevice.10.bc";
    /// Where a toolkit is looked for, in Burn's (cubecl-llvm's) order, after `CUDA_PATH`.
    const CUDA_ROOTS: [&str; 4] = ["/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda", "/usr"];

    /// A folder whose `nvvm/libdevice/` holds libdevice.10.bc, as the CUDA backend reads it:
    /// `CUDA_PATH`, a toolkit, or a wheel in one of `site_packages` (`nvidia-cuda-nvcc`'s
    /// toolkit layout; triton's copy, set out in that layout in the temp directory).
    pub fn libdevice_root(site_packages: &[PathBuf]) -> Option<PathBuf> {
        let cuda_path = std::env::var_os("CUDA_PATH").map(PathBuf::from);
        let roots: Vec<PathBuf> = CUDA_ROOTS.iter().map(PathBuf::from).collect();
        find_libdevice(cuda_path, &roots, site_packages)
    }

    /// [`libdevice_root`] with its places given.
    pub(super) fn find_libdevice(
        cuda_path: Option<PathBuf>,
        roots: &[PathBuf],
        site_packages: &[PathBuf],
    ) -> Option<PathBuf> {
        let holds = |root: &Path| root.join("nvvm/libdevice").join(LIBDEVICE).is_file();
        if let Some(path) = cuda_path {
            // the backend reads CUDA_PATH alone when it is set
            return holds(&path).then_some(path);
        }
        if let Some(root) = roots.iter().find(|r| holds(r)) {
            return Some(root.clone());
        }
        for dir in site_packages {
            let nvcc = dir.join("nvidia/cuda_nvcc");
            if holds(&nvcc) {
                return Some(nvcc);
            }
            let triton = dir.join("triton/backends/nvidia/lib").join(LIBDEVICE);
            if let Some(root) = triton.is_file().then(|| in_toolkit_layout(&triton)).flatten() {
                return Some(root);
            }
        }
        None
    }

    /// A copy of `file` at `<temp>/microgpt-libdevice-<size>/nvvm/libdevice/libdevice.10.bc`
    /// (made once): that folder.
    fn in_toolkit_layout(file: &Path) -> Option<PathBuf> {
        let size = std::fs::metadata(file).ok()?.len();
        let root = std::env::temp_dir().join(format!("microgpt-libdevice-{size}"));
        let copy = root.join("nvvm/libdevice").join(LIBDEVICE);
        if std::fs::metadata(&copy).map(|m| m.len()).ok() != Some(size) {
            std::fs::create_dir_all(copy.parent()?).ok()?;
            let partial = copy.with_extension(format!("{}.tmp", std::process::id()));
            std::fs::copy(file, &partial).ok()?;
            std::fs::rename(&partial, &copy).ok()?;
        }
        Some(root)
    }

    /// The site-packages folders of `python3` (or `python` on Windows), where pip puts wheels;
    /// none when there is no Python.
    pub fn python_site_packages() -> Vec<PathBuf> {
        let script = "import site, sys; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))";
        ["python3", "python"]
            .iter()
            .find_map(|python| std::process::Command::new(python).args(["-c", script]).output().ok())
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect())
            .unwrap_or_default()
    }
}

/// Read a tensor's values back to the host as f64. Reading waits for the device; a computation
/// that failed there becomes a one-line error instead of a panic.
pub fn read_values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f64>> {
    let data = tensor.try_into_data().map_err(|err| {
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        anyhow::anyhow!("the device failed to compute: {}", lines.join(": "))
    })?;
    Ok(data.iter::<f64>().collect())
}

/// Read a one-element tensor (a loss) back to the host.
pub fn read_scalar(tensor: Tensor<1>) -> Result<f64> {
    Ok(read_values(tensor)?[0])
}

/// The flex CPU device in f64, for tests.
#[cfg(feature = "cpu")]
pub fn cpu_f64() -> Device {
    open(Some(DeviceArg::Cpu), Some(Precision::F64))
        .expect("the flex CPU device opens in f64 whenever the cpu feature is on")
        .device
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every device names, in its rebuild hint, a feature that Cargo.toml defines and that
    /// turns on that backend of Burn.
    #[test]
    fn every_device_names_a_feature_of_cargo_toml() {
        let manifest = include_str!("../Cargo.toml");
        let features = &manifest[manifest.find("[features]").expect("Cargo.toml has [features]")..];
        for backend in &BACKENDS {
            let line = features
                .lines()
                .find(|l| l.starts_with(&format!("{} = ", backend.feature)))
                .unwrap_or_else(|| panic!("Cargo.toml has no feature {:?}", backend.feature));
            assert!(line.contains(&format!("burn/{}", backend.burn_name)), "{line}");
            let hint = not_built(backend.kind).to_string();
            assert!(hint.contains(&format!("--features {}`", backend.feature)), "{hint}");
        }
        assert!(not_built(DeviceArg::Gpu).to_string().ends_with("or use --device cpu"));
    }

    /// libdevice.10.bc is found in a pip wheel when there is no toolkit: triton's copy, set out
    /// in the toolkit's layout the CUDA backend reads, and nvidia-cuda-nvcc's in place.
    #[test]
    fn libdevice_is_found_in_python_wheels() {
        let site = tempfile::tempdir().unwrap();
        let find = |cuda_path: Option<&std::path::Path>| {
            cuda::find_libdevice(cuda_path.map(Into::into), &[], &[site.path().to_path_buf()])
        };
        assert_eq!(find(None), None);
        let triton = site.path().join("triton/backends/nvidia/lib");
        std::fs::create_dir_all(&triton).unwrap();
        std::fs::write(triton.join("libdevice.10.bc"), b"BC").unwrap();
        let root = find(None).unwrap();
        assert_eq!(std::fs::read(root.join("nvvm/libdevice/libdevice.10.bc")).unwrap(), b"BC");
        assert_eq!(find(Some(site.path())), None, "CUDA_PATH, when set, is the only place the backend reads");
        assert_eq!(find(Some(&root)), Some(root.clone()));
        let nvcc = site.path().join("nvidia/cuda_nvcc/nvvm/libdevice");
        std::fs::create_dir_all(&nvcc).unwrap();
        std::fs::write(nvcc.join("libdevice.10.bc"), b"BC").unwrap();
        assert_eq!(find(None), Some(site.path().join("nvidia/cuda_nvcc")));
    }
}
