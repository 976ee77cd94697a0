//! `kube-ovn-daemon --install-cni-config`: what upstream's install-cni init container does
//! after copying the binaries (`install-cni.sh` ends with this call). The conflist shipped in
//! the image (`--cni-conf-file`) becomes `<--cni-conf-dir>/<--cni-conf-name>`, readable by root
//! only, written atomically so the kubelet never reads half a file. An existing file is kept
//! (an operator may have edited it); only its mode is corrected to 0600.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the installed configuration.
pub const CONF_MODE: u32 = 0o600;

/// What the installation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// The file was written from the image's copy.
    Written(PathBuf),
    /// The file existed with mode 0600 and was left alone.
    Kept(PathBuf),
    /// The file existed; its mode was set to 0600.
    ModeFixed(PathBuf),
}

/// Installs `conf_file` as `dir/name` (see the module documentation).
pub fn install(dir: &Path, conf_file: &Path, name: &str) -> Result<Installed, String> {
    if name.is_empty() || name.contains('/') {
        return Err(format!(
            "--cni-conf-name={name:?} must be a plain file name"
        ));
    }
    let target = dir.join(name);
    match fs::metadata(&target) {
        Ok(meta) if meta.permissions().mode() & 0o777 == CONF_MODE => {
            return Ok(Installed::Kept(target));
        }
        Ok(_) => {
            fs::set_permissions(&target, fs::Permissions::from_mode(CONF_MODE))
                .map_err(|e| format!("chmod {}: {e}", target.display()))?;
            return Ok(Installed::ModeFixed(target));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", target.display())),
    }
    let data = fs::read(conf_file).map_err(|e| format!("{}: {e}", conf_file.display()))?;
    remove_leftovers(dir, name).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!("{name}.tmp.{}", std::process::id()));
    let written = write_synced(&tmp, &data).and_then(|()| fs::rename(&tmp, &target));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(format!("install {}: {e}", target.display()));
    }
    Ok(Installed::Written(target))
}

/// Removes `<name>.tmp.*` files an interrupted installation left behind.
fn remove_leftovers(dir: &Path, name: &str) -> io::Result<()> {
    let prefix = format!("{name}.tmp.");
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(CONF_MODE)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_with_mode_0600_and_keeps_an_existing_file() {
        let image = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let src = image.path().join("01-kube-ovn.conflist");
        fs::write(&src, b"{\"name\":\"kube-ovn\"}").unwrap();
        let stale = dir.path().join("01-kube-ovn.conflist.tmp.1");
        fs::write(&stale, b"half").unwrap();

        let target = dir.path().join("01-kube-ovn.conflist");
        assert_eq!(
            install(dir.path(), &src, "01-kube-ovn.conflist"),
            Ok(Installed::Written(target.clone()))
        );
        assert_eq!(fs::read(&target).unwrap(), fs::read(&src).unwrap());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&target), 0o600);
        assert!(!stale.exists());

        // An edited file stays; a wrong mode is corrected.
        fs::write(&target, b"edited").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            install(dir.path(), &src, "01-kube-ovn.conflist"),
            Ok(Installed::ModeFixed(target.clone()))
        );
        assert_eq!(mode(&target), 0o600);
        assert_eq!(
            install(dir.path(), &src, "01-kube-ovn.conflist"),
            Ok(Installed::Kept(target.clone()))
        );
        assert_eq!(fs::read(&target).unwrap(), b"edited");

        assert!(install(dir.path(), &image.path().join("missing"), "02-x.conflist").is_err());
        assert!(!dir.path().join("02-x.conflist").exists());
        assert!(install(dir.path(), &src, "../x").is_err());
    }
}
