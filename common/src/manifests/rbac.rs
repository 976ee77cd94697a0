//! The service accounts and their least-privilege ClusterRoles, with upstream's names
//! (`ovn` / `system:ovn` for the controller, `kube-ovn-cni` / `system:kube-ovn-cni` for the
//! daemon, `ovn-ovs` / `system:ovn-ovs` for ovn-central and ovs-ovn). A rule grants only what
//! the binary was seen to use in the sandbox RBAC test (`test/sandbox/tests/kube_ovn_rbac.rs`
//! runs them held to these rules and checks both ways); a grant that test cannot see used
//! says why it is needed in [`Rule::unexercised`].

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::NAMESPACE;

/// One RBAC rule and, for grants the tests cannot exercise, why it is there.
#[derive(Debug, Clone)]
pub struct Rule {
    /// API groups (`""` is core).
    pub groups: &'static [&'static str],
    /// Resources, `resource/subresource` for subresources.
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// `None`: the RBAC test must see every (verb, resource) of this rule used. `Some(why)`:
    /// needed on paths the test does not reach, named precisely.
    pub unexercised: Option<&'static str>,
}

/// A service account and the ClusterRole bound to it.
#[derive(Debug, Clone)]
pub struct Account {
    /// ServiceAccount name (in [`NAMESPACE`]).
    pub service_account: &'static str,
    /// ClusterRole name.
    pub cluster_role: &'static str,
    /// ClusterRoleBinding name.
    pub binding: &'static str,
    /// The ClusterRole's rules.
    pub rules: Vec<Rule>,
}

const fn used(
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
) -> Rule {
    Rule {
        groups,
        resources,
        verbs,
        unexercised: None,
    }
}

const fn unexercised(
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
    why: &'static str,
) -> Rule {
    Rule {
        groups,
        resources,
        verbs,
        unexercised: Some(why),
    }
}

impl Rule {
    /// The rule as RBAC's type.
    pub fn policy_rule(&self) -> PolicyRule {
        let own = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(own(self.groups)),
            resources: Some(own(self.resources)),
            verbs: own(self.verbs),
            resource_names: None,
            non_resource_urls: None,
        }
    }
}

impl Account {
    /// The ServiceAccount, ClusterRole and ClusterRoleBinding, as upstream's install.sh lays
    /// them out.
    pub fn objects(&self) -> Result<Vec<serde_json::Value>, String> {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(self.service_account.into()),
                namespace: Some(NAMESPACE.into()),
                ..Default::default()
            },
            automount_service_account_token: Some(false),
            ..Default::default()
        };
        let role = ClusterRole {
            metadata: ObjectMeta {
                name: Some(self.cluster_role.into()),
                annotations: Some(
                    [(
                        "rbac.authorization.k8s.io/system-only".to_string(),
                        "true".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            rules: Some(self.rules.iter().map(Rule::policy_rule).collect()),
            aggregation_rule: None,
        };
        let binding = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(self.binding.into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: self.cluster_role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: self.service_account.into(),
                namespace: Some(NAMESPACE.into()),
                api_group: None,
            }]),
        };
        // k8s-openapi writes each object's apiVersion and kind.
        let value = |o: serde_json::Result<serde_json::Value>| o.map_err(|e| e.to_string());
        Ok(vec![
            value(serde_json::to_value(&sa))?,
            value(serde_json::to_value(&role))?,
            value(serde_json::to_value(&binding))?,
        ])
    }
}

const KUBEOVN: &[&str] = &["kubeovn.io"];
const CORE: &[&str] = &[""];

