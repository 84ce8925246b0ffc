//! A unix socket only its owner may use: the shape of viscript's control socket and the
//! controlplane's app socket.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Binds `path` with mode 0600 (its folder made 0700 when missing). A stale socket file is
/// replaced; one that a live server answers on is refused with `AddrInUse` naming `what`.
pub fn bind(path: &Path, what: &str) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
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
}
