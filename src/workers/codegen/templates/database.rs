//! `database` → StatefulSet of the engine's official image with its data on a claim template,
//! a headless Service, and (with `backup`) a CronJob dumping into its own claim.
//!
//! The official images run fine as their unprivileged user (uid/gid 999 for postgres, mysql
//! and redis) with a read-only root filesystem, as long as every path they write is a volume:
//! the data directory, the socket directory and `/tmp`.

use super::index::{Index, NodeRef};
use super::network::Allows;
use super::pod::{
    self, claim_volume, container_security, empty_dir, mount, pod_security, pod_template,
    set_probes, Check, DefaultRequests, Owner, PodParts, Sourced, TMP_VOLUME,
};
use super::storage::claim;
use super::wiring::{secret_env, Wiring};
use super::workloads::cron_spec;
use super::{invalid, Emitted, TemplateError};
use crate::domain::graph::{
    check_cron, check_dns_subdomain, check_env_var_name, check_image_tag, DatabaseEngine,
    DatabaseSpec, NodeBody, SecretRefSpec, DATA_VOLUME, PGDATA, PGPASSWORD, REDISCLI_AUTH,
    SHM_PATH, SHM_VOLUME,
};
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{CronJob, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, SecretEnvSource, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Name of the backup volume in backup pods.
const BACKUP_VOLUME: &str = "backup";
/// Where backup pods see the backup claim.
const BACKUP_PATH: &str = "/backup";
/// User and group of the official postgres, mysql and redis images (Debian/Oracle variants).
const OFFICIAL_IMAGE_UID: i64 = 999;
/// How long a database may take to start (initdb, crash recovery) before liveness counts.
const DATABASE_STARTUP_BUDGET_S: i32 = 600;
/// Time to shut down cleanly (flush, checkpoint) before SIGKILL.
const DATABASE_GRACE_S: i64 = 60;
/// Size of the backup claim unless the graph says otherwise.
const DEFAULT_BACKUP_STORAGE: &str = "10Gi";
/// Days of dumps kept unless the graph says otherwise.
const DEFAULT_RETENTION_DAYS: u32 = 7;

/// What the templates know about an engine. The facts the graph's rules depend on (paths,
/// volumes, variables, defaults) are the graph's, so `validate` checks against the same ones.
#[derive(Debug)]
pub(super) struct EngineInfo {
    /// Official image repository; also the container and port name.
    pub name: &'static str,
    /// The port it listens on.
    pub port: u16,
    /// Where the data claim is mounted.
    data_path: &'static str,
    /// Secret key holding the password the image needs.
    password_key: &'static str,
    /// Whether the image refuses to start without that password.
    password_required: bool,
    /// Request defaults.
    defaults: DefaultRequests,
    /// Paths besides the data directory the engine writes: `(volume name, path)`.
    scratch: &'static [(&'static str, &'static str)],
}

/// The facts of `engine`, from the graph's.
const fn info(engine: DatabaseEngine) -> EngineInfo {
    EngineInfo {
        name: engine.as_str(),
        port: engine.port(),
        data_path: engine.data_path(),
        password_key: engine.password_key(),
        password_required: engine.requires_credentials(),
        defaults: engine.default_requests(),
        scratch: engine.scratch(),
    }
}

/// PostgreSQL.
const POSTGRES: EngineInfo = info(DatabaseEngine::Postgres);
/// MySQL.
const MYSQL: EngineInfo = info(DatabaseEngine::Mysql);
/// Redis.
const REDIS: EngineInfo = info(DatabaseEngine::Redis);

/// The facts of `engine`.
pub(super) fn engine_info(engine: DatabaseEngine) -> &'static EngineInfo {
    match engine {
        DatabaseEngine::Postgres => &POSTGRES,
        DatabaseEngine::Mysql => &MYSQL,
        DatabaseEngine::Redis => &REDIS,
    }
}

/// Credentials as the database and its backup see them.
struct Credentials {
    env: Vec<EnvVar>,
    env_from: Option<EnvFromSource>,
}

