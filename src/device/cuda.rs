//! Whether CUDA can run here, before Burn's CUDA backend starts (it panics at its first tensor
//! operation without a driver, a device, or CUDA's math library): the NVIDIA driver opened and
//! its devices counted, and `libdevice.10.bc` found in a CUDA toolkit or a pip wheel (triton's,
//! or nvidia-cuda-nvcc's). Each missing piece is one line saying what to install.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The folder to give the CUDA backend as `CUDA_PATH`, once the driver sees a device and
/// libdevice is found; else why CUDA cannot run, in one line.
pub fn probe() -> Result<PathBuf> {
    driver_has_a_device()?;
    libdevice_root(&python_site_packages()).ok_or_else(|| {
        anyhow::anyhow!(
            "CUDA's libdevice.10.bc (its math library, for exp and log) is not found: install the CUDA toolkit, or `pip install triton`, or set CUDA_PATH to a folder holding nvvm/libdevice/libdevice.10.bc"
        )
    })
}

/// Open the NVIDIA driver and count its devices, or say in one line what is missing.
fn driver_has_a_device() -> Result<()> {
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
fn find_libdevice(cuda_path: Option<PathBuf>, roots: &[PathBuf], site_packages: &[PathBuf]) -> Option<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// libdevice.10.bc is found in a pip wheel when there is no toolkit: triton's copy, set out
    /// in the toolkit's layout the CUDA backend reads, and nvidia-cuda-nvcc's in place.
    #[test]
    fn libdevice_is_found_in_python_wheels() {
        let site = tempfile::tempdir().unwrap();
        let find = |cuda_path: Option<&std::path::Path>| {
            find_libdevice(cuda_path.map(Into::into), &[], &[site.path().to_path_buf()])
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
