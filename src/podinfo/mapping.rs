//! Which keys of the volume give which field: [`PodInfoMapping`], the
//! `[podinfo]` table of the rules file (see the module documentation of
//! [`crate::podinfo`], "The mapping").

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{PodInfo, PodInfoError, PodInfoErrorKind, PodInfoFile, PodInfoOrigin};
use crate::descriptor::text_problem;
use crate::model::{Field, Labels};

/// A key of a [`PodInfoMapping`]: `KEY` (annotations first, then labels),
/// `annotation:KEY` or `label:KEY` (that file only).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodInfoKey {
    /// The label or annotation key.
    pub key: String,
    /// The one file to look in, or `None` for annotations then labels.
    pub file: Option<PodInfoFile>,
}

impl PodInfoKey {
    /// A key looked up among the annotations, then the labels.
    pub fn any(key: impl Into<String>) -> PodInfoKey {
        PodInfoKey {
            key: key.into(),
            file: None,
        }
    }

    /// The files this key is looked up in, in order.
    pub fn files(&self) -> &'static [PodInfoFile] {
        match self.file {
            None => &[PodInfoFile::Annotations, PodInfoFile::Labels],
            Some(PodInfoFile::Annotations) => &[PodInfoFile::Annotations],
            Some(PodInfoFile::Labels) => &[PodInfoFile::Labels],
        }
    }
}

impl std::str::FromStr for PodInfoKey {
    type Err = String;

    /// Parses `KEY`, `annotation:KEY` or `label:KEY`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (file, key) = match s.split_once(':') {
            Some(("annotation", key)) => (Some(PodInfoFile::Annotations), key),
            Some(("label", key)) => (Some(PodInfoFile::Labels), key),
            Some((prefix, _)) => {
                return Err(format!(
                    "{s:?}: unknown prefix {prefix:?} (expected annotation:KEY, label:KEY or KEY)"
                ))
            }
            None => (None, s),
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '=' && c != '"')
        {
            return Err(format!(
                "{s:?}: a key is printable ASCII without `=` or quotes, like envid.io/env"
            ));
        }
        Ok(PodInfoKey {
            key: key.to_string(),
            file,
        })
    }
}

impl fmt::Display for PodInfoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.file {
            None => f.write_str(&self.key),
            Some(file) => write!(f, "{}:{}", file.singular(), self.key),
        }
    }
}

impl<'de> Deserialize<'de> for PodInfoKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for PodInfoKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Which keys of a [`PodInfo`] give which field: the `[podinfo]` table of
/// the rules file. [`Default`] is the documented mapping (see the module
/// documentation); a field left out of the table keeps its default keys.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PodInfoMapping {
    /// Keys for `env`, first found wins.
    pub env: Vec<PodInfoKey>,
    /// Keys for `idc`.
    pub idc: Vec<PodInfoKey>,
    /// Keys for `sub_env`.
    pub sub_env: Vec<PodInfoKey>,
    /// Keys for `app`.
    pub app: Vec<PodInfoKey>,
    /// Offer the pod's other labels as [`crate::Environment`] labels.
    pub labels: bool,
}

impl Default for PodInfoMapping {
    fn default() -> Self {
        PodInfoMapping {
            env: vec![PodInfoKey::any("envid.io/env")],
            idc: vec![PodInfoKey::any("envid.io/idc")],
            sub_env: vec![PodInfoKey::any("envid.io/sub-env")],
            app: vec![
                PodInfoKey::any("envid.io/app"),
                PodInfoKey::any("app.kubernetes.io/name"),
            ],
            labels: false,
        }
    }
}

impl PodInfoMapping {
    /// The keys for `field`: `env`, `idc`, `sub_env` and `app` have some;
    /// every other field has none.
    pub fn keys(&self, field: Field) -> &[PodInfoKey] {
        match field {
            Field::Env => &self.env,
            Field::Idc => &self.idc,
            Field::SubEnv => &self.sub_env,
            Field::App => &self.app,
            _ => &[],
        }
    }