/// The credential environment of `engine` from the Secret `secret` names. The password is
/// always an explicit `secretKeyRef`, so a Secret without it stops the pod at start instead of
/// initialising a database without one.
fn credentials(
    engine: &EngineInfo,
    secret_id: &str,
    secret: &SecretRefSpec,
    pointer: &str,
) -> Result<Credentials, TemplateError> {
    if !secret.keys.is_empty() && !secret.keys.iter().any(|k| k == engine.password_key) {
        return Err(invalid(
            pointer,
            format!(
                "`{secret_id}` lists its keys without `{}`, which {} needs",
                engine.password_key, engine.name
            ),
        ));
    }
    let mut env = vec![secret_env(
        engine.password_key,
        &secret.secret_name,
        engine.password_key,
    )];
    if engine.name == REDIS.name {
        // redis-cli (probes, backups) reads its password from REDISCLI_AUTH.
        env.push(secret_env(
            REDISCLI_AUTH,
            &secret.secret_name,
            engine.password_key,
        ));
        return Ok(Credentials {
            env,
            env_from: None,
        });
    }
    if secret.keys.is_empty() {
        // The optional settings (POSTGRES_USER, POSTGRES_DB, MYSQL_DATABASE…) come along.
        return Ok(Credentials {
            env,
            env_from: Some(EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.secret_name.clone(),
                    optional: None,
                }),
                ..Default::default()
            }),
        });
    }
    for key in secret.keys.iter().filter(|k| *k != engine.password_key) {
        check_env_var_name(key).map_err(|d| invalid(pointer, d))?;
        env.push(secret_env(key, &secret.secret_name, key));
    }
    Ok(Credentials {
        env,
        env_from: None,
    })
}

