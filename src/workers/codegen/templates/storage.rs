//! `config` → ConfigMap and `volume` → PersistentVolumeClaim. (`secret_ref` generates nothing:
//! it names a Secret that already exists, so secret values never pass through Gantry.)

use super::index::NodeRef;
use super::{invalid, Emitted, TemplateError};
use crate::domain::graph::{check_data_key, check_size, escape_pointer, ConfigSpec, VolumeSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Access modes a volume may ask for.
const ACCESS_MODES: [&str; 4] = [
    "ReadWriteOnce",
    "ReadWriteMany",
    "ReadOnlyMany",
    "ReadWriteOncePod",
];

/// The ConfigMap `<id>`.
pub(super) fn config(
    project: &str,
    node: NodeRef<'_>,
    spec: &ConfigSpec,
    out: &mut Vec<Emitted>,
) -> Result<(), TemplateError> {
    for key in spec.data.keys() {
        check_data_key(key)
            .map_err(|d| invalid(node.at(&format!("/spec/data/{}", escape_pointer(key))), d))?;
    }
    let owner = node.owner(project);
    out.push(Emitted::new(
        ConfigMap {
            metadata: owner.meta(node.id()),
            data: (!spec.data.is_empty()).then(|| spec.data.clone()),
            ..Default::default()
        },
        node.at("/id"),
    ));
    Ok(())
}

/// The PersistentVolumeClaim `<id>`.
pub(super) fn volume(
    project: &str,
    node: NodeRef<'_>,
    spec: &VolumeSpec,
    out: &mut Vec<Emitted>,
) -> Result<(), TemplateError> {
    let mode = spec.access_mode.as_deref().unwrap_or("ReadWriteOnce");
    if !ACCESS_MODES.contains(&mode) {
        return Err(invalid(
            node.at("/spec/access_mode"),
            format!("must be one of {}", ACCESS_MODES.join(", ")),
        ));
    }
    let owner = node.owner(project);
    out.push(Emitted::new(
        claim(
            owner.meta(node.id()),
            mode,
            &spec.size,
            spec.storage_class.as_deref(),
            &node.at("/spec/size"),
        )?,
        node.at("/id"),
    ));
    Ok(())
}

/// A claim of `size` (checked; `pointer` locates it) in `storage_class`.
pub(super) fn claim(
    metadata: ObjectMeta,
    mode: &str,
    size: &str,
    storage_class: Option<&str>,
    pointer: &str,
) -> Result<PersistentVolumeClaim, TemplateError> {
    check_size(size).map_err(|d| invalid(pointer, d))?;
    Ok(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![mode.to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.to_owned()),
                )])),
                limits: None,
            }),
            storage_class_name: storage_class.map(str::to_owned),
            ..Default::default()
        }),
        status: None,
    })
}
