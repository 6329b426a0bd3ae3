//! `envid keygen FILE`: a new Ed25519 signing key for `serve --signing-key`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use envid::identity::Signer;

pub fn run(file: &Path) -> Result<ExitCode, String> {
    let pem = Signer::generate_pem();
    let kid = Signer::from_pem(&pem)
        .map_err(|e| e.to_string())?
        .kid()
        .to_string();
    // create_new: an existing key is never replaced (it may be the one
    // signing now); 0600 from the start, not chmod after the write.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("{} exists; not overwriting a key", file.display())
            }
            _ => format!("cannot create {}: {e}", file.display()),
        })?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    println!("{kid}");
    Ok(ExitCode::SUCCESS)
}
