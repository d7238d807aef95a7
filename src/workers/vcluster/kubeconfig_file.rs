//! The kubeconfig of a ready workspace: its vCluster's endpoint and CA, and a user that runs
//! the OIDC exec plugin. Written with the YAML serializer from typed structs, so no value can
//! break the document's structure.

/// A kubeconfig could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the kubeconfig failed: {0}")]
pub struct KubeconfigError(#[from] serde_saphyr::SerializeError);

/// A kubeconfig whose user runs the OIDC exec plugin (`kubectl oidc-login`), never a static
/// credential.
pub fn kubeconfig(
    name: &str,
    endpoint: &str,
    ca_data: &str,
    issuer: &str,
    client_id: &str,
) -> Result<String, KubeconfigError> {
    let config = file::Config {
        api_version: "v1",
        kind: "Config",
        clusters: vec![file::NamedCluster {
            name,
            cluster: file::Cluster {
                server: endpoint,
                certificate_authority_data: ca_data,
            },
        }],
        users: vec![file::NamedUser {
            name: file::OIDC_USER,
            user: file::User {
                exec: file::ExecConfig {
                    api_version: "client.authentication.k8s.io/v1beta1",
                    command: "kubectl",
                    args: vec![
                        "oidc-login".to_owned(),
                        "get-token".to_owned(),
                        format!("--oidc-issuer-url={issuer}"),
                        format!("--oidc-client-id={client_id}"),
                    ],
                    interactive_mode: "IfAvailable",
                },
            },
        }],
        contexts: vec![file::NamedContext {
            name,
            context: file::Context {
                cluster: name,
                user: file::OIDC_USER,
            },
        }],
        current_context: name,
    };
    Ok(serde_saphyr::to_string(&config)?)
}

/// The parts of the kubeconfig file format (`kind: Config`) that [`kubeconfig`] writes.
mod file {
    use serde::Serialize;

    /// Name of the kubeconfig's one user, the OIDC exec plugin.
    pub const OIDC_USER: &str = "oidc";

    /// The whole file.
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Config<'a> {
        #[serde(rename = "apiVersion")]
        pub api_version: &'a str,
        pub kind: &'a str,
        pub clusters: Vec<NamedCluster<'a>>,
        pub users: Vec<NamedUser<'a>>,
        pub contexts: Vec<NamedContext<'a>>,
        pub current_context: &'a str,
    }

    /// One entry of `clusters`.
    #[derive(Serialize)]
    pub struct NamedCluster<'a> {
        pub name: &'a str,
        pub cluster: Cluster<'a>,
    }

    /// Where the API server is and which CA signs its certificate.
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Cluster<'a> {
        pub server: &'a str,
        pub certificate_authority_data: &'a str,
    }

    /// One entry of `users`.
    #[derive(Serialize)]
    pub struct NamedUser<'a> {
        pub name: &'a str,
        pub user: User<'a>,
    }

    /// How a user authenticates: always through an exec plugin.
    #[derive(Serialize)]
    pub struct User<'a> {
        pub exec: ExecConfig<'a>,
    }

    /// A client-go credential plugin.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ExecConfig<'a> {
        pub api_version: &'a str,
        pub command: &'a str,
        pub args: Vec<String>,
        pub interactive_mode: &'a str,
    }

    /// One entry of `contexts`.
    #[derive(Serialize)]
    pub struct NamedContext<'a> {
        pub name: &'a str,
        pub context: Context<'a>,
    }

    /// A cluster and the user to reach it as.
    #[derive(Serialize)]
    pub struct Context<'a> {
        pub cluster: &'a str,
        pub user: &'a str,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn kubeconfig_is_the_oidc_exec_config() {
        let text = kubeconfig(
            "dev",
            "https://dev.vcluster.example.com",
            "Q0EgZGF0YQ==",
            "https://issuer.example.com/realms/gantry",
            "gantry-cli",
        )
        .expect("kubeconfig");
        let parsed: Value = serde_saphyr::from_str(&text).expect("valid YAML");
        assert_eq!(
            parsed,
            json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "dev", "cluster": {
                    "server": "https://dev.vcluster.example.com",
                    "certificate-authority-data": "Q0EgZGF0YQ==",
                }}],
                "users": [{"name": "oidc", "user": {"exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "command": "kubectl",
                    "args": [
                        "oidc-login",
                        "get-token",
                        "--oidc-issuer-url=https://issuer.example.com/realms/gantry",
                        "--oidc-client-id=gantry-cli",
                    ],
                    "interactiveMode": "IfAvailable",
                }}}],
                "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "oidc"}}],
                "current-context": "dev",
            })
        );
        // Plain scalars, as kubectl users expect to read them.
        assert!(
            text.contains("server: https://dev.vcluster.example.com"),
            "{text}"
        );
    }

    #[test]
    fn odd_values_stay_values() {
        let text = kubeconfig("a: b", "https://x", "#ca", "https://i\nkind: Evil", "c'\"")
            .expect("kubeconfig");
        let parsed: Value = serde_saphyr::from_str(&text).expect("valid YAML");
        assert_eq!(parsed["kind"], "Config");
        assert_eq!(parsed["current-context"], "a: b");
        assert_eq!(
            parsed["clusters"][0]["cluster"]["certificate-authority-data"],
            "#ca"
        );
        assert_eq!(
            parsed["users"][0]["user"]["exec"]["args"][3],
            "--oidc-client-id=c'\""
        );
    }
}
