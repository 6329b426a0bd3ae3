//! Reading the downward-API volume: the kubelet's `..data` generations,
//! each file through the bounded reader, never two generations mixed (see
//! the module documentation of [`crate::podinfo`], "Reading safely and
//! consistently").

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path};

use super::kubelet_format::{parse_located, utf8};
use super::{
    read_error, PodInfo, PodInfoError, PodInfoErrorKind, PodInfoFile, DATA_LINK, MAX_ATTEMPTS,
    MAX_FILE_SIZE, UID_FILE,
};
use crate::descriptor::text_problem;
use crate::location::Location;

/// A point of [`read_observed`] a test can act at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// `..data` was resolved (or found absent); nothing read yet.
    Resolved,
    /// This file of the generation was just read (or found missing).
    Read(&'static str),
}

/// [`PodInfo::read`] calling `observe(attempt, stage)` at each stage: the
/// seam through which tests swap generations at an exact point of a read.
pub(super) fn read_observed(
    dir: &Path,
    observe: &mut dyn FnMut(usize, Stage),
) -> Result<Option<PodInfo>, PodInfoError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(PodInfoError::new(
                PodInfoErrorKind::NotADirectory,
                dir,
                "not a directory; the downward-API volume is a directory with files labels, annotations and uid",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PodInfoError::new(
                PodInfoErrorKind::Io,
                dir,
                format!("cannot read: {e}"),
            ))
        }
    }
    for attempt in 0..MAX_ATTEMPTS {
        let generation = resolve_generation(dir)?;
        let from = match &generation {
            Some(name) => dir.join(name),
            None => dir.to_path_buf(),
        };
        observe(attempt, Stage::Resolved);
        let mut missing = false;
        let mut read = |name: &'static str| -> Result<Option<Vec<u8>>, PodInfoError> {
            let got = crate::read::bytes(&from.join(name), MAX_FILE_SIZE);
            observe(attempt, Stage::Read(name));
            match got {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.is_not_found() => {
                    missing = true;
                    Ok(None)
                }
                Err(e) => Err(read_error(&dir.join(name), e.problem)),
            }
        };
        let labels = read(PodInfoFile::Labels.file_name())?;
        let annotations = read(PodInfoFile::Annotations.file_name())?;
        let uid = read(UID_FILE)?;
        if missing {
            if let Some(name) = &generation {
                // A file missing from a generation is either not projected
                // or gone with its directory after a swap; only the second
                // moves `..data`.
                if resolve_generation(dir)?.as_ref() != Some(name) {
                    continue;
                }
                if !from.is_dir() {
                    return Err(PodInfoError::new(
                        PodInfoErrorKind::Layout,
                        &dir.join(DATA_LINK),
                        format!("points to {name:?}, which does not exist"),
                    ));
                }
            }
        }
        return assemble(dir, generation, labels, annotations, uid).map(Some);
    }
    Err(PodInfoError::new(
        PodInfoErrorKind::Unstable,
        dir,
        format!("the kubelet replaced {DATA_LINK} during each of {MAX_ATTEMPTS} reads; try again"),
    ))
}

/// The timestamped directory `..data` names, or `None` without `..data`.
fn resolve_generation(dir: &Path) -> Result<Option<String>, PodInfoError> {
    let link = dir.join(DATA_LINK);
    let target = match std::fs::read_link(&link) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            return Err(PodInfoError::new(
                PodInfoErrorKind::Layout,
                &link,
                "not a symlink; the kubelet makes ..data a symlink to a timestamped directory beside it",
            ))
        }
        Err(e) => {
            return Err(PodInfoError::new(
                PodInfoErrorKind::Io,
                &link,
                format!("cannot read the link: {e}"),
            ))
        }
    };
    // The kubelet writes a bare name; anything else could lead the reads
    // out of the volume.
    let mut parts = target.components();
    match (parts.next(), parts.next(), target.to_str()) {
        (Some(Component::Normal(_)), None, Some(name)) => Ok(Some(name.to_string())),
        _ => Err(PodInfoError::new(
            PodInfoErrorKind::Layout,
            &link,
            format!(
                "points to {}; the kubelet points ..data to a timestamped directory beside it (..2026_11_30_10_00_00.123456789)",
                target.display()
            ),
        )),
    }
}