/// kube-ovn-controller's account (`ovn`, ClusterRole `system:ovn`).
pub fn controller() -> Account {
    const WATCH: &[&str] = &["list", "watch"];
    Account {
        service_account: "ovn",
        cluster_role: "system:ovn",
        binding: "ovn",
        rules: vec![
            used(&["coordination.k8s.io"], &["leases"], &["get", "create", "update"]),
            used(CORE, &["pods", "nodes", "services"], &["list", "watch", "patch"]),
            used(CORE, &["namespaces"], WATCH),
            used(&["discovery.k8s.io"], &["endpointslices"], WATCH),
            used(&["networking.k8s.io"], &["networkpolicies"], WATCH),
            used(
                KUBEOVN,
                &[
                    "subnets",
                    "ips",
                    "vips",
                    "ippools",
                    "security-groups",
                    "switch-lb-rules",
                    "vlans",
                    "provider-networks",
                    "vpc-dnses",
                    "vpc-nat-gateways",
                    "iptables-eips",
                    "iptables-fip-rules",
                    "iptables-snat-rules",
                    "iptables-dnat-rules",
                    "ovn-eips",
                    "ovn-fips",
                    "ovn-snat-rules",
                    "ovn-dnat-rules",
                ],
                WATCH,
            ),
            used(CORE, &["configmaps"], WATCH),
            used(KUBEOVN, &["subnets"], &["get", "create", "patch", "update"]),
            used(KUBEOVN, &["ips"], &["get", "create", "patch", "delete"]),
            used(KUBEOVN, &["vpcs"], &["get", "create", "list", "watch"]),
            used(KUBEOVN, &["vips"], &["patch", "update"]),
            used(
                KUBEOVN,
                &["subnets/status", "vpcs/status", "security-groups/status"],
                &["patch"],
            ),
            unexercised(
                CORE,
                &["events"],
                &["create", "patch"],
                "Warning events on objects the controller rejects or cannot realise, a repeat \
                 aggregated into the same Event by a patch of its count \
                 (controller/runtime/src/events.rs); the sandbox workload is valid, so none is \
                 emitted",
            ),
            unexercised(
                KUBEOVN,
                &["vpcs"],
                &["patch", "update"],
                "a custom Vpc's finalizer and formatted spec (vpc_ctl.rs); the sandbox \
                 workload of this test creates no custom Vpc",
            ),
            unexercised(
                KUBEOVN,
                &["vips"],
                &["create"],
                "the health-check Vip service_ctl.rs creates for a subnet when a Service asks \
                 for load-balancer health checks",
            ),
            unexercised(
                KUBEOVN,
                &["ippools/status", "switch-lb-rules/status"],
                &["patch"],
                "the IPPool and SwitchLBRule reconcilers' status (ippool_ctl.rs, slr_ctl.rs);                  the workload creates neither kind",
            ),
            unexercised(
                CORE,
                &["services", "endpoints"],
                &["get", "create", "update"],
                "the Service and Endpoints a SwitchLBRule owns (slr_ctl.rs)",
            ),
            unexercised(
                KUBEOVN,
                &["vips"],
                &["delete"],
                "a SwitchLBRule's health-check Vip removed with it (slr_ctl.rs)",
            ),
            unexercised(
                KUBEOVN,
                &["vlans"],
                &["update"],
                "a Vlan without a provider gets --default-provider-name (underlay_ctl.rs, as \
                 upstream); the RBAC test's workload has no Vlan",
            ),
            unexercised(
                KUBEOVN,
                &["vlans/status", "provider-networks/status"],
                &["patch"],
                "Vlan and ProviderNetwork status (underlay_ctl.rs, subnet_ctl.rs); the RBAC \
                 test's workload has no underlay",
            ),
            unexercised(
                &["apps"],
                &["statefulsets"],
                &["get"],
                "a deleted pod of a StatefulSet keeps its addresses while the StatefulSet will \
                 bring the ordinal back (pod_ctl.rs statefulset_keeps, as upstream); the RBAC \
                 test's workload has no StatefulSet",
            ),
            unexercised(
                &["k8s.cni.cncf.io"],
                &["network-attachment-definitions"],
                WATCH,
                "Multus attachments (controller/src/attach.rs), watched only once the \
                 NetworkAttachmentDefinition CRD is installed, as upstream does; the RBAC \
                 test's sandbox installs no such CRD",
            ),
            unexercised(
                &["apps"],
                &["deployments"],
                &["get", "create", "patch", "delete"],
                "the lb-svc Deployment of a LoadBalancer Service (controller/src/lb_svc.rs), \
                 only with --enable-lb-svc (off by default, as upstream)",
            ),
            unexercised(
                KUBEOVN,
                &["vpc-dnses/status"],
                &["patch"],
                "whether a VpcDns serves its VPC (controller/src/vpc_dns_ctl.rs); the RBAC \
                 test's workload has no VpcDns",
            ),
            unexercised(
                KUBEOVN,
                &["switch-lb-rules"],
                &["create", "patch", "delete"],
                "the SwitchLBRule in front of a VpcDns's CoreDNS pods \
                 (controller/src/vpc_dns_ctl.rs); the RBAC test's workload has no VpcDns",
            ),
            unexercised(
                &["apps"],
                &["deployments"],
                &["update"],
                "a VpcDns's CoreDNS Deployment replaced when its settings change \
                 (controller/src/vpc_dns_ctl.rs); the RBAC test's workload has no VpcDns",
            ),
            unexercised(
                CORE,
                &["configmaps"],
                &["get"],
                "ovn-vpc-nat-config's image and nodeSelector for lb-svc pods \
                 (controller/src/lb_svc.rs), only with --enable-lb-svc; ovn-vpc-nat-config and \
                 ovn-vpc-nat-gw-config for VPC NAT gateways (controller/src/natgw_ctl.rs)",
            ),
            unexercised(
                CORE,
                &["services/status"],
                &["patch"],
                "status.loadBalancer.ingress of an lb-svc Service (controller/src/lb_svc.rs), \
                 only with --enable-lb-svc",
            ),
            unexercised(
                CORE,
                &["serviceaccounts"],
                &["create"],
                "the lb-svc agent's ServiceAccount in an lb-svc Service's namespace \
                 (controller/src/lb_svc.rs), only with --enable-lb-svc",
            ),
            unexercised(
                &["rbac.authorization.k8s.io"],
                &["rolebindings"],
                &["create"],
                "binding system:kube-ovn-lb-svc to that ServiceAccount (controller/src/lb_svc.rs), \
                 only with --enable-lb-svc",
            ),
            unexercised(
                CORE,
                &["pods"],
                &["get"],
                "held so the controller may grant it to the lb-svc agent (RBAC refuses a \
                 RoleBinding to permissions the binder lacks); only with --enable-lb-svc",
            ),
            unexercised(
                &["apps"],
                &["statefulsets"],
                &["create", "patch", "delete"],
                "the StatefulSet of a VpcNatGateway (controller/src/natgw_ctl.rs); the RBAC \
                 test's workload has no gateway",
            ),
            unexercised(
                KUBEOVN,
                &[
                    "vpc-nat-gateways",
                    "iptables-eips",
                    "iptables-fip-rules",
                    "iptables-snat-rules",
                    "iptables-dnat-rules",
                ],
                &["patch", "update"],
                "finalizers, labels and allocations of VPC NAT gateways, EIPs and NAT rules \
                 (controller/src/natgw_ctl.rs, controller/src/iptables_ctl.rs); the RBAC \
                 test's workload has none",
            ),
            unexercised(
                KUBEOVN,
                &[
                    "vpc-nat-gateways/status",
                    "iptables-eips/status",
                    "iptables-fip-rules/status",
                    "iptables-snat-rules/status",
                    "iptables-dnat-rules/status",
                ],
                &["patch"],
                "status of VPC NAT gateways, EIPs and NAT rules (controller/src/natgw_ctl.rs, \
                 controller/src/iptables_ctl.rs); the RBAC test's workload has none",
            ),
            unexercised(
                KUBEOVN,
                &["ovn-eips", "ovn-fips", "ovn-snat-rules", "ovn-dnat-rules"],
                &["create", "patch", "update", "delete"],
                "OvnEips a Vpc's external connection creates and deletes, finalizers, labels \
                 and allocations of OvnEips and OVN NAT rules (controller/src/vpc_external.rs, \
                 ovn_eip_ctl.rs, ovn_nat_ctl.rs); the RBAC test's workload has none",
            ),
            unexercised(
                KUBEOVN,
                &[
                    "ovn-eips/status",
                    "ovn-fips/status",
                    "ovn-snat-rules/status",
                    "ovn-dnat-rules/status",
                ],
                &["patch"],
                "status of OvnEips and OVN NAT rules (controller/src/ovn_eip_ctl.rs, \
                 ovn_nat_ctl.rs); the RBAC test's workload has none",
            ),
            unexercised(
                &["policy.networking.k8s.io"],
                &[
                    "adminnetworkpolicies",
                    "baselineadminnetworkpolicies",
                    "clusternetworkpolicies",
                ],
                WATCH,
                "only with --enable-anp (off by default, as upstream), which the RBAC test does \
                 not pass (the ANP matrix suite runs with it under these rules)",
            ),
            // GC looks for resolvers left labelled by admin policies while the feature is off.
            used(KUBEOVN, &["dnsnameresolvers"], &["list"]),
            unexercised(
                KUBEOVN,
                &["dnsnameresolvers"],
                &["watch", "create", "delete"],
                "the resolvers of admin policies' domain-name peers (controller/src/dnr_ctl.rs), \
                 only with --enable-anp and --enable-dns-name-resolver, which the RBAC test does \
                 not pass (the ANP matrix suite runs with both under these rules); with either \
                 off GC deletes labelled ones, and the test's cluster has none",
            ),
        ],
    }
}

