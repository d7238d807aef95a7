//! The typed Kubernetes objects an engine may produce, and their YAML form.
//!
//! Both engines end here: the templates build these types directly, and the `llm` engine's answer
//! must parse back into them ([`Object::from_yaml`]) before anything is stored. YAML is written
//! with `serde-saphyr` (maintained, pure Rust, panic-free parser; `serde_yaml` is deprecated).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::Resource;
use serde::Deserialize;

/// Why a YAML document is not one of the objects we produce.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Not YAML, or not the shape of its kind.
    #[error("{0}")]
    Parse(String),
    /// `apiVersion`/`kind` of a type we do not produce.
    #[error("unsupported object {api_version}/{kind}")]
    Unsupported {
        /// The document's `apiVersion`.
        api_version: String,
        /// The document's `kind`.
        kind: String,
    },
    /// The object could not be written as YAML.
    #[error("cannot serialize: {0}")]
    Serialize(String),
}

/// The header every Kubernetes document starts with.
#[derive(Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

macro_rules! objects {
    ($($variant:ident($ty:ty)),+ $(,)?) => {
        /// One generated Kubernetes object.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Object {
            $(
                #[doc = concat!("A `", stringify!($variant), "`.")]
                $variant(Box<$ty>),
            )+
        }

        /// Every kind an engine may produce.
        pub const KINDS: &[&str] = &[$(<$ty as Resource>::KIND),+];

        impl Object {
            /// The object's `kind`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Object::$variant(_) => <$ty as Resource>::KIND,)+
                }
            }

            /// The object's `apiVersion`.
            pub fn api_version(&self) -> &'static str {
                match self {
                    $(Object::$variant(_) => <$ty as Resource>::API_VERSION,)+
                }
            }

            /// The object's `metadata.name` (empty when unset).
            pub fn name(&self) -> &str {
                match self {
                    $(Object::$variant(o) => o.metadata.name.as_deref().unwrap_or(""),)+
                }
            }

            /// The object as one YAML document (no leading `---`).
            pub fn to_yaml(&self) -> Result<String, ObjectError> {
                let written = match self {
                    $(Object::$variant(o) => serde_saphyr::to_string(o.as_ref()),)+
                };
                written.map_err(|e| ObjectError::Serialize(e.to_string()))
            }

            /// Parses one YAML document into the typed object its `apiVersion`/`kind` name.
            pub fn from_yaml(document: &str) -> Result<Object, ObjectError> {
                let meta: TypeMeta = serde_saphyr::from_str(document)
                    .map_err(|e| ObjectError::Parse(e.to_string()))?;
                $(
                    if meta.api_version == <$ty as Resource>::API_VERSION
                        && meta.kind == <$ty as Resource>::KIND
                    {
                        let object: $ty = serde_saphyr::from_str(document).map_err(|e| {
                            ObjectError::Parse(format!("{} {}: {e}", meta.api_version, meta.kind))
                        })?;
                        return Ok(Object::$variant(Box::new(object)));
                    }
                )+
                Err(ObjectError::Unsupported { api_version: meta.api_version, kind: meta.kind })
            }
        }

        $(
            impl From<$ty> for Object {
                fn from(object: $ty) -> Object {
                    Object::$variant(Box::new(object))
                }
            }
        )+
    };
}

objects!(
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    Job(Job),
    CronJob(CronJob),
    Service(Service),
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Ingress(Ingress),
    NetworkPolicy(NetworkPolicy),
    PodDisruptionBudget(PodDisruptionBudget),
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
);

impl Object {
    /// The file this object is written to: `<kind>-<name>.yaml`, lower-case.
    pub fn file_name(&self) -> String {
        format!("{}-{}.yaml", self.kind().to_ascii_lowercase(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn round_trip() {
        let object = Object::from(ConfigMap {
            metadata: ObjectMeta {
                name: Some("settings".into()),
                ..Default::default()
            },
            data: Some([("A".to_owned(), "1".to_owned())].into()),
            ..Default::default()
        });
        let yaml = object.to_yaml().unwrap();
        assert!(yaml.contains("kind: ConfigMap"), "{yaml}");
        assert_eq!(Object::from_yaml(&yaml).unwrap(), object);
        assert_eq!(object.file_name(), "configmap-settings.yaml");
        assert!(matches!(
            Object::from_yaml("apiVersion: v1\nkind: Pod\n"),
            Err(ObjectError::Unsupported { .. })
        ));
        assert!(Object::from_yaml(": : :").is_err());
    }
}
