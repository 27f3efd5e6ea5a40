//! The guest image inside the engine: the native backend's root file system imported as a
//! base image (tagged with the image digest), and above it one layer holding this aegis
//! binary (tagged with the binary's digest too), so an analysis only uploads its sample.

use std::collections::HashMap;

use bollard::container::{Config, CreateContainerOptions};
use bollard::image::{CommitContainerOptions, CreateImageOptions};
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{api, DockerError, LABEL};
use crate::image::ImageInfo;
use crate::monitor::container::AEGIS_DIR;

/// Repository of the imported guest images.
pub const REPOSITORY: &str = "aegis-guest";

/// The first 12 hex digits of a `sha256:` digest.
fn short(digest: &str) -> String {
    digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
}

/// `aegis-guest/<name>:<image digest 12>` (the imported root file system).
pub fn base_tag(image: &ImageInfo) -> String {
    format!("{REPOSITORY}/{}:{}", image.name, short(&image.digest))
}

/// An identity of the running binary (what the monitor layer holds): a digest of its file's
/// device, inode, size and modification time, so a rebuilt binary gets a new layer without
/// hashing ~100 MB before every analysis.
pub fn binary_digest() -> Result<String, DockerError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/exe")
        .map_err(|e| DockerError::Local(format!("stat /proc/self/exe: {e}")))?;
    let identity = format!(
        "{}:{}:{}:{}.{}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    Ok(hex::encode(Sha256::digest(identity.as_bytes())))
}

/// `aegis-guest/<name>:<image digest 12>-<binary digest 12>`.
pub fn monitor_tag(image: &ImageInfo, binary: &str) -> String {
    format!("{}-{}", base_tag(image), &binary[..12.min(binary.len())])
}

async fn exists(docker: &Docker, tag: &str) -> Result<bool, DockerError> {
    match docker.inspect_image(tag).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(api("inspect image", e)),
    }
}

/// Makes sure the engine has the monitor image of `image`; returns its tag.
pub async fn ensure(
    docker: &Docker,
    image: &ImageInfo,
    progress: &mut dyn FnMut(&str),
) -> Result<String, DockerError> {
    let binary = binary_digest()?;
    let tag = monitor_tag(image, &binary);
    if exists(docker, &tag).await? {
        return Ok(tag);
    }
    let base = base_tag(image);
    if !exists(docker, &base).await? {
        progress(&format!(
            "importing guest image {} into the engine as {base}",
            image.name
        ));
        import(docker, image, &base).await?;
    }
    progress(&format!("adding the monitor to {base}"));
    add_monitor(docker, &base, &tag).await?;
    prune_monitors(docker, &base, &tag).await;
    Ok(tag)
}

/// Removes the monitor images of earlier aegis binaries over the same base (a new build
/// makes a new one). One still used by a running analysis stays; the engine refuses it.
async fn prune_monitors(docker: &Docker, base: &str, keep: &str) {
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL}=1")])]);
    let options = bollard::image::ListImagesOptions {
        filters,
        ..Default::default()
    };
    let Ok(images) = docker.list_images(Some(options)).await else {
        return;
    };
    let prefix = format!("{base}-");
    for image in images {
        for tag in image.repo_tags {
            if tag.starts_with(&prefix) && tag != keep {
                let _ = docker.remove_image(&tag, None, None).await;
            }
        }
    }
}

async fn import(docker: &Docker, image: &ImageInfo, tag: &str) -> Result<(), DockerError> {
    let rootfs = image.rootfs.clone();
    let uid_base = image.uid_base;
    let layer = tokio::task::spawn_blocking(move || super::archive::image_layer(&rootfs, uid_base))
        .await
        .map_err(|e| DockerError::Local(format!("pack guest image: {e}")))?
        .map_err(|e| DockerError::Local(format!("pack guest image: {e}")))?;
    let (repo, version) = tag.split_once(':').unwrap_or((tag, "latest"));
    let label = format!("LABEL {LABEL}=1");
    let options = CreateImageOptions {
        from_src: "-",
        repo,
        tag: version,
        changes: vec![label.as_str()],
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(options), Some(layer.into()), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| api("import guest image", e))?;
        if let Some(err) = info.error {
            return Err(DockerError::Local(format!("import guest image: {err}")));
        }
    }
    Ok(())
}

/// A container of the base image receives the binary and is committed as the monitor image.
async fn add_monitor(docker: &Docker, base: &str, tag: &str) -> Result<(), DockerError> {
    let labels = HashMap::from([(LABEL.to_string(), "1".to_string())]);
    let name = format!("aegis-commit-{}", uuid::Uuid::new_v4());
    let config = Config {
        image: Some(base.to_string()),
        entrypoint: Some(vec!["/bin/true".to_string()]),
        labels: Some(labels.clone()),
        network_disabled: Some(true),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: name.clone(),
        platform: None,
    };
    docker
        .create_container(Some(options), config)
        .await
        .map_err(|e| api("create container", e))?;
    let result = commit_with_binary(docker, &name, tag, labels).await;
    let _ = super::force_remove(docker, &name).await;
    result
}

async fn commit_with_binary(
    docker: &Docker,
    container: &str,
    tag: &str,
    labels: HashMap<String, String>,
) -> Result<(), DockerError> {
    let binary = std::fs::read("/proc/self/exe")
        .map_err(|e| DockerError::Local(format!("read /proc/self/exe: {e}")))?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    let dir = AEGIS_DIR.trim_start_matches('/');
    tar.append_data(&mut h, dir, std::io::empty())
        .and_then(|_| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_size(binary.len() as u64);
            tar.append_data(&mut h, format!("{dir}/aegis"), binary.as_slice())
        })
        .map_err(|e| DockerError::Local(format!("pack the monitor: {e}")))?;
    let tar = tar
        .into_inner()
        .map_err(|e| DockerError::Local(format!("pack the monitor: {e}")))?;
    let upload = bollard::container::UploadToContainerOptions {
        path: "/".to_string(),
        ..Default::default()
    };
    docker
        .upload_to_container(container, Some(upload), tar.into())
        .await
        .map_err(|e| api("upload the monitor", e))?;
    let (repo, version) = tag.split_once(':').unwrap_or((tag, "latest"));
    let options = CommitContainerOptions {
        container: container.to_string(),
        repo: repo.to_string(),
        tag: version.to_string(),
        pause: false,
        ..Default::default()
    };
    let config = Config {
        labels: Some(labels),
        entrypoint: Some(vec![format!("{AEGIS_DIR}/aegis"), "container-init".into()]),
        ..Default::default()
    };
    docker
        .commit_container(options, config)
        .await
        .map_err(|e| api("commit the monitor image", e))?;
    Ok(())
}
