//! Builds the eBPF object with aya-build, using Debian's toolchain at /usr: the only compiler
//! on our build hosts whose core sources match it (../shared/reference/ebpf-toolchain.md).
//! `AYA_BUILD_SKIP=1` skips it (clippy, doc): the object is then empty, and an agent built so
//! refuses to start (`ProbeError::NoObject`).
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let toolchain = std::env::var("PEREGRINE_EBPF_TOOLCHAIN").unwrap_or_else(|_| "/usr".into());
    println!("cargo:rerun-if-env-changed=PEREGRINE_EBPF_TOOLCHAIN");
    // aya-build returns at once under AYA_BUILD_SKIP without writing the object, which
    // `probes::OBJECT` includes: leave an empty one so that lints and docs still compile.
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
        std::fs::write(out.join("peregrine"), b"").context("writing the empty eBPF object")?;
        return Ok(());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("node-agent has no parent directory"))?
        .join("node-agent-ebpf");
    let root = root.to_str().context("non-UTF-8 path to node-agent-ebpf")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "node-agent-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
