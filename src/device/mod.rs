//! The one place that knows about backends: which devices this build has (cargo features),
//! which one a run uses (`--device`), and in which precision (`--dtype`).
//!
//! `cpu` is Burn's flex backend (pure Rust), `gpu` is wgpu (Vulkan, Metal, DX12), `cuda` is
//! Burn's native NVIDIA backend (kernels compiled through LLVM to PTX; it needs only the
//! driver and CUDA's `libdevice.10.bc`, which `device/cuda.rs` looks for), and the optional
//! `ndarray` is Burn's older CPU backend. Model and training code never see a feature: they get
//! a `burn::tensor::Device`. The process environment the backends need is set in one place
//! (`set_environment`). Deliberately left out: multi-GPU.

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

#[cfg(feature = "cuda")]
mod cuda;

/// What the program knows of each backend, in one table: its cargo feature, Burn's name for it
/// (what `BURN_DEVICE` takes), and what a build without it says.
struct BackendInfo {
    kind: DeviceArg,
    feature: &'static str,
    burn_name: &'static str,
    missing: &'static str,
}

const BACKENDS: [BackendInfo; 4] = [
    BackendInfo { kind: DeviceArg::Cpu, feature: "cpu", burn_name: "flex", missing: "this build has no CPU backend" },
    BackendInfo { kind: DeviceArg::Gpu, feature: "gpu", burn_name: "wgpu", missing: "this build has no GPU support" },
    BackendInfo {
        kind: DeviceArg::Cuda,
        feature: "cuda",
        burn_name: "cuda",
        missing: "this build has no CUDA support",
    },
    BackendInfo {
        kind: DeviceArg::Ndarray,
        feature: "ndarray",
        burn_name: "ndarray",
        missing: "this build has no ndarray backend",
    },
];

impl DeviceArg {
    fn backend(self) -> &'static BackendInfo {
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
    /// A GPT-2's weight matrices held in bf16 (half the bytes to read and to hold), every sum in
    /// f32: for sampling and evaluating on the CPU.
    Bf16,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
            Precision::Bf16 => "bf16",
        })
    }
}

impl Precision {
    fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 | Precision::Bf16 => FloatDType::F32, // bf16 holds weights; sums are f32
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
pub fn cores(kind: DeviceArg) -> usize {
    match kind {
        DeviceArg::Gpu | DeviceArg::Cuda => 1,
        DeviceArg::Cpu | DeviceArg::Ndarray => rayon::current_num_threads(),
    }
}

/// Open the requested device in the requested precision, or say in one line why not.
pub fn open(kind: Option<DeviceArg>, precision: Option<Precision>) -> Result<Runtime> {
    // bf16 is the CPU's (its products read it), so it opens the CPU unless told otherwise
    let kind =
        kind.unwrap_or_else(|| if precision == Some(Precision::Bf16) { DeviceArg::Cpu } else { default_device() });
    let precision = precision.unwrap_or_else(|| default_precision(kind));
    if is_gpu(kind) && precision == Precision::F64 {
        bail!("the GPU computes in f32 only: drop --dtype f64, or use --device cpu");
    }
    if precision == Precision::Bf16 && kind != DeviceArg::Cpu {
        bail!(
            "--dtype bf16 holds a GPT-2's weights for the CPU's own products: use --device cpu, or drop --dtype bf16"
        );
    }
    let cuda_path = match kind {
        DeviceArg::Cuda => Some(cuda_probe()?),
        _ => None,
    };
    set_environment(kind, cuda_path);
    let mut device = match kind {
        DeviceArg::Cpu => cpu_device()?,
        DeviceArg::Gpu => gpu_device()?,
        DeviceArg::Cuda => cuda_device()?,
        DeviceArg::Ndarray => ndarray_device()?,
    };
    set_precision(&mut device, precision)?;
    Ok(Runtime { device, kind, precision })
}

/// The process environment the backends read, set here only, before the device of `kind`
/// exists (so before that backend's threads start):
/// - `BURN_DEVICE`, Burn's own switch for `Device::default()`, to the first device opened, once:
///   Burn materializes loaded optimizer state on the default device (burn-optim 0.22,
///   `ModuleOptimizer::load_record`), which in a build with several backends would be the GPU,
///   in f32, even for a CPU run in f64;
/// - `XDG_RUNTIME_DIR`, for a GPU, to the temp directory when the user has none: opening the GPU
///   probes Vulkan, and Mesa prints "XDG_RUNTIME_DIR is invalid or not set" four times on
///   headless machines (the directory is not used for computing);
/// - `CUDA_PATH`, for CUDA, to the folder holding CUDA's `libdevice.10.bc` (`cuda_path`), which
///   the CUDA backend reads to compile kernels that take an exp or a log.
fn set_environment(kind: DeviceArg, cuda_path: Option<std::path::PathBuf>) {
    static BURN_DEVICE: std::sync::Once = std::sync::Once::new();
    let mut vars = Vec::new();
    BURN_DEVICE.call_once(|| vars.push(("BURN_DEVICE", std::ffi::OsString::from(kind.backend().burn_name))));
    if kind == DeviceArg::Gpu && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        vars.push(("XDG_RUNTIME_DIR", std::env::temp_dir().into_os_string()));
    }
    if let Some(root) = cuda_path {
        vars.push(("CUDA_PATH", root.into_os_string()));
    }
    for (name, value) in vars {
        if std::env::var_os(name).as_ref() != Some(&value) {
            // SAFETY: called from the thread that opens the device, before that device exists
            // and before its backend's threads start, which are the ones that read these.
            unsafe { std::env::set_var(name, value) };
        }
    }
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

#[cfg(feature = "gpu")]
fn gpu_device() -> Result<Device> {
    use burn::tensor::wgpu::WgpuBackend;
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

/// The CUDA device; [`cuda_probe`] has found what it needs.
#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    Err(not_built(DeviceArg::Cuda))
}

/// The folder holding CUDA's math library, once the driver sees a device: Burn's CUDA backend
/// panics at its first tensor operation without them, so they are looked for first.
#[cfg(feature = "cuda")]
fn cuda_probe() -> Result<std::path::PathBuf> {
    cuda::probe()
}

#[cfg(not(feature = "cuda"))]
fn cuda_probe() -> Result<std::path::PathBuf> {
    Err(not_built(DeviceArg::Cuda))
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
        let manifest = include_str!("../../Cargo.toml");
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
}
