//! Policy folders: the files, and diagnostics that point into them.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One file of a policy folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The file name (no folder), used in policy ids and diagnostics.
    pub name: String,
    /// The text.
    pub text: String,
}

/// The policy folder's contents: `*.cedar` policy files and
/// `*.cedarschema` schema files, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySources {
    /// Policy files.
    pub policies: Vec<SourceFile>,
    /// Schema files.
    pub schemas: Vec<SourceFile>,
}

/// A problem in a file, with its place when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or `schema` for the generated part).
    pub file: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Largest policy or schema file read.
const MAX_FILE_BYTES: u64 = 4 << 20;

impl PolicySources {
    /// Reads the folder. A missing folder or unreadable file is an error.
    pub fn read_dir(dir: &Path) -> Result<Self, Diagnostic> {
        let io = |path: &Path, e: std::io::Error| Diagnostic {
            file: path.display().to_string(),
            position: None,
            message: format!("cannot read: {e}"),
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("cedar" | "cedarschema")
                )
            })
            .collect();
        paths.sort();
        let mut out = Self::default();
        for path in paths {
            let meta = std::fs::metadata(&path).map_err(|e| io(&path, e))?;
            if meta.len() > MAX_FILE_BYTES {
                return Err(Diagnostic {
                    file: path.display().to_string(),
                    position: None,
                    message: format!("file larger than {MAX_FILE_BYTES} bytes"),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file = SourceFile { name, text };
            if path.extension().is_some_and(|e| e == "cedarschema") {
                out.schemas.push(file);
            } else {
                out.policies.push(file);
            }
        }
        Ok(out)
    }

    /// The files as a bundle (JSON): what `warden policy history` keeps.
    pub fn to_bundle(&self) -> String {
        let files = |list: &[SourceFile]| -> Vec<serde_json::Value> {
            list.iter()
                .map(|f| serde_json::json!({ "name": f.name, "text": f.text }))
                .collect()
        };
        serde_json::json!({ "policies": files(&self.policies), "schemas": files(&self.schemas) })
            .to_string()
    }

    /// The files of a bundle made by [`to_bundle`](Self::to_bundle).
    pub fn from_bundle(json: &str) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct File {
            name: String,
            text: String,
        }
        #[derive(serde::Deserialize)]
        struct Bundle {
            policies: Vec<File>,
            schemas: Vec<File>,
        }
        let b: Bundle = serde_json::from_str(json).map_err(|e| format!("corrupt bundle: {e}"))?;
        let convert = |list: Vec<File>, ext: &str| -> Result<Vec<SourceFile>, String> {
            list.into_iter()
                .map(|f| {
                    let plain = !f.name.is_empty()
                        && !f.name.starts_with('.')
                        && f.name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                        && f.name.ends_with(ext);
                    if plain {
                        Ok(SourceFile {
                            name: f.name,
                            text: f.text,
                        })
                    } else {
                        Err(format!("bundle file name `{}` is not allowed", f.name))
                    }
                })
                .collect()
        };
        Ok(Self {
            policies: convert(b.policies, ".cedar")?,
            schemas: convert(b.schemas, ".cedarschema")?,
        })
    }

    /// Makes `dir` hold exactly these files: writes them and removes the
    /// folder's other `*.cedar` and `*.cedarschema` files.
    pub fn write_dir(&self, dir: &Path) -> Result<(), String> {
        let io = |p: &Path, e: std::io::Error| format!("`{}`: {e}", p.display());
        let keep: Vec<&str> = self
            .policies
            .iter()
            .chain(&self.schemas)
            .map(|f| f.name.as_str())
            .collect();
        for f in self.policies.iter().chain(&self.schemas) {
            let path = dir.join(&f.name);
            let tmp = dir.join(format!(".{}.tmp", f.name));
            std::fs::write(&tmp, &f.text).map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        }
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten() {
            let path = entry.path();
            let ours = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("cedar" | "cedarschema")
            );
            let name = entry.file_name().to_string_lossy().into_owned();
            if ours && !keep.contains(&name.as_str()) {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
            }
        }
        Ok(())
    }

    /// A short digest of every file's name and text: the policy version.
    pub fn version(&self) -> String {
        let mut h = Sha256::new();
        for f in self.schemas.iter().chain(&self.policies) {
            h.update((f.name.len() as u64).to_be_bytes());
            h.update(f.name.as_bytes());
            h.update((f.text.len() as u64).to_be_bytes());
            h.update(f.text.as_bytes());
        }
        hex::encode(h.finalize()).chars().take(16).collect()
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(src.len());
    while off > 0 && !src.is_char_boundary(off) {
        off -= 1;
    }
    let before = src.get(..off).unwrap_or("");
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A diagnostic for a miette diagnostic whose labels point into `file`.
pub(crate) fn diagnostic(file: &SourceFile, d: &(impl miette::Diagnostic + ?Sized)) -> Diagnostic {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    let position = d
        .labels()
        .and_then(|mut l| l.next())
        .map(|l| line_col(&file.text, l.offset()));
    Diagnostic {
        file: file.name.clone(),
        position,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncdé\nx", 0), (1, 1));
        assert_eq!(line_col("ab\ncdé\nx", 3), (2, 1));
        assert_eq!(line_col("ab\ncdé\nx", 8), (3, 1));
        assert_eq!(line_col("é", 1), (1, 1));
        assert_eq!(line_col("abc", 99), (1, 4));
    }

    #[test]
    fn bundles_round_trip_and_refuse_paths() {
        let dir = tempfile_dir();
        std::fs::write(
            dir.join("old.cedar"),
            "permit(principal, action, resource);",
        )
        .unwrap();
        let sources = PolicySources {
            policies: vec![SourceFile {
                name: "a.cedar".into(),
                text: "// a".into(),
            }],
            schemas: vec![SourceFile {
                name: "w.cedarschema".into(),
                text: "namespace W {}".into(),
            }],
        };
        let back = PolicySources::from_bundle(&sources.to_bundle()).unwrap();
        assert_eq!(back, sources);
        back.write_dir(&dir).unwrap();
        let again = PolicySources::read_dir(&dir).unwrap();
        assert_eq!(again, sources, "the old file is gone");
        for bad in ["../x.cedar", "/etc/x.cedar", "x.sh", ".hidden.cedar"] {
            let json = format!(r#"{{"policies":[{{"name":"{bad}","text":""}}],"schemas":[]}}"#);
            assert!(PolicySources::from_bundle(&json).is_err(), "{bad}");
        }
        assert!(PolicySources::from_bundle("{").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("warden-bundle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn version_follows_content() {
        let a = PolicySources {
            policies: vec![SourceFile {
                name: "a.cedar".into(),
                text: "x".into(),
            }],
            schemas: vec![],
        };
        let mut b = a.clone();
        assert_eq!(a.version(), b.version());
        b.policies[0].text.push(' ');
        assert_ne!(a.version(), b.version());
    }
}
