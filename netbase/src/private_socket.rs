//! A unix socket only its owner may use: the shape of viscript's control socket and the
//! controlplane's app socket.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Binds `path` with mode 0600 (its folder made 0700 when missing). A stale socket file is
/// replaced; one that a live server answers on is refused with `AddrInUse` naming `what`.
///
/// An existing folder must belong to this user or root, and others may not write to it
/// unless it is sticky (like /tmp): in a folder another user made (a `/tmp/viscript-UID`
/// created ahead of us, say) that user could swap the socket for one of their own.
pub fn bind(path: &Path, what: &str) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if dir.exists() {
            check_folder(dir)?;
        } else {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another {what} is serving at {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Whether `dir` is safe to put a private socket in (see [`bind`]).
fn check_folder(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    let sticky = m.mode() & 0o1000 != 0;
    if m.uid() != me && m.uid() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: belongs to user {}, not to this user ({me}) or root; refusing to put a socket there",
                dir.display(),
                m.uid()
            ),
        ));
    }
    if m.mode() & 0o022 != 0 && !sticky {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: others may write to it (mode {:o}); refusing to put a socket there",
                dir.display(),
                m.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_0600_replaces_stale_refuses_live() {
        let dir = std::env::temp_dir().join(format!("privsock-{}", std::process::id()));
        let p = dir.join("sub").join("x.sock");
        let l = bind(&p, "test server").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = bind(&p, "test server").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("another test server"), "{e}");
        drop(l);
        bind(&p, "test server").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_a_folder_others_may_write_or_own() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("privsock-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = bind(&dir.join("x.sock"), "test server").unwrap_err();
        assert!(e.to_string().contains("others may write"), "{e}");
        // Sticky (like /tmp) is fine: others cannot remove or replace our socket.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        drop(bind(&dir.join("x.sock"), "test server").unwrap());
        // Owned by another user.
        let other = dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).unwrap();
        if rustix::process::geteuid().is_root() {
            rustix::fs::chown(&other, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
            let e = bind(&other.join("x.sock"), "test server").unwrap_err();
            assert!(e.to_string().contains("belongs to user 65534"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
