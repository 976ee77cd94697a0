//! ovn-central, ovs-ovn, kube-ovn-controller, kube-ovn-cni and kube-ovn-pinger as upstream's
//! `dist/images/install.sh` renders them for default settings (no SSL, no IPsec, no DPDK,
//! logs under `/var/log`, kubelet in `/var/lib/kubelet`, geneve), with upstream's ConfigMaps
//! and Services. The controller's, daemon's and install-cni's command lines and environment
//! come from `common/upstream-flags/invocations.txt` (extracted from the same install.sh), so
//! they are the ones the `upstream_flags` tests parse.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec,
    DeploymentStrategy, RollingUpdateDaemonSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    ExecAction, HTTPGetAction, HostPathVolumeSource, NodeAffinity, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSecurityContext,
    PodSpec, PodTemplateSpec, PreferredSchedulingTerm, Probe, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use super::{IMAGE, NAMESPACE};

/// upstream's command lines, as extracted by `common/upstream-flags/extract.py`.
const INVOCATIONS: &str = include_str!("../../upstream-flags/invocations.txt");

/// Where upstream's install.sh keeps its logs by default (`LOG_DIR`).
const LOG_DIR: &str = "/var/log";
/// kubelet's directory (`KUBELET_DIR`).
const KUBELET_DIR: &str = "/var/lib/kubelet";
/// The user the OVN and controller containers run as (`RUN_AS_USER`, nobody).
const RUN_AS_NOBODY: i64 = 65534;

/// One `[<binary> install.sh]` section of `invocations.txt`.
#[derive(Debug, Clone)]
struct Invocation {
    argv: Vec<String>,
    env: Vec<(String, String)>,
}

fn invocation(label: &str) -> Result<Invocation, String> {
    let header = format!("[{label}] ");
    let mut lines = INVOCATIONS.lines().skip_while(|l| !l.starts_with(&header));
    if lines.next().is_none() {
        return Err(format!("invocations.txt has no [{label}] section"));
    }
    let mut inv = Invocation {
        argv: Vec::new(),
        env: Vec::new(),
    };
    for line in lines.take_while(|l| !l.starts_with('[')) {
        if let Some(a) = line.strip_prefix("arg ") {
            inv.argv.push(a.to_string());
        } else if let Some(e) = line.strip_prefix("env ") {
            let (k, v) = e
                .split_once('=')
                .ok_or_else(|| format!("invocations.txt [{label}]: {line:?} is not NAME=value"))?;
            inv.env.push((k.to_string(), v.to_string()));
        }
    }
    if inv.argv.is_empty() {
        return Err(format!("invocations.txt [{label}] has no arguments"));
    }
    Ok(inv)
}

/// The environment of an invocation: `<fieldRef path>` values become the downward API, a
/// `<...>` value install.sh computes at install time (the ovn-central node IPs) is left empty
/// for `dist/install.sh` to set.
fn env_of(inv: &Invocation) -> Vec<EnvVar> {
    inv.env
        .iter()
        .map(|(k, v)| {
            match v
                .strip_prefix("<fieldRef ")
                .and_then(|p| p.strip_suffix('>'))
            {
                Some(path) => env_field(k, path),
                None if v.starts_with('<') => env_value(k, ""),
                None => env_value(k, v),
            }
        })
        .collect()
}

fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(name: &str, description: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        annotations: (!description.is_empty())
            .then(|| map(&[("kubernetes.io/description", description)])),
        ..Default::default()
    }
}

/// Pod labels of every kube-ovn workload: `app`, `component: network`, `type: infra`.
fn pod_labels(app: &str) -> BTreeMap<String, String> {
    map(&[("app", app), ("component", "network"), ("type", "infra")])
}

fn selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(map(&[("app", app)])),
        match_expressions: None,
    }
}