/// The StatefulSet, headless Service and backup of a database node.
pub(super) fn database(
    project: &str,
    index: &Index<'_>,
    node: NodeRef<'_>,
    spec: &DatabaseSpec,
    mut wiring: Wiring,
    allows: &mut Allows,
    out: &mut Vec<Emitted>,
) -> Result<(), TemplateError> {
    let engine = engine_info(spec.engine);
    let id = node.id();
    let owner = node.owner(project);
    check_image_tag(&spec.version).map_err(|d| invalid(node.at("/spec/version"), d))?;
    if let Some(class) = &spec.storage_class {
        check_dns_subdomain(class).map_err(|d| invalid(node.at("/spec/storage_class"), d))?;
    }

    let credentials_at = node.at("/spec/credentials");
    let credentials = match &spec.credentials {
        Some(secret_id) => {
            let secret = index
                .get(secret_id)
                .ok_or_else(|| invalid(&credentials_at, format!("names no node `{secret_id}`")))?;
            let NodeBody::SecretRef(secret_spec) = &secret.node.body else {
                return Err(invalid(
                    &credentials_at,
                    format!("names a {}, not a secret_ref", secret.kind()),
                ));
            };
            Some(credentials(
                engine,
                secret_id,
                secret_spec,
                &credentials_at,
            )?)
        }
        None if engine.password_required => {
            return Err(invalid(
                &credentials_at,
                format!(
                    "{} needs credentials: the id of a secret_ref whose Secret holds `{}`",
                    engine.name, engine.password_key
                ),
            ))
        }
        None => None,
    };

    let mut parts = std::mem::take(&mut wiring.parts);
    if let Some(taken) = parts.volumes.iter().find(|v| v.value.name == DATA_VOLUME) {
        return Err(invalid(
            &taken.pointer,
            format!("needs a pod volume named `{DATA_VOLUME}`, which the database's data uses; rename the node"),
        ));
    }
    if let Some(credentials) = &credentials {
        for var in &credentials.env {
            parts.env.push(Sourced {
                value: var.clone(),
                pointer: credentials_at.clone(),
            });
        }
        parts.env_from.extend(credentials.env_from.clone());
    }
    let mut args = None;
    let readiness = match spec.engine {
        DatabaseEngine::Postgres => {
            let major: String = spec
                .version
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if major.is_empty() {
                return Err(invalid(
                    node.at("/spec/version"),
                    "must start with the major version (`16`, `16.4`)",
                ));
            }
            parts.env.push(Sourced {
                value: EnvVar {
                    name: PGDATA.to_owned(),
                    value: Some(format!("{}/{major}/docker", engine.data_path)),
                    value_from: None,
                },
                pointer: node.at("/spec/version"),
            });
            // Parallel queries allocate dynamic shared memory in /dev/shm, which container
            // runtimes cap at 64 MB.
            parts.add_mounted(
                empty_dir(SHM_VOLUME, "256Mi", true),
                mount(SHM_VOLUME, SHM_PATH, false),
                &node.at("/id"),
            );
            Check::Exec(strings(&[
                "pg_isready",
                "-h",
                "127.0.0.1",
                "-p",
                &engine.port.to_string(),
            ]))
        }
        DatabaseEngine::Mysql => {
            // A subdirectory, because `mysqld --initialize` refuses a volume root holding
            // `lost+found`; the entrypoint creates it.
            args = Some(vec![format!("--datadir={}/data", engine.data_path)]);
            // `mysqladmin ping` exits 0 whenever the server answers, even "access denied".
            Check::Exec(strings(&[
                "mysqladmin",
                "ping",
                "--host=127.0.0.1",
                &format!("--port={}", engine.port),
                "--silent",
            ]))
        }
        DatabaseEngine::Redis => {
            let mut redis_args = strings(&["redis-server", "--appendonly", "yes"]);
            if credentials.is_some() {
                // Kubernetes expands $(REDIS_PASSWORD) from the container's env.
                redis_args.extend(strings(&["--requirepass", "$(REDIS_PASSWORD)"]));
            }
            args = Some(redis_args);
            // redis-cli exits 0 on error replies (LOADING, NOAUTH); only PONG means ready.
            Check::Exec(strings(&[
                "sh",
                "-c",
                &format!(
                    "redis-cli -h 127.0.0.1 -p {} ping | grep -q PONG",
                    engine.port
                ),
            ]))
        }
    };
    parts.mounts.push(Sourced {
        value: mount(DATA_VOLUME, engine.data_path, false),
        pointer: node.at("/id"),
    });
    for (name, path) in engine.scratch {
        let size_limit = if *name == TMP_VOLUME { "1Gi" } else { "64Mi" };
        parts.add_mounted(
            empty_dir(name, size_limit, false),
            mount(name, path, false),
            &node.at("/id"),
        );
    }

    let mut container = Container {
        name: engine.name.to_owned(),
        image: Some(format!("{}:{}", engine.name, spec.version)),
        args,
        ports: Some(vec![ContainerPort {
            container_port: i32::from(engine.port),
            name: Some(engine.name.to_owned()),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        resources: Some(pod::resources(
            spec.resources.as_ref(),
            engine.defaults,
            &node.at("/spec/resources"),
        )?),
        security_context: Some(container_security()),
        ..Default::default()
    };
    set_probes(
        &mut container,
        &Check::Tcp {
            port: engine.name.to_owned(),
        },
        &readiness,
        DATABASE_STARTUP_BUDGET_S,
    );
    let mut template = pod_template(
        &owner,
        parts,
        container,
        pod_security(Some(OFFICIAL_IMAGE_UID)),
        None,
    )?;
    if let Some(pod_spec) = template.spec.as_mut() {
        pod_spec.termination_grace_period_seconds = Some(DATABASE_GRACE_S);
    }
    let data_claim = claim(
        ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(owner.labels()),
            ..Default::default()
        },
        "ReadWriteOnce",
        &spec.storage,
        spec.storage_class.as_deref(),
        &node.at("/spec/storage"),
    )?;
    let mut metadata = owner.meta(id);
    metadata.annotations = wiring.annotations();
    out.push(Emitted::new(
        StatefulSet {
            metadata,
            spec: Some(StatefulSetSpec {
                // One instance: replication and failover are an operator's job, not a template's.
                replicas: Some(1),
                service_name: Some(id.to_owned()),
                selector: owner.selector(),
                template,
                volume_claim_templates: Some(vec![data_claim]),
                // Deleting or scaling the StatefulSet must never delete the data.
                persistent_volume_claim_retention_policy: Some(
                    StatefulSetPersistentVolumeClaimRetentionPolicy {
                        when_deleted: Some("Retain".to_owned()),
                        when_scaled: Some("Retain".to_owned()),
                    },
                ),
                ..Default::default()
            }),
            status: None,
        },
        node.at("/id"),
    ));
    // Headless: clients resolve the pod itself, and only once it is ready.
    out.push(Emitted::new(
        Service {
            metadata: owner.meta(id),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".to_owned()),
                cluster_ip: Some("None".to_owned()),
                selector: Some(owner.selector_labels()),
                ports: Some(vec![ServicePort {
                    name: Some(engine.name.to_owned()),
                    port: i32::from(engine.port),
                    target_port: Some(IntOrString::String(engine.name.to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        },
        node.at("/id"),
    ));

    if let Some(backup) = &spec.backup {
        backup_objects(
            project,
            node,
            spec,
            engine,
            credentials.as_ref(),
            backup,
            allows,
            out,
        )?;
    }
    Ok(())
}

/// The `<id>-backup` CronJob and claim, and the flow from backup pods to the database.
#[allow(clippy::too_many_arguments)]
fn backup_objects(
    project: &str,
    node: NodeRef<'_>,
    spec: &DatabaseSpec,
    engine: &EngineInfo,
    credentials: Option<&Credentials>,
    backup: &crate::domain::graph::DatabaseBackup,
    allows: &mut Allows,
    out: &mut Vec<Emitted>,
) -> Result<(), TemplateError> {
    let id = node.id();
    let name = format!("{id}-backup");
    let owner = Owner {
        name: &name,
        component: "backup",
        project,
    };
    check_cron(&backup.schedule).map_err(|d| invalid(node.at("/spec/backup/schedule"), d))?;
    let days = backup.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    if days == 0 {
        return Err(invalid(
            node.at("/spec/backup/retention_days"),
            "must be at least 1",
        ));
    }
    let minutes = u64::from(days) * 24 * 60;
    let port = engine.port;
    // Dumps are written under a temporary name and renamed, so a failed run never leaves a
    // truncated file that looks complete; old files (and leftovers) go after `days` days, and
    // only once today's dump succeeded (`set -e`).
    let prune =
        format!("find {BACKUP_PATH} -maxdepth 1 -type f -name '{id}-*' -mmin +{minutes} -delete");
    let stamp = "$(date -u +%Y%m%dT%H%M%SZ)";
    let (shell, script) = match spec.engine {
        DatabaseEngine::Postgres => (
            "sh",
            format!(
                "set -eu\n\
                 file=\"{BACKUP_PATH}/{id}-{stamp}.dump\"\n\
                 pg_dump --host={id} --port={port} --username=\"${{POSTGRES_USER:-postgres}}\" \
                 --dbname=\"${{POSTGRES_DB:-${{POSTGRES_USER:-postgres}}}}\" --format=custom \
                 --file=\"$file.partial\"\n\
                 mv \"$file.partial\" \"$file\"\n\
                 {prune}\n"
            ),
        ),
        DatabaseEngine::Mysql => (
            "bash",
            format!(
                "set -euo pipefail\n\
                 umask 077\n\
                 # An option file keeps the password out of the process list.\n\
                 printf '[client]\\nuser=root\\npassword=\"%s\"\\n' \"$MYSQL_ROOT_PASSWORD\" > /tmp/client.cnf\n\
                 file=\"{BACKUP_PATH}/{id}-{stamp}.sql.gz\"\n\
                 mysqldump --defaults-extra-file=/tmp/client.cnf --host={id} --port={port} \
                 --single-transaction --routines --events --triggers --all-databases \
                 | gzip > \"$file.partial\"\n\
                 mv \"$file.partial\" \"$file\"\n\
                 {prune}\n"
            ),
        ),
        DatabaseEngine::Redis => (
            "sh",
            format!(
                "set -eu\n\
                 file=\"{BACKUP_PATH}/{id}-{stamp}.rdb\"\n\
                 redis-cli -h {id} -p {port} --rdb \"$file.partial\"\n\
                 mv \"$file.partial\" \"$file\"\n\
                 {prune}\n"
            ),
        ),
    };

    let mut parts = PodParts::default();
    if let Some(credentials) = credentials {
        for var in &credentials.env {
            parts.env.push(Sourced {
                value: var.clone(),
                pointer: node.at("/spec/credentials"),
            });
        }
        parts.env_from.extend(credentials.env_from.clone());
        if spec.engine == DatabaseEngine::Postgres {
            if let Some(password) = credentials.env.first() {
                // pg_dump reads the password from PGPASSWORD.
                let mut pg_password = password.clone();
                pg_password.name = PGPASSWORD.to_owned();
                parts.env.push(Sourced {
                    value: pg_password,
                    pointer: node.at("/spec/credentials"),
                });
            }
        }
    }
    parts.add_tmp(&node.at("/spec/backup"));
    parts.add_mounted(
        claim_volume(BACKUP_VOLUME, &name),
        mount(BACKUP_VOLUME, BACKUP_PATH, false),
        &node.at("/spec/backup"),
    );
    let container = Container {
        name: BACKUP_VOLUME.to_owned(),
        // The server's own image: its dump tool matches the server version.
        image: Some(format!("{}:{}", engine.name, spec.version)),
        command: Some(strings(&[shell, "-c", &script])),
        resources: Some(pod::resources(
            None,
            DefaultRequests {
                cpu: "100m",
                memory: "256Mi",
            },
            &node.at("/spec/backup"),
        )?),
        security_context: Some(container_security()),
        ..Default::default()
    };
    let template = pod_template(
        &owner,
        parts,
        container,
        pod_security(Some(OFFICIAL_IMAGE_UID)),
        Some("Never"),
    )?;
    let job = JobSpec {
        backoff_limit: Some(2),
        template,
        ..Default::default()
    };
    out.push(Emitted::new(
        CronJob {
            metadata: owner.meta(&name),
            spec: Some(cron_spec(&owner, &backup.schedule, "Forbid", job)),
            status: None,
        },
        node.at("/spec/backup"),
    ));
    out.push(Emitted::new(
        claim(
            owner.meta(&name),
            "ReadWriteOnce",
            backup.storage.as_deref().unwrap_or(DEFAULT_BACKUP_STORAGE),
            spec.storage_class.as_deref(),
            &node.at("/spec/backup/storage"),
        )?,
        node.at("/spec/backup"),
    ));
    allows.register(&name, "backup", node.at("/spec/backup"));
    allows.connect(
        &name,
        id,
        super::network::PortRef {
            port,
            protocol: "TCP",
        },
    );
    Ok(())
}

/// Owned copies of `items`.
fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