/// The ClusterRole of the lb-svc pods' agent (`kube-ovn-lb-svc`): it reads its own pod and its
/// Service. The controller binds it, with a RoleBinding, to the ServiceAccount `kube-ovn-lb-svc`
/// it creates in each namespace holding an lb-svc Service (controller/src/lb_svc.rs).
pub const LB_SVC_CLUSTER_ROLE: &str = "system:kube-ovn-lb-svc";

/// [`LB_SVC_CLUSTER_ROLE`] itself.
pub fn lb_svc_agent_role() -> Result<serde_json::Value, String> {
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some(LB_SVC_CLUSTER_ROLE.into()),
            ..Default::default()
        },
        rules: Some(vec![used(
            CORE,
            &["pods", "services"],
            &["get", "list", "watch"],
        )
        .policy_rule()]),
        aggregation_rule: None,
    };
    serde_json::to_value(&role).map_err(|e| e.to_string())
}

/// The ServiceAccount of VPC NAT gateway pods (upstream's chart: `vpc-nat-gw`, ClusterRole
/// `system:vpc-nat-gw`), in the controller's namespace.
pub const NAT_GW_ACCOUNT: &str = "vpc-nat-gw";

/// The VPC NAT gateway agent's account (`kube-ovn-vpc-nat-gw`, daemon/src/natgw): it reads its
/// own pod and the EIPs and NAT rules (upstream's role lists Services, Subnets and gateways
/// for its BGP speaker, which is not built here, so they are not granted).
pub fn nat_gw() -> Account {
    const WHY: &str = "the VPC NAT gateway agent (daemon/src/natgw) reads its pod and the \
        iptables NAT objects; the RBAC test runs no gateway";
    Account {
        service_account: NAT_GW_ACCOUNT,
        cluster_role: "system:vpc-nat-gw",
        binding: "vpc-nat-gw",
        rules: vec![
            unexercised(CORE, &["pods"], &["get", "list", "watch"], WHY),
            unexercised(
                KUBEOVN,
                &[
                    "iptables-eips",
                    "iptables-fip-rules",
                    "iptables-snat-rules",
                    "iptables-dnat-rules",
                ],
                &["list", "watch"],
                WHY,
            ),
        ],
    }
}

