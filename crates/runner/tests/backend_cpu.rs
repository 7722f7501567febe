//! Backend selection on the default (CPU-only) binary: a GPU backend that is not compiled in is
//! a one-line error, and the memory workload's device columns are empty on CPU backends.

mod common;

use std::process::Command;

const MEMORY: &str = r#"
[experiment]
name = "mem"
question = "Are the device columns there and empty on the CPU?"
model = "seed-toy"

[sweep]
strategy = ["concat"]
batch = [1]
context = [4]

[workload.memory]
"#;

#[test]
fn gpu_backends_missing_from_this_build_are_one_line_errors() {
    for (backend, feature) in [("cuda", "cuda"), ("wgpu", "wgpu")] {
        if (feature == "cuda" && cfg!(feature = "cuda"))
            || (feature == "wgpu" && cfg!(feature = "wgpu"))
        {
            continue;
        }
        let dir = common::tempdir();
        let toml = dir.path().join("mem.toml");
        std::fs::write(&toml, MEMORY).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["--backend", backend, toml.to_str().unwrap(), "--out"])
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("--features {feature}")), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn device_columns_are_empty_on_cpu_backends() {
    for backend in ["flex", "ndarray"] {
        let dir = common::tempdir();
        let toml = dir.path().join("mem.toml");
        std::fs::write(&toml, MEMORY).unwrap();
        let out_dir = dir.path().join("out");
        let out = Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["--backend", backend, "--quiet", toml.to_str().unwrap(), "--out"])
            .arg(&out_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let csv = std::fs::read_to_string(out_dir.join("mem/memory.csv")).unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        assert_eq!(row[col("device_bytes_in_use")], "", "{backend}");
        assert_eq!(row[col("device_bytes_reserved")], "", "{backend}");
        assert!(row[col("process_peak_bytes")].parse::<u64>().unwrap() > 0, "{backend}");
    }
}
