//! Facts about the guest that the image builder and the sandbox must agree on.

/// First host uid (and gid) of the range the guest's users map to. Guest root is this uid on
/// the host: an unprivileged account that owns nothing outside the guest images.
pub const UID_BASE: u32 = 1_000_000_000;

/// Number of guest uids (and gids) mapped: 0..65536 inside.
pub const UID_COUNT: u32 = 65_536;

/// The machine name a sample sees.
pub const HOSTNAME: &str = "web-prod-03";

/// The ordinary (non-root) account that exists in the guest.
pub const USER_NAME: &str = "deploy";

/// Its uid and gid inside the guest.
pub const USER_ID: u32 = 1000;

/// Gives `path` (a final link itself, not its target) to guest root: host uid and gid
/// [`UID_BASE`].
pub fn chown_to_guest_root(path: &std::path::Path) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(UID_BASE), Some(UID_BASE))
}