fn host_path(name: &str, path: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: None,
        }),
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn tls_secret() -> Volume {
    Volume {
        name: "kube-ovn-tls".into(),
        secret: Some(SecretVolumeSource {
            optional: Some(true),
            secret_name: Some("kube-ovn-tls".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn mount_ro(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        read_only: Some(true),
        ..mount(name, path)
    }
}

fn mount_rw(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        read_only: Some(false),
        ..mount(name, path)
    }
}

fn mount_host_to_container(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        mount_propagation: Some("HostToContainer".into()),
        ..mount(name, path)
    }
}

fn resources(req_cpu: &str, req_mem: &str, lim_cpu: &str, lim_mem: &str) -> ResourceRequirements {
    let q = |s: &str| Quantity(s.into());
    ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_string(), q(req_cpu)),
                ("memory".to_string(), q(req_mem)),
            ]
            .into(),
        ),
        limits: Some(
            [
                ("cpu".to_string(), q(lim_cpu)),
                ("memory".to_string(), q(lim_mem)),
                ("ephemeral-storage".to_string(), q("1Gi")),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

fn tolerations(no_execute: bool) -> Vec<Toleration> {
    let exists = |effect: Option<&str>, key: Option<&str>| Toleration {
        effect: effect.map(Into::into),
        key: key.map(Into::into),
        operator: Some("Exists".into()),
        ..Default::default()
    };
    let mut t = vec![exists(Some("NoSchedule"), None)];
    if no_execute {
        t.push(exists(Some("NoExecute"), None));
    }
    t.push(exists(None, Some("CriticalAddonsOnly")));
    t
}

/// The privileged root init container that prepares host paths (`hostpath-init`).
fn hostpath_init(command: &[&str], mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: "hostpath-init".into(),
        image: Some(IMAGE.into()),
        command: Some(strings(command)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                add: None,
            }),
            privileged: Some(true),
            run_as_user: Some(0),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn caps(user: i64, add: &[&str]) -> SecurityContext {
    SecurityContext {
        run_as_user: Some(user),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            add: Some(strings(add)),
            drop: None,
        }),
        ..Default::default()
    }
}

fn exec_probe(script: &str, initial: Option<i32>, period: i32, failures: Option<i32>) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(strings(&["bash", script])),
        }),
        initial_delay_seconds: initial,
        period_seconds: Some(period),
        failure_threshold: failures,
        timeout_seconds: Some(45),
        ..Default::default()
    }
}

fn http_probe(port: i32, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(port),
            path: Some(path.into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        timeout_seconds: Some(5),
        ..Default::default()
    }
}

