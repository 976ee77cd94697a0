//! Finalizers added and removed with JSON patches that `test` the list they change, so a stale
//! copy of the object can never drop a finalizer another controller added meanwhile (a merge
//! patch of the whole list would). A failed test is a 422 from the API server; the caller's
//! reconcile fails and is retried with the fresh object from its watch.
//!
//! kube-rs's `runtime::finalizer` builds the same patches but returns after adding the
//! finalizer and waits for the watch to deliver the patched object (a whole round per new
//! object); these return the patched object so the reconcile carries on with it.

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Adds `finalizer` to `obj` unless it has it; returns the object as the API server has it
/// after the patch (or `obj` itself when nothing was needed).
pub async fn add<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if obj.finalizers().iter().any(|f| f == finalizer) {
        return Ok(None);
    }
    let ops = match obj.meta().finalizers.as_ref() {
        // The API server's JSON patch treats a missing member as null in `test`.
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ]),
        Some(current) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ]),
    };
    patch(api, obj, ops).await.map(Some)
}

/// Removes `finalizer` from `obj` if it has it (an object already gone is fine); returns the
/// object as the API server has it after the patch, if one was made and it still exists.
pub async fn remove<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let Some(i) = obj.finalizers().iter().position(|f| f == finalizer) else {
        return Ok(None);
    };
    let path = format!("/metadata/finalizers/{i}");
    let ops = json!([
        {"op": "test", "path": path, "value": finalizer},
        {"op": "remove", "path": path},
    ]);
    match patch(api, obj, ops).await {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

async fn patch<K>(api: &Api<K>, obj: &K, ops: serde_json::Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let ops: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(ops),
    )
    .await
}