    /// The value of `field` in `info` and where it came from: the first of
    /// [`PodInfoMapping::keys`] found, each among the annotations, then the
    /// labels. `Ok(None)` when no key is there (and for every field the
    /// mapping has no keys for). A found value is trimmed; one that is
    /// empty, too long or holds a control character is an
    /// [`PodInfoErrorKind::InvalidValue`] error, not skipped: the pod says
    /// something, and it is wrong.
    pub fn resolve(
        &self,
        info: &PodInfo,
        field: Field,
    ) -> Result<Option<(String, PodInfoOrigin)>, PodInfoError> {
        for key in self.keys(field) {
            for &file in key.files() {
                if let Some(value) = info.entries(file).get(&key.key) {
                    return checked(info, file, &key.key, value).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// The labels offered as [`crate::Environment`] labels: none unless
    /// [`PodInfoMapping::labels`] is set; then every label whose key the
    /// mapping does not name, except those with an empty value. Their
    /// provenance is `info.path(PodInfoFile::Labels)`.
    pub fn offered_labels(&self, info: &PodInfo) -> Result<Labels, PodInfoError> {
        let mut out = Labels::new();
        if !self.labels {
            return Ok(out);
        }
        let named = |k: &str| {
            [&self.env, &self.idc, &self.sub_env, &self.app]
                .into_iter()
                .flatten()
                .any(|m| m.key == k && m.file != Some(PodInfoFile::Annotations))
        };
        for (key, value) in &info.labels {
            if named(key) || value.trim().is_empty() {
                continue;
            }
            if let Some(problem) = text_problem(key) {
                return Err(PodInfoError {
                    location: info.location(PodInfoFile::Labels, key),
                    key: Some(key.clone()),
                    ..PodInfoError::new(
                        PodInfoErrorKind::InvalidValue,
                        &info.path(PodInfoFile::Labels),
                        format!("key {problem}"),
                    )
                });
            }
            let (value, _) = checked(info, PodInfoFile::Labels, key, value)?;
            out.insert(key.clone(), value);
        }
        Ok(out)
    }
}

/// `value` trimmed and checked like a descriptor string.
fn checked(
    info: &PodInfo,
    file: PodInfoFile,
    key: &str,
    value: &str,
) -> Result<(String, PodInfoOrigin), PodInfoError> {
    let path = info.path(file);
    if let Some(problem) = text_problem(value) {
        return Err(PodInfoError {
            location: info.location(file, key),
            key: Some(key.to_string()),
            ..PodInfoError::new(PodInfoErrorKind::InvalidValue, &path, problem)
        });
    }
    Ok((
        value.trim().to_string(),
        PodInfoOrigin {
            file: path,
            key: key.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Location;

    fn info(labels: &str, annotations: &str) -> PodInfo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("labels"), labels).unwrap();
        std::fs::write(dir.path().join("annotations"), annotations).unwrap();
        std::fs::write(
            dir.path().join("uid"),
            "6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90\n",
        )
        .unwrap();
        PodInfo::read(dir.path()).unwrap().unwrap()
    }

    #[test]
    fn default_mapping_prefers_annotations_then_falls_back_for_app() {
        let i = info(
            "app.kubernetes.io/name=\"flight-order\"\nenvid.io/env=\"label-env\"\nenvid.io/idc=\"cn0\"\nteam=\"f\"",
            "envid.io/env=\" beta \"\nenvid.io/sub-env=\"noahauto-2\"",
        );
        assert_eq!(
            i.uid.as_deref(),
            Some("6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90")
        );
        let m = PodInfoMapping::default();
        let get = |f| m.resolve(&i, f).unwrap().map(|(v, o)| (v, o.file, o.key));
        let ann = i.dir.join("annotations");
        let lab = i.dir.join("labels");
        assert_eq!(
            get(Field::Env),
            Some(("beta".into(), ann.clone(), "envid.io/env".into()))
        );
        assert_eq!(
            get(Field::Idc),
            Some(("cn0".into(), lab.clone(), "envid.io/idc".into()))
        );
        assert_eq!(
            get(Field::SubEnv),
            Some(("noahauto-2".into(), ann, "envid.io/sub-env".into()))
        );
        assert_eq!(
            get(Field::App),
            Some(("flight-order".into(), lab, "app.kubernetes.io/name".into()))
        );
        assert_eq!(get(Field::Platform), None);
        // Labels only when asked for, and then not those the mapping names.
        assert!(m.offered_labels(&i).unwrap().is_empty());
        let all = PodInfoMapping { labels: true, ..m };
        assert_eq!(
            all.offered_labels(&i).unwrap(),
            Labels::from([("team".to_string(), "f".to_string())])
        );
    }

    #[test]
    fn a_bad_mapped_value_is_refused_at_its_place() {
        let i = info(
            "envid.io/idc=\"cn0\"",
            "a=\"1\"\nenvid.io/env=\"  \"\nenvid.io/app=\"x\\ny\"",
        );
        let m = PodInfoMapping::default();
        let e = m.resolve(&i, Field::Env).unwrap_err();
        assert_eq!(e.kind, PodInfoErrorKind::InvalidValue);
        assert_eq!(
            e.location,
            Some(Location {
                line: 2,
                column: 15
            })
        );
        assert!(
            e.to_string()
                .ends_with("annotations:2:15: envid.io/env: must not be empty"),
            "{e}"
        );
        let e = m.resolve(&i, Field::App).unwrap_err();
        assert!(e.message.contains("U+000A"), "{e}");
        assert_eq!(m.resolve(&i, Field::Idc).unwrap().unwrap().0, "cn0");
    }

    #[test]
    fn mapping_reads_from_the_rules_file_table() {
        #[derive(Deserialize)]
        struct Rules {
            podinfo: PodInfoMapping,
        }
        let r: Rules = toml::from_str(
            "[podinfo]\nenv = ['label:environment', 'annotation:envid.io/env']\nsub_env = []\nlabels = true\n",
        )
        .unwrap();
        let m = r.podinfo;
        assert_eq!(
            m.env,
            [
                PodInfoKey {
                    key: "environment".into(),
                    file: Some(PodInfoFile::Labels)
                },
                PodInfoKey {
                    key: "envid.io/env".into(),
                    file: Some(PodInfoFile::Annotations)
                },
            ]
        );
        assert!(m.sub_env.is_empty());
        assert_eq!(m.idc, PodInfoMapping::default().idc);
        assert!(m.labels);

        let i = info(
            "environment=\"prod\"\nenvid.io/env=\"label\"",
            "environment=\"ann\"",
        );
        assert_eq!(m.resolve(&i, Field::Env).unwrap().unwrap().0, "prod");
        // `label:environment` is taken, so not offered; `envid.io/env` is
        // named for annotations only, so the label is.
        assert_eq!(
            m.offered_labels(&i).unwrap(),
            Labels::from([("envid.io/env".to_string(), "label".to_string())])
        );
        assert_eq!(m.resolve(&i, Field::SubEnv).unwrap(), None);

        for bad in [
            "[podinfo]\nenv = ['node:x']\n",
            "[podinfo]\nenv = ['']\n",
            "[podinfo]\nenv = ['label:']\n",
            "[podinfo]\nenv = ['a b']\n",
            "[podinfo]\nevn = ['x']\n",
        ] {
            assert!(toml::from_str::<Rules>(bad).is_err(), "{bad}");
        }
        let text = toml::to_string(&PodInfoMapping::default()).unwrap();
        assert_eq!(
            toml::from_str::<PodInfoMapping>(&text).unwrap(),
            PodInfoMapping::default()
        );
        assert_eq!(PodInfoKey::any("a").to_string(), "a");
        assert_eq!(m.env[0].to_string(), "label:environment");
    }
}