fn pod_spec_base(service_account: &str, priority: &str) -> PodSpec {
    PodSpec {
        priority_class_name: Some(priority.into()),
        service_account_name: Some(service_account.into()),
        automount_service_account_token: Some(true),
        host_network: Some(true),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn anti_affinity(app: &str) -> PodAntiAffinity {
    PodAntiAffinity {
        required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
            label_selector: Some(selector(app)),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// The object as JSON (k8s-openapi writes its `apiVersion` and `kind`).
fn json<T: Serialize>(object: &T) -> Result<serde_json::Value, String> {
    serde_json::to_value(object).map_err(|e| e.to_string())
}

fn service(name: &str, port: i32, app_selector: BTreeMap<String, String>) -> Service {
    Service {
        metadata: meta(name, ""),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some(name.into()),
                protocol: Some("TCP".into()),
                port,
                target_port: Some(IntOrString::Int(port)),
                ..Default::default()
            }]),
            type_: Some("ClusterIP".into()),
            selector: Some(app_selector),
            session_affinity: Some("None".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// The `ovn-nb`, `ovn-sb` and `ovn-northd` Services (ports 6641–6643), selecting the
/// ovn-central pod that leads each.
pub fn ovn_services() -> Result<Vec<serde_json::Value>, String> {
    [
        ("ovn-nb", 6641, "ovn-nb-leader"),
        ("ovn-sb", 6642, "ovn-sb-leader"),
        ("ovn-northd", 6643, "ovn-northd-leader"),
    ]
    .iter()
    .map(|(name, port, leader)| {
        json(&service(
            name,
            *port,
            map(&[("app", "ovn-central"), (leader, "true")]),
        ))
    })
    .collect()
}

/// The ovn-central Deployment: NB, SB and northd through `start-db.sh`.
pub fn ovn_central() -> Deployment {
    let mounts = vec![
        mount("host-run-ovn", "/var/run/ovn"),
        mount("host-config-ovn", "/etc/ovn"),
        mount("host-log-ovn", "/var/log/ovn"),
    ];
    let mut container_mounts = mounts.clone();
    container_mounts.extend([
        mount_ro("localtime", "/etc/localtime"),
        mount("kube-ovn-tls", "/var/run/tls"),
    ]);
    let env = vec![
        env_value("ENABLE_SSL", "false"),
        env_value("TLS_MIN_VERSION", ""),
        env_value("TLS_MAX_VERSION", ""),
        env_value("TLS_CIPHER_SUITES", ""),
        env_value("NODE_IPS", ""),
        env_field("POD_IP", "status.podIP"),
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
        env_field("POD_IPS", "status.podIPs"),
        env_value("ENABLE_BIND_LOCAL_IP", "true"),
        env_value("DEBUG_WRAPPER", ""),
        env_value("PROBE_INTERVAL", "180000"),
        env_value("OVN_NORTHD_PROBE_INTERVAL", "5000"),
        env_value("OVN_LEADER_PROBE_INTERVAL", "5"),
        env_value("OVN_NORTHD_N_THREADS", "1"),
        env_value("ENABLE_COMPACT", "false"),
    ];
    let container = Container {
        name: "ovn-central".into(),
        image: Some(IMAGE.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(strings(&["bash", "/kube-ovn/start-db.sh"])),
        security_context: Some(caps(RUN_AS_NOBODY, &["NET_BIND_SERVICE", "SYS_NICE"])),
        env: Some(env),
        resources: Some(resources("300m", "300Mi", "4", "4Gi")),
        volume_mounts: Some(container_mounts),
        readiness_probe: Some(exec_probe("/kube-ovn/ovn-healthcheck.sh", None, 15, None)),
        liveness_probe: Some(exec_probe(
            "/kube-ovn/ovn-healthcheck.sh",
            Some(30),
            15,
            Some(10),
        )),
        ..Default::default()
    };
    let spec = PodSpec {
        tolerations: Some(tolerations(true)),
        affinity: Some(Affinity {
            pod_anti_affinity: Some(anti_affinity("ovn-central")),
            ..Default::default()
        }),
        init_containers: Some(vec![hostpath_init(
            &[
                "sh",
                "-c",
                "chown -R nobody: /var/run/ovn /etc/ovn /var/log/ovn",
            ],
            mounts,
        )]),
        containers: vec![container],
        node_selector: Some(map(&[
            ("kubernetes.io/os", "linux"),
            ("kube-ovn/role", "master"),
        ])),
        volumes: Some(vec![
            host_path("host-run-ovn", "/run/ovn"),
            host_path("host-config-ovn", "/etc/origin/ovn"),
            host_path("host-log-ovn", &format!("{LOG_DIR}/ovn")),
            host_path("localtime", "/etc/localtime"),
            tls_secret(),
        ]),
        ..pod_spec_base("ovn-ovs", "system-cluster-critical")
    };
    Deployment {
        metadata: meta(
            "ovn-central",
            "OVN central: the NB and SB databases and ovn-northd.\n",
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            strategy: Some(DeploymentStrategy {
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
                type_: Some("RollingUpdate".into()),
            }),
            selector: selector("ovn-central"),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels("ovn-central")),
                    ..Default::default()
                }),
                spec: Some(spec),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The ovs-ovn DaemonSet: Open vSwitch and ovn-controller through `start-ovs.sh`.
pub fn ovs_ovn() -> DaemonSet {
    let init_mounts = vec![
        mount_ro("host-modules", "/lib/modules"),
        mount("usr-local-sbin", "/usr/local/sbin"),
        mount("host-log-ovn", "/var/log/ovn"),
        mount("host-run-ovn", "/var/run/ovn"),
        mount("host-config-openvswitch", "/etc/openvswitch"),
        mount("host-run-ovs", "/var/run/openvswitch"),
        mount("host-log-ovs", "/var/log/openvswitch"),
    ];
    let env = vec![
        env_value("ENABLE_SSL", "false"),
        env_field("POD_IP", "status.podIP"),
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
        env_value("HW_OFFLOAD", "false"),
        env_value("TUNNEL_TYPE", "geneve"),
        env_field("NODE_NAME", "spec.nodeName"),
        env_value("OVN_DB_IPS", ""),
        env_value("DEBUG_WRAPPER", ""),
        env_value("OVN_REMOTE_PROBE_INTERVAL", "10000"),
        env_value("OVN_REMOTE_OPENFLOW_INTERVAL", "180"),
    ];
    let container = Container {
        name: "openvswitch".into(),
        image: Some(IMAGE.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(strings(&["/kube-ovn/start-ovs.sh"])),
        security_context: Some(caps(
            RUN_AS_NOBODY,
            &[
                "NET_ADMIN",
                "NET_BIND_SERVICE",
                "NET_RAW",
                "SYS_NICE",
                "SYS_ADMIN",
            ],
        )),
        env: Some(env),
        volume_mounts: Some(vec![
            mount("usr-local-sbin", "/usr/local/sbin"),
            mount_ro("host-modules", "/lib/modules"),
            mount("host-run-ovs", "/var/run/openvswitch"),
            mount("host-run-ovn", "/var/run/ovn"),
            mount("host-config-openvswitch", "/etc/openvswitch"),
            mount("host-log-ovs", "/var/log/openvswitch"),
            mount("host-log-ovn", "/var/log/ovn"),
            mount_ro("localtime", "/etc/localtime"),
            mount("kube-ovn-tls", "/var/run/tls"),
            mount_ro("cruntime", "/var/run/containerd"),
        ]),
        readiness_probe: Some(exec_probe(
            "/kube-ovn/ovs-healthcheck.sh",
            Some(10),
            5,
            None,
        )),
        liveness_probe: Some(exec_probe(
            "/kube-ovn/ovs-healthcheck.sh",
            Some(60),
            5,
            Some(5),
        )),
        resources: Some(resources("200m", "200Mi", "2", "1000Mi")),
        ..Default::default()
    };
    let spec = PodSpec {
        tolerations: Some(tolerations(true)),
        host_pid: Some(true),
        init_containers: Some(vec![hostpath_init(
            &[
                "sh",
                "-xec",
                "chmod +t /usr/local/sbin\n\
                 chown -R nobody: /var/run/ovn /var/log/ovn /etc/openvswitch /var/run/openvswitch /var/log/openvswitch\n\
                 iptables -V\n\
                 /usr/share/openvswitch/scripts/ovs-ctl load-kmod\n",
            ],
            init_mounts,
        )]),
        containers: vec![container],
        node_selector: Some(map(&[("kubernetes.io/os", "linux")])),
        volumes: Some(vec![
            empty_dir("usr-local-sbin"),
            host_path("host-modules", "/lib/modules"),
            host_path("host-run-ovs", "/run/openvswitch"),
            host_path("host-run-ovn", "/run/ovn"),
            host_path("host-config-openvswitch", "/etc/origin/openvswitch"),
            host_path("host-log-ovs", &format!("{LOG_DIR}/openvswitch")),
            host_path("host-log-ovn", &format!("{LOG_DIR}/ovn")),
            host_path("localtime", "/etc/localtime"),
            host_path("cruntime", "/var/run/containerd"),
            tls_secret(),
        ]),
        ..pod_spec_base("ovn-ovs", "system-node-critical")
    };
    DaemonSet {
        metadata: meta(
            "ovs-ovn",
            "Open vSwitch and ovn-controller on every node.\n",
        ),
        spec: Some(DaemonSetSpec {
            selector: selector("ovs"),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels("ovs")),
                    ..Default::default()
                }),
                spec: Some(spec),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The `kube-ovn-pinger` metrics Service and DaemonSet: the connectivity prober on every node
/// (`kube_ovn_daemon::pinger`), in the pod network, as upstream's install.sh renders them
/// (external address 1.1.1.1, external domain kube-ovn.io., metrics on).
pub fn pinger() -> Result<Vec<serde_json::Value>, String> {
    let svc = Service {
        metadata: ObjectMeta {
            labels: Some(map(&[("app", "kube-ovn-pinger")])),
            ..meta("kube-ovn-pinger", "")
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("metrics".into()),
                port: 8080,
                ..Default::default()
            }]),
            selector: Some(map(&[("app", "kube-ovn-pinger")])),
            ..Default::default()
        }),
        status: None,
    };
    let container = Container {
        name: "pinger".into(),
        image: Some(IMAGE.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(strings(&["/kube-ovn/kube-ovn-pinger"])),
        args: Some(strings(&[
            "--external-address=1.1.1.1",
            "--external-dns=kube-ovn.io.",
            "--logtostderr=false",
            "--alsologtostderr=true",
            "--log_file=/var/log/kube-ovn/kube-ovn-pinger.log",
            "--log_file_max_size=200",
            "--enable-metrics=true",
        ])),
        security_context: Some(caps(RUN_AS_NOBODY, &["NET_BIND_SERVICE", "NET_RAW"])),
        env: Some(vec![
            env_value("ENABLE_SSL", "false"),
            env_field("POD_IP", "status.podIP"),
            env_field("HOST_IP", "status.hostIP"),
            env_field("POD_NAME", "metadata.name"),
            env_field("POD_NAMESPACE", "metadata.namespace"),
            env_field("NODE_NAME", "spec.nodeName"),
        ]),
        volume_mounts: Some(vec![
            mount("host-run-ovs", "/var/run/openvswitch"),
            mount("host-run-ovn", "/var/run/ovn"),
            mount("host-config-openvswitch", "/etc/openvswitch"),
            mount_ro("host-log-ovs", "/var/log/openvswitch"),
            mount_ro("host-log-ovn", "/var/log/ovn"),
            mount("kube-ovn-log", "/var/log/kube-ovn"),
            mount_ro("localtime", "/etc/localtime"),
            mount("kube-ovn-tls", "/var/run/tls"),
        ]),
        resources: Some(resources("100m", "100Mi", "200m", "400Mi")),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(15),
            period_seconds: Some(20),
            ..http_probe(8080, "/metrics")
        }),
        readiness_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            ..http_probe(8080, "/metrics")
        }),
        ..Default::default()
    };
    let spec = PodSpec {
        host_network: None,
        host_pid: Some(false),
        init_containers: Some(vec![hostpath_init(
            &["sh", "-c", "chown -R nobody: /var/log/kube-ovn"],
            vec![mount("kube-ovn-log", "/var/log/kube-ovn")],
        )]),
        containers: vec![container],
        node_selector: Some(map(&[("kubernetes.io/os", "linux")])),
        volumes: Some(vec![
            host_path("host-run-ovs", "/run/openvswitch"),
            host_path("host-run-ovn", "/run/ovn"),
            host_path("host-config-openvswitch", "/etc/origin/openvswitch"),
            host_path("host-log-ovs", &format!("{LOG_DIR}/openvswitch")),
            host_path("kube-ovn-log", &format!("{LOG_DIR}/kube-ovn")),
            host_path("host-log-ovn", &format!("{LOG_DIR}/ovn")),
            host_path("localtime", "/etc/localtime"),
            tls_secret(),
        ]),
        ..pod_spec_base("kube-ovn-app", "system-node-critical")
    };
    let ds = DaemonSet {
        metadata: meta(
            "kube-ovn-pinger",
            "This daemon set launches the pinger daemon.\n",
        ),
        spec: Some(DaemonSetSpec {
            selector: selector("kube-ovn-pinger"),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels("kube-ovn-pinger")),
                    ..Default::default()
                }),
                spec: Some(spec),
            },
            ..Default::default()
        }),
        status: None,
    };
    Ok(vec![json(&svc)?, json(&ds)?])
}