/// kube-ovn-pinger's account (`kube-ovn-app`, ClusterRole `system:kube-ovn-app`): it reads its
/// own pod and its DaemonSet (for the selector of its peers), lists the peer pods and the
/// nodes it pings, and asks the API server's version (a non-resource URL every authenticated
/// account may read).
pub fn app() -> Account {
    const WHY: &str = "kube-ovn-pinger (daemon/src/pinger) reads these; the RBAC test runs no \
        pinger (its pods would change that test's address accounting), the kubectl_ko sandbox \
        test runs it under this account";
    Account {
        service_account: "kube-ovn-app",
        cluster_role: "system:kube-ovn-app",
        binding: "kube-ovn-app",
        rules: vec![
            unexercised(CORE, &["pods", "nodes"], &["get", "list"], WHY),
            unexercised(&["apps"], &["daemonsets"], &["get"], WHY),
        ],
    }
}

/// kube-ovn-daemon's account (`kube-ovn-cni`, ClusterRole `system:kube-ovn-cni`).
pub fn daemon() -> Account {
    Account {
        service_account: "kube-ovn-cni",
        cluster_role: "system:kube-ovn-cni",
        binding: "kube-ovn-cni",
        rules: vec![
            used(CORE, &["nodes"], &["get", "list", "watch", "patch"]),
            used(CORE, &["nodes/status"], &["patch"]),
            used(CORE, &["pods"], &["list", "watch"]),
            used(KUBEOVN, &["subnets"], &["list", "watch"]),
            used(KUBEOVN, &["provider-networks", "vlans"], &["list", "watch"]),
            used(CORE, &["configmaps"], &["list", "watch"]),
            unexercised(
                CORE,
                &["pods"],
                &["patch"],
                "a ProviderNetwork that cannot be set up on the node is reported in the \
                 `<pn>.provider-network.kubernetes.io/err_mesg` annotation of the daemon's own \
                 pod (daemon/src/underlay/mod.rs), which exists only when the daemon runs as \
                 the kube-ovn-cni DaemonSet's pod (POD_NAME/POD_NAMESPACE); the sandbox runs it \
                 as a process",
            ),
            unexercised(
                &["k8s.cni.cncf.io"],
                &["network-attachment-definitions"],
                &["get"],
                "a CNI ADD for an attachment provider no Subnet has reads its \
                 NetworkAttachmentDefinition to tell a provider still coming from one that \
                 never will (daemon/src/providers.rs); the RBAC test's pods have no attachments",
            ),
            unexercised(
                CORE,
                &["pods"],
                &["get"],
                "a CNI ADD for a pod the node's pod watch has not delivered yet reads the pod \
                 directly (daemon/src/pods.rs); the sandbox reaches it only when an ADD \
                 outruns the watch, so not on every run",
            ),
        ],
    }
}

/// The account of ovn-central and ovs-ovn (`ovn-ovs`, ClusterRole `system:ovn-ovs`).
pub fn ovn_ovs() -> Account {
    const WHY: &str = "ovn-central's kube-ovn-leader-checker labels its own pod \
        ovn-nb-leader/ovn-sb-leader/ovn-northd-leader (get/patch pods), looks for the \
        ovn-northd Service and lists its EndpointSlices (the sandbox's ovn-central pods run it \
        under this account, which the RBAC test does not check); upstream's ovs-ovn reads the \
        DaemonSet's controllerrevisions in its upgrade check, kept so upstream's image of that \
        role runs under these manifests during a swap";
    Account {
        service_account: "ovn-ovs",
        cluster_role: "system:ovn-ovs",
        binding: "ovn-ovs",
        rules: vec![
            unexercised(CORE, &["pods"], &["get", "patch"], WHY),
            unexercised(CORE, &["services"], &["get"], WHY),
            unexercised(&["discovery.k8s.io"], &["endpointslices"], &["list"], WHY),
            unexercised(&["apps"], &["controllerrevisions"], &["get", "list"], WHY),
        ],
    }
}
