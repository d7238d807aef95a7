//! The API calls the driver makes, with absent objects as values and errors sorted into
//! transient and permanent.
use super::FIELD_MANAGER;
use crate::workers::vcluster::driver::DriverError;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::Status;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// Server-side apply (field manager `gantry`, forced: Gantry owns these fields) of a `kind`.
pub(super) async fn apply<K>(api: &Api<K>, kind: &str, object: &K) -> Result<K, DriverError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let meta = object.meta();
    let Some(name) = meta.name.as_deref() else {
        return Err(DriverError::Permanent(format!("a {kind} without a name")));
    };
    let what = match meta.namespace.as_deref() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(|e| kube_error(&format!("apply {what}"), e))
}
/// A GET where an absent object is `None`. A 404 naming no object means the API server does
/// not serve the resource at all (e.g. the HelmChart CRD is missing): that is an error.
pub(super) async fn get_opt<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
) -> Result<Option<K>, DriverError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.get(name).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if is_object_not_found(&status) => Ok(None),
        Err(e) => Err(kube_error(&format!("get {what}"), e)),
    }
}
/// DELETE where an absent object is success.
pub(super) async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
) -> Result<(), DriverError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(kube_error(&format!("delete {what}"), e)),
    }
}
/// A 404 naming an object (rather than a resource type the server does not serve).
fn is_object_not_found(status: &Status) -> bool {
    status.code == 404 && status.details.as_ref().is_some_and(|d| !d.name.is_empty())
}
/// Maps a kube error: network trouble, 5xx, conflicts, throttling and writes into a namespace
/// that is still terminating are worth retrying; everything else (401, 403, 404 of a resource
/// type, 400/422 invalid objects, bad configuration) will fail the same way again.
pub(super) fn kube_error(action: &str, error: kube::Error) -> DriverError {
    match &error {
        kube::Error::Api(status) => {
            let text = if status.message.is_empty() {
                status.reason.as_str()
            } else {
                status.message.as_str()
            };
            let message = format!("{action}: {} {text}", status.code);
            let transient = matches!(status.code, 408 | 409 | 425 | 429 | 500..=599)
                || (status.code == 403 && status.message.contains("being terminated"));
            if transient {
                DriverError::Transient(message)
            } else {
                DriverError::Permanent(message)
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            DriverError::Transient(format!("{action}: {error}"))
        }
        _ => DriverError::Permanent(format!("{action}: {error}")),
    }
}