/// upstream's ConfigMaps (`ovn-vpc-nat-config`, `ovn-vpc-nat-gw-config`) and the metrics
/// Services of the controller (10660) and the daemon (10665).
pub fn config_and_metrics() -> Result<Vec<serde_json::Value>, String> {
    let config_map = |name: &str, description: &str, data: &[(&str, &str)]| ConfigMap {
        metadata: meta(name, description),
        data: Some(map(data)),
        ..Default::default()
    };
    let metrics = |app: &str, port: i32| Service {
        metadata: ObjectMeta {
            labels: Some(map(&[("app", app)])),
            ..meta(app, "")
        },
        spec: Some(ServiceSpec {
            selector: Some(map(&[("app", app)])),
            ports: Some(vec![ServicePort {
                port,
                name: Some("metrics".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    Ok(vec![
        json(&config_map(
            "ovn-vpc-nat-config",
            "The image of VPC NAT gateway and lb-svc pods: kube-ovn-rs's lb-svc agent \
             (kube-ovn-lb-svc) is in the kube-ovn image, upstream's vpc-nat-gateway image \
             has none.\n",
            &[("image", super::IMAGE)],
        ))?,
        json(&config_map(
            "ovn-vpc-nat-gw-config",
            "",
            &[("enable-vpc-nat-gw", "true")],
        ))?,
        json(&metrics("kube-ovn-controller", 10660))?,
        json(&metrics("kube-ovn-cni", 10665))?,
    ])
}

/// The controller and CNI workloads, built from upstream's extracted command lines.
#[derive(Debug, Clone)]
pub struct Workloads {
    controller: Invocation,
    daemon: Invocation,
    install_cni: Invocation,
}

impl Workloads {
    /// Reads the `install.sh` sections of `invocations.txt`.
    pub fn from_upstream_invocations() -> Result<Workloads, String> {
        Ok(Workloads {
            controller: invocation("controller install.sh")?,
            daemon: invocation("daemon install.sh")?,
            install_cni: invocation("install-cni install.sh")?,
        })
    }

    /// The kube-ovn-controller Deployment (install.sh passes the whole command line as `args`).
    pub fn controller(&self) -> Result<Deployment, String> {
        let container = Container {
            name: "kube-ovn-controller".into(),
            image: Some(IMAGE.into()),
            image_pull_policy: Some("IfNotPresent".into()),
            args: Some(self.controller.argv.clone()),
            security_context: Some(caps(RUN_AS_NOBODY, &["NET_BIND_SERVICE", "NET_RAW"])),
            env: Some(env_of(&self.controller)),
            volume_mounts: Some(vec![
                mount_ro("localtime", "/etc/localtime"),
                mount("kube-ovn-log", "/var/log/kube-ovn"),
                mount("ovn-log", "/var/log/ovn"),
                mount("kube-ovn-tls", "/var/run/tls"),
            ]),
            readiness_probe: Some(Probe {
                period_seconds: Some(3),
                ..http_probe(10660, "/readyz")
            }),
            liveness_probe: Some(Probe {
                initial_delay_seconds: Some(300),
                period_seconds: Some(7),
                failure_threshold: Some(5),
                ..http_probe(10660, "/livez")
            }),
            resources: Some(resources("200m", "200Mi", "1000m", "1Gi")),
            ..Default::default()
        };
        let spec = PodSpec {
            tolerations: Some(tolerations(false)),
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    preferred_during_scheduling_ignored_during_execution: Some(vec![
                        PreferredSchedulingTerm {
                            preference: NodeSelectorTerm {
                                match_expressions: Some(vec![NodeSelectorRequirement {
                                    key: "ovn.kubernetes.io/ic-gw".into(),
                                    operator: "NotIn".into(),
                                    values: Some(strings(&["true"])),
                                }]),
                                match_fields: None,
                            },
                            weight: 100,
                        },
                    ]),
                    required_during_scheduling_ignored_during_execution: None,
                }),
                pod_anti_affinity: Some(anti_affinity("kube-ovn-controller")),
                ..Default::default()
            }),
            init_containers: Some(vec![hostpath_init(
                &["sh", "-c", "chown -R nobody: /var/log/kube-ovn"],
                vec![mount("kube-ovn-log", "/var/log/kube-ovn")],
            )]),
            containers: vec![container],
            node_selector: Some(map(&[
                ("kubernetes.io/os", "linux"),
                ("kube-ovn/role", "master"),
            ])),
            volumes: Some(vec![
                host_path("localtime", "/etc/localtime"),
                host_path("kube-ovn-log", &format!("{LOG_DIR}/kube-ovn")),
                host_path("ovn-log", &format!("{LOG_DIR}/ovn")),
                tls_secret(),
            ]),
            ..pod_spec_base("ovn", "system-cluster-critical")
        };
        Ok(Deployment {
            metadata: meta(
                "kube-ovn-controller",
                "kube-ovn-controller: Kubernetes objects to OVN.\n",
            ),
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: selector("kube-ovn-controller"),
                strategy: Some(DeploymentStrategy {
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::String("0%".into())),
                        max_unavailable: Some(IntOrString::String("100%".into())),
                    }),
                    type_: Some("RollingUpdate".into()),
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels("kube-ovn-controller")),
                        ..Default::default()
                    }),
                    spec: Some(spec),
                },
                ..Default::default()
            }),
            status: None,
        })
    }

    /// The kube-ovn-cni DaemonSet: `install-cni.sh` as init container, then the daemon through
    /// `bash /kube-ovn/start-cniserver.sh` with the rest of upstream's arguments.
    pub fn cni(&self) -> Result<DaemonSet, String> {
        let (script, args) = self
            .daemon
            .argv
            .split_first()
            .ok_or("the daemon invocation is empty")?;
        let install_cni = Container {
            name: "install-cni".into(),
            image: Some(IMAGE.into()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(self.install_cni.argv.clone()),
            env: Some(env_of(&self.install_cni)),
            security_context: Some(SecurityContext {
                run_as_user: Some(0),
                privileged: Some(true),
                ..Default::default()
            }),
            volume_mounts: Some(vec![
                mount("cni-bin", "/opt/cni/bin"),
                mount("cni-conf", "/etc/cni/net.d"),
                mount("local-bin", "/usr/local/bin"),
            ]),
            ..Default::default()
        };
        let probe = |path: &str| Probe {
            failure_threshold: Some(3),
            period_seconds: Some(7),
            success_threshold: Some(1),
            ..http_probe(10665, path)
        };
        let server = Container {
            name: "cni-server".into(),
            image: Some(IMAGE.into()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["bash".into(), script.clone()]),
            args: Some(args.to_vec()),
            security_context: Some(caps(
                0,
                &[
                    "NET_ADMIN",
                    "NET_BIND_SERVICE",
                    "NET_RAW",
                    "SYS_ADMIN",
                    "SYS_NICE",
                    "SYS_PTRACE",
                ],
            )),
            env: Some(env_of(&self.daemon)),
            volume_mounts: Some(vec![
                mount("usr-local-sbin", "/usr/local/sbin"),
                mount_ro("host-modules", "/lib/modules"),
                mount_rw("xtables-lock", "/run/xtables.lock"),
                mount("shared-dir", &format!("{KUBELET_DIR}/pods")),
                mount_ro("systemid", "/etc/openvswitch"),
                mount("ovs-ipsec-keys", "/etc/ovs_ipsec_keys"),
                mount_host_to_container("host-run-ovs", "/run/openvswitch"),
                mount("host-run-ovn", "/run/ovn"),
                mount_host_to_container("host-dbus", "/host/var/run/dbus"),
                mount_host_to_container("host-ns", "/var/run/netns"),
                mount("kube-ovn-log", "/var/log/kube-ovn"),
                mount("host-log-ovs", "/var/log/openvswitch"),
                mount("host-log-ovn", "/var/log/ovn"),
                mount_ro("localtime", "/etc/localtime"),
            ]),
            liveness_probe: Some(Probe {
                initial_delay_seconds: Some(30),
                ..probe("/livez")
            }),
            readiness_probe: Some(probe("/readyz")),
            resources: Some(resources("100m", "100Mi", "1000m", "1Gi")),
            ..Default::default()
        };
        let hostpath = hostpath_init(
            &["sh", "-xec", "chmod +t /usr/local/sbin\niptables -V\n"],
            vec![
                mount("usr-local-sbin", "/usr/local/sbin"),
                mount_rw("xtables-lock", "/run/xtables.lock"),
                mount_rw("host-ns", "/var/run/netns"),
                mount("kube-ovn-log", "/var/log/kube-ovn"),
            ],
        );
        let spec = PodSpec {
            tolerations: Some(tolerations(true)),
            host_pid: Some(true),
            init_containers: Some(vec![hostpath, install_cni]),
            containers: vec![server],
            node_selector: Some(map(&[("kubernetes.io/os", "linux")])),
            volumes: Some(vec![
                empty_dir("usr-local-sbin"),
                host_path("host-modules", "/lib/modules"),
                Volume {
                    host_path: Some(HostPathVolumeSource {
                        path: "/run/xtables.lock".into(),
                        type_: Some("FileOrCreate".into()),
                    }),
                    ..host_path("xtables-lock", "")
                },
                host_path("shared-dir", &format!("{KUBELET_DIR}/pods")),
                host_path("systemid", "/etc/origin/openvswitch"),
                host_path("ovs-ipsec-keys", "/etc/origin/ovs_ipsec_keys"),
                host_path("host-run-ovs", "/run/openvswitch"),
                host_path("host-run-ovn", "/run/ovn"),
                host_path("cni-conf", "/etc/cni/net.d"),
                host_path("cni-bin", "/opt/cni/bin"),
                host_path("host-ns", "/var/run/netns"),
                host_path("host-dbus", "/var/run/dbus"),
                host_path("host-log-ovs", &format!("{LOG_DIR}/openvswitch")),
                host_path("kube-ovn-log", &format!("{LOG_DIR}/kube-ovn")),
                host_path("host-log-ovn", &format!("{LOG_DIR}/ovn")),
                host_path("localtime", "/etc/localtime"),
                host_path("local-bin", "/usr/local/bin"),
            ]),
            ..pod_spec_base("kube-ovn-cni", "system-node-critical")
        };
        Ok(DaemonSet {
            metadata: meta(
                "kube-ovn-cni",
                "kube-ovn-cni: the kube-ovn CNI and kube-ovn-daemon on every node.\n",
            ),
            spec: Some(DaemonSetSpec {
                selector: selector("kube-ovn-cni"),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels("kube-ovn-cni")),
                        ..Default::default()
                    }),
                    spec: Some(spec),
                },
                ..Default::default()
            }),
            status: None,
        })
    }
}
