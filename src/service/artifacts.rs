//! Artifacts leave the service only inside a zip encrypted with the field's conventional
//! password `infected` (ZipCrypto, which every unzip tool opens), so a dropped file never lands
//! on an analyst's disk as a live executable.
//!
//! The zip is written to a scratch file under `<data-dir>/tmp/`, which is unlinked at once and
//! streamed from its open handle: memory stays flat however large the artifacts are.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use zip::unstable::write::FileOptionsExt;
use zip::write::SimpleFileOptions;

use super::command::ArtifactName;

/// The password of every artifact zip.
pub const ZIP_PASSWORD: &[u8] = b"infected";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("analysis has no artifact `{name}`")]
    NotFound { name: String },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot write artifact zip: {0}")]
    Zip(#[from] zip::result::ZipError),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArtifactError + 'a {
    move |source| ArtifactError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The artifacts of `artifacts_dir` (all of them, or `only`), zipped with [`ZIP_PASSWORD`]
/// into an unlinked scratch file positioned at its start.
pub fn zip(
    artifacts_dir: &Path,
    only: Option<&ArtifactName>,
    scratch: &Path,
) -> Result<File, ArtifactError> {
    let names = match only {
        Some(name) => {
            if !is_regular(&artifacts_dir.join(name.as_str())) {
                return Err(ArtifactError::NotFound {
                    name: name.as_str().to_string(),
                });
            }
            vec![name.clone()]
        }
        None => list(artifacts_dir)?,
    };
    fs::create_dir_all(scratch).map_err(io_err("create", scratch))?;
    let path = scratch.join(format!("{}.zip", uuid::Uuid::new_v4()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    // Unlinked before anything is written: nothing is left behind whatever happens next.
    fs::remove_file(&path).map_err(io_err("unlink", &path))?;
    let mut writer = zip::ZipWriter::new(file);
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o600)
        .with_deprecated_encryption(ZIP_PASSWORD)?;
    for name in &names {
        let source = artifacts_dir.join(name.as_str());
        let mut input = File::open(&source).map_err(io_err("open", &source))?;
        writer.start_file(name.as_str(), options)?;
        io::copy(&mut input, &mut writer).map_err(io_err("read", &source))?;
    }
    let mut file = writer.finish()?;
    file.seek(SeekFrom::Start(0))
        .map_err(io_err("rewind", &path))?;
    Ok(file)
}

/// Every artifact of an analysis, by the names the report uses, sorted.
pub fn list(artifacts_dir: &Path) -> Result<Vec<ArtifactName>, ArtifactError> {
    let mut names = Vec::new();
    let dropped = artifacts_dir.join("dropped");
    match fs::read_dir(&dropped) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let name = format!("dropped/{}", entry.file_name().to_string_lossy());
                if let Some(name) = ArtifactName::parse(&name) {
                    if is_regular(&entry.path()) {
                        names.push(name);
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("read", &dropped)(e)),
    }
    for stream in ["stdout.bin", "stderr.bin", crate::netsim::PCAP_NAME] {
        if is_regular(&artifacts_dir.join(stream)) {
            names.extend(ArtifactName::parse(stream));
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(names)
}

/// A regular file itself, not a link to one.
fn is_regular(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample_dir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let art = tmp.path().join("artifacts");
        fs::create_dir_all(art.join("dropped")).unwrap();
        fs::write(art.join("dropped").join("b".repeat(64)), b"second").unwrap();
        fs::write(art.join("dropped").join("a".repeat(64)), b"first").unwrap();
        fs::write(art.join("dropped/not-a-hash"), b"ignored").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", art.join("dropped").join("c".repeat(64)))
            .unwrap();
        fs::write(art.join("stdout.bin"), b"out").unwrap();
        tmp
    }

    #[test]
    fn all_artifacts_zip_with_the_infected_password_and_nothing_else() {
        let tmp = sample_dir();
        let file = zip(&tmp.path().join("artifacts"), None, &tmp.path().join("tmp")).unwrap();
        let mut archive = zip::ZipArchive::new(file).unwrap();
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![
                format!("dropped/{}", "a".repeat(64)),
                format!("dropped/{}", "b".repeat(64)),
                "stdout.bin".to_string()
            ]
        );
        let mut text = String::new();
        archive
            .by_name_decrypt(&format!("dropped/{}", "a".repeat(64)), b"infected")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "first");
        // A wrong password passes ZipCrypto's one-byte check once in 256; reading then fails.
        let wrong = archive
            .by_name_decrypt("stdout.bin", b"wrong")
            .ok()
            .and_then(|mut f| {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes).ok().map(|_| bytes)
            });
        assert_eq!(wrong, None);
        assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn no_wrong_password_yields_the_content_even_past_the_one_byte_check() {
        let tmp = sample_dir();
        let file = zip(&tmp.path().join("artifacts"), None, &tmp.path().join("tmp")).unwrap();
        let mut archive = zip::ZipArchive::new(file).unwrap();
        let mut passed_check = 0;
        for n in 0..2000 {
            let password = format!("wrong{n}");
            let Ok(mut entry) = archive.by_name_decrypt("stdout.bin", password.as_bytes()) else {
                continue;
            };
            passed_check += 1;
            let mut bytes = Vec::new();
            let read = entry.read_to_end(&mut bytes);
            assert!(read.is_err() || bytes != b"out", "{password} opened it");
        }
        assert!(
            passed_check > 0,
            "no wrong password got past the check byte"
        );
    }

    #[test]
    fn one_artifact_or_not_found() {
        let tmp = sample_dir();
        let art = tmp.path().join("artifacts");
        let one = ArtifactName::parse("stdout.bin").unwrap();
        let archive =
            zip::ZipArchive::new(zip(&art, Some(&one), &tmp.path().join("tmp")).unwrap()).unwrap();
        assert_eq!(archive.len(), 1);
        let missing = ArtifactName::parse("stderr.bin").unwrap();
        assert!(matches!(
            zip(&art, Some(&missing), &tmp.path().join("tmp")),
            Err(ArtifactError::NotFound { .. })
        ));
        let link = ArtifactName::parse(&format!("dropped/{}", "c".repeat(64))).unwrap();
        assert!(matches!(
            zip(&art, Some(&link), &tmp.path().join("tmp")),
            Err(ArtifactError::NotFound { .. })
        ));
    }
}
