//! The one place that knows which backends exist and how to start them.
//! Everything else takes a `Device` and does not care what it is.

/// The backends vitrine can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend (flex).
    Cpu,
    /// Burn's wgpu backend: Vulkan/Metal/DX12 natively, WebGPU in a browser.
    Wgpu,
}

impl BackendKind {
    /// Parses `cpu` or `wgpu`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(Self::Cpu),
            "wgpu" | "webgpu" => Some(Self::Wgpu),
            _ => None,
        }
    }

    /// The name users see.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
        }
    }
}

/// A device of `kind`, checked to work natively (a wgpu device needs an
/// adapter, which a machine without a GPU or Vulkan driver lacks).
#[cfg(not(target_arch = "wasm32"))]
pub fn device(kind: BackendKind) -> Result<burn::tensor::Device, String> {
    use burn::tensor::Device;
    match kind {
        #[cfg(feature = "cpu")]
        BackendKind::Cpu => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            // The runtime panics when no adapter exists; turn that into an error.
            let probe = std::panic::catch_unwind(|| {
                let device = Device::wgpu(Default::default());
                let t = burn::tensor::Tensor::<1>::ones([4], &device).sum();
                let _ = t.into_data();
                device
            });
            probe.map_err(|_| {
                "no wgpu adapter is available (natively this needs a GPU or a Vulkan driver such as \
                 Mesa's lavapipe: apt-get install mesa-vulkan-drivers)"
                    .to_string()
            })
        }
        #[allow(unreachable_patterns)]
        other => Err(format!("this build has no {} backend", other.name())),
    }
}

/// Milliseconds from an arbitrary origin, for timings (web-time:
/// `std::time::Instant` natively, `performance.now()` in a window or worker).
pub fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use web_time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

/// Keeps freed tensor buffers inside the process instead of handing them
/// back to the kernel.
///
/// glibc serves large allocations with fresh `mmap`s and returns them on
/// free, so every intermediate tensor of a forward or backward pass costs
/// page faults and zeroing (a large share of training time:
/// docs/training.md). Raising
/// the thresholds makes the allocator recycle those buffers. Native
/// glibc only; elsewhere this does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes allocator tunables; it is called before
        // the program's worker threads start.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 256 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
            mallopt(M_TOP_PAD, 64 << 20);
        }
    }
}