fn assemble(
    dir: &Path,
    generation: Option<String>,
    labels: Option<Vec<u8>>,
    annotations: Option<Vec<u8>>,
    uid: Option<Vec<u8>>,
) -> Result<PodInfo, PodInfoError> {
    let mut info = PodInfo {
        dir: dir.to_path_buf(),
        generation,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        uid: None,
        locations: BTreeMap::new(),
    };
    for (file, bytes) in [
        (PodInfoFile::Labels, labels),
        (PodInfoFile::Annotations, annotations),
    ] {
        let Some(bytes) = bytes else { continue };
        let path = info.path(file);
        let text = utf8(&bytes, &path)?;
        let entries = parse_located(text).map_err(|e| e.into_error(text, &path))?;
        let map = match file {
            PodInfoFile::Labels => &mut info.labels,
            PodInfoFile::Annotations => &mut info.annotations,
        };
        for e in entries {
            info.locations.insert((file, e.key.clone()), e.value_at);
            map.insert(e.key, e.value);
        }
    }
    if let Some(bytes) = uid {
        let path = info.uid_path();
        let text = utf8(&bytes, &path)?;
        // An empty uid file is no uid, like an empty POD_UID.
        if !text.trim().is_empty() {
            if let Some(problem) = text_problem(text) {
                return Err(PodInfoError {
                    location: Some(Location { line: 1, column: 1 }),
                    ..PodInfoError::new(PodInfoErrorKind::InvalidValue, &path, problem)
                });
            }
            info.uid = Some(text.trim().to_string());
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One kubelet `AtomicWriter` update of `dir`: a new timestamped
    /// directory, `..data_tmp` renamed over `..data`, user-visible symlinks,
    /// the old directory removed.
    fn atomic_write(dir: &Path, generation: &str, files: &[(&str, &str)]) {
        let old = std::fs::read_link(dir.join(DATA_LINK)).ok();
        std::fs::create_dir(dir.join(generation)).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(generation).join(name), text).unwrap();
        }
        std::os::unix::fs::symlink(generation, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join(DATA_LINK)).unwrap();
        for (name, _) in files {
            let _ = std::os::unix::fs::symlink(format!("{DATA_LINK}/{name}"), dir.join(name));
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(dir.join(old)).unwrap();
        }
    }

    fn generation(n: u32) -> (String, [(&'static str, String); 3]) {
        (
            format!("..2026_11_30_10_00_0{n}.12345678{n}"),
            [
                ("labels", format!("generation=\"{n}\"")),
                ("annotations", format!("generation=\"{n}\"")),
                ("uid", format!("uid-{n}")),
            ],
        )
    }

    fn write_generation(dir: &Path, n: u32) {
        let (name, files) = generation(n);
        let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
        atomic_write(dir, &name, &files);
    }

    /// The generation every file of `info` came from; panics on a mix.
    fn only_generation(info: &PodInfo) -> String {
        let l = &info.labels["generation"];
        assert_eq!(
            &info.annotations["generation"], l,
            "labels and annotations mixed"
        );
        assert_eq!(
            info.uid.as_deref(),
            Some(format!("uid-{l}").as_str()),
            "uid mixed"
        );
        assert_eq!(info.generation, Some(generation(l.parse().unwrap()).0));
        l.clone()
    }

    #[test]
    fn a_swap_between_two_files_is_read_again_from_the_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        write_generation(dir.path(), 1);
        let mut next = 2;
        let got = read_observed(dir.path(), &mut |attempt, stage| {
            if attempt == 0 && stage == Stage::Read("labels") {
                write_generation(dir.path(), next);
                next += 1;
            }
        })
        .unwrap()
        .unwrap();
        assert_eq!(only_generation(&got), "2");
    }

    #[test]
    fn a_swap_after_resolving_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        write_generation(dir.path(), 1);
        let mut attempts = Vec::new();
        let got = read_observed(dir.path(), &mut |attempt, stage| {
            if stage == Stage::Resolved {
                attempts.push(attempt);
                if attempt < 2 {
                    write_generation(dir.path(), attempt as u32 + 2);
                }
            }
        })
        .unwrap()
        .unwrap();
        assert_eq!(attempts, [0, 1, 2]);
        assert_eq!(only_generation(&got), "3");
    }

    #[test]
    fn a_swap_after_the_last_file_keeps_the_old_consistent_generation() {
        let dir = tempfile::tempdir().unwrap();
        write_generation(dir.path(), 1);
        let got = read_observed(dir.path(), &mut |attempt, stage| {
            if attempt == 0 && stage == Stage::Read(UID_FILE) {
                write_generation(dir.path(), 2);
            }
        })
        .unwrap()
        .unwrap();
        assert_eq!(only_generation(&got), "1");
    }

    #[test]
    fn a_swap_during_every_read_is_unstable() {
        let dir = tempfile::tempdir().unwrap();
        write_generation(dir.path(), 1);
        let mut next = 2;
        let e = read_observed(dir.path(), &mut |_, stage| {
            if stage == Stage::Resolved {
                write_generation(dir.path(), next);
                next += 1;
            }
        })
        .unwrap_err();
        assert_eq!(e.kind, PodInfoErrorKind::Unstable);
        assert_eq!(next, 2 + MAX_ATTEMPTS as u32);
    }

    #[test]
    fn a_file_not_projected_stays_absent_without_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        atomic_write(
            dir.path(),
            "..2026_11_30_10_00_00.1",
            &[("annotations", "a=\"1\"")],
        );
        let mut resolved = 0;
        let got = read_observed(dir.path(), &mut |_, stage| {
            resolved += usize::from(stage == Stage::Resolved)
        })
        .unwrap()
        .unwrap();
        assert_eq!(resolved, 1);
        assert!(got.labels.is_empty() && got.uid.is_none());
        assert_eq!(got.annotations["a"], "1");
    }
}
