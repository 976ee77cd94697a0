//! Optional on-disk snapshot of the whole object store, so a sandbox
//! server keeps its objects across restarts. Written atomically after each change.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// One stored object together with the group/resource it is filed under.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    /// API group of the resource ("" for core).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// The object itself.
    pub object: Value,
}

/// Location of the snapshot file inside a data directory.
#[derive(Debug, Clone)]
pub struct Snapshot {
    path: PathBuf,
}

impl Snapshot {
    /// Uses `<data_dir>/objects.json`, creating the directory if needed.
    pub fn in_dir(data_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        Ok(Self {
            path: data_dir.join("objects.json"),
        })
    }

    /// Reads the snapshot; `Ok(None)` when none was written yet.
    pub fn load(&self) -> std::io::Result<Option<(u64, Vec<StoredObject>)>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let doc: Value = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
        let resource_version = doc
            .get("resourceVersion")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        let objects = doc
            .get("objects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                Some(StoredObject {
                    group: entry.get("group")?.as_str()?.to_string(),
                    resource: entry.get("resource")?.as_str()?.to_string(),
                    object: entry.get("object")?.clone(),
                })
            })
            .collect();
        Ok(Some((resource_version, objects)))
    }

    /// Replaces the snapshot atomically (write to a temporary file, then rename).
    pub fn save<'a>(
        &self,
        resource_version: u64,
        objects: impl Iterator<Item = (&'a str, &'a str, &'a Value)>,
    ) -> std::io::Result<()> {
        let objects: Vec<Value> = objects
            .map(|(group, resource, object)| json!({"group": group, "resource": resource, "object": object}))
            .collect();
        let doc = json!({"resourceVersion": resource_version, "objects": objects});
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&doc).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &self.path)
    }
}
