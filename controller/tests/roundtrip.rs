//! Objects shaped as upstream Kube-OVN writes them (as `kubectl get -o yaml`
//! shows them in a running cluster) survive a read and a write unchanged, and
//! empty objects serialise to exactly the keys Go's `omitempty` tags keep.

use kube_ovn_common::crd::{
    ip::Ip, ippool::IpPool, ovn_nat::OvnEip, ovn_nat::OvnFip, provider_network::ProviderNetwork,
    security_group::SecurityGroup, subnet::Subnet, subnet::SubnetSpec, vlan::Vlan, vpc::Vpc,
    vpc::VpcSpec, vpc_egress_gateway::BandwidthRate, vpc_egress_gateway::VpcEgressGateway,
    vpc_nat_gateway::VpcNatGateway, BigInt,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// Drops `null`s, as the API server prunes them from objects whose schema is not nullable.
fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(prune_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

/// Reads `yaml` as `K` (directly and through a JSON value), writes it back and compares.
fn round_trip<K: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(yaml: &str) -> K {
    let source: Value = serde_norway::from_str(yaml).expect("fixture is YAML");
    let from_yaml: K = serde_norway::from_str(yaml).expect("typed from YAML");
    let from_json: K = serde_json::from_value(source.clone()).expect("typed from JSON");
    assert_eq!(from_yaml, from_json);
    let mut written = serde_json::to_value(&from_json).unwrap();
    prune_nulls(&mut written);
    assert_eq!(
        written,
        source,
        "round trip changed the object:\nwritten: {}",
        serde_json::to_string_pretty(&written).unwrap()
    );
    from_json
}

#[test]
fn subnet() {
    let s: Subnet = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: tenant-a
  uid: 7c0b9c5e-2f1e-4c38-9b0e-1f3f0a0f1c11
  resourceVersion: "48213"
  generation: 3
  creationTimestamp: "2024-05-01T10:00:00Z"
  finalizers: [kube-ovn-controller]
spec:
  default: false
  vpc: ovn-cluster
  protocol: Dual
  namespaces: [tenant-a, tenant-a-batch]
  cidrBlock: 10.66.0.0/16,fd00:10:66::/112
  gateway: 10.66.0.1,fd00:10:66::1
  excludeIps: [10.66.0.1, 10.66.0.100..10.66.0.120, fd00:10:66::1]
  provider: ovn
  gatewayType: centralized
  gatewayNode: node-1,node-2:172.18.0.3
  gatewayNodeSelectors:
  - matchLabels: {kube-ovn/gateway: "true"}
  natOutgoing: true
  mtu: 1400
  private: true
  allowSubnets: [10.16.0.0/16]
  vlan: vlan10
  logicalGateway: true
  enableDHCP: true
  dhcpV4Options: lease_time=3600,router=10.66.0.1
  acls:
  - direction: to-lport
    priority: 1010
    match: ip4.src == 10.10.0.2 && ip4.dst == 10.10.0.3
    action: drop
  natOutgoingPolicyRules:
  - match: {srcIPs: 10.66.0.0/24, dstIPs: 8.8.8.8}
    action: forward
  u2oFeatures: {}
  enableLb: true
  enableEcmp: true
  namespaceSelectors:
  - matchExpressions:
    - {key: team, operator: In, values: [a, b]}
status:
  conditions:
  - type: Ready
    status: "True"
    reason: ResetLogicalSwitchAclSuccess
    lastUpdateTime: "2024-05-01T10:00:05Z"
    lastTransitionTime: "2024-05-01T10:00:05Z"
  - type: Validated
    status: "True"
    observedGeneration: 3
    lastUpdateTime: "2024-05-01T10:00:01Z"
    lastTransitionTime: "2024-05-01T10:00:01Z"
  v4availableIPs: 65509
  v4availableIPrange: 10.66.0.2-10.66.0.99,10.66.0.121-10.66.255.254
  v4usingIPs: 5
  v4usingIPrange: 10.66.0.2-10.66.0.6
  v6availableIPs: 65530
  v6availableIPrange: fd00:10:66::2-fd00:10:66::ffff
  v6usingIPs: 5
  v6usingIPrange: fd00:10:66::2-fd00:10:66::6
  activateGateway: node-1
  dhcpV4OptionsUUID: 6b8b4567-3f4c-4d2a-9c1e-2b7f5d0e1a11
  dhcpV6OptionsUUID: ""
  u2oInterconnectionIP: ""
  u2oInterconnectionMAC: ""
  u2oInterconnectionVPC: ""
  natOutgoingPolicyRules:
  - ruleID: 9a1f3c
    match: {srcIPs: 10.66.0.0/24, dstIPs: 8.8.8.8}
    action: forward
  mcastQuerierIP: ""
  mcastQuerierMAC: ""
"#,
    );
    assert_eq!(s.spec.exclude_ips.len(), 3);
    assert_eq!(s.spec.acls[0].priority, 1010);
    assert_eq!(s.spec.enable_lb, Some(true));
    let status = s.status.unwrap();
    assert_eq!(status.v4_available_ips, BigInt::from(65509i64));
    assert_eq!(status.nat_outgoing_policy_rules[0].rule.action, "forward");
}

#[test]
fn vpc() {
    let v: Vpc = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: tenant-vpc}
spec:
  namespaces: [tenant-a]
  defaultSubnet: tenant-a
  staticRoutes:
  - cidr: 0.0.0.0/0
    nextHopIP: 10.0.1.254
    policy: policyDst
    ecmpMode: ""
    bfdId: ""
    routeTable: ""
  - cidr: 192.168.0.0/24
    nextHopIP: 10.0.1.253
    policy: policySrc
    ecmpMode: ecmp_symmetric_reply
    bfdId: 2f1b2c3d
    routeTable: rtb1
  policyRoutes:
  - priority: 31000
    match: ip4.dst == 10.0.1.0/24
    action: allow
  - priority: 31000
    match: ip4.src == 10.0.2.0/24
    action: reroute
    nextHopIP: 10.0.1.252
  vpcPeerings:
  - {remoteVpc: vpc-2, localConnectIP: 169.254.0.1/30}
  enableExternal: true
  extraExternalSubnets: [ext-vlan20]
status:
  conditions:
  - type: Ready
    status: "True"
    lastUpdateTime: "2024-05-01T10:00:05Z"
    lastTransitionTime: "2024-05-01T10:00:05Z"
  standby: true
  default: false
  defaultLogicalSwitch: tenant-a
  router: tenant-vpc
  tcpLoadBalancer: vpc-tenant-vpc-tcp-load
  udpLoadBalancer: vpc-tenant-vpc-udp-load
  sctpLoadBalancer: vpc-tenant-vpc-sctp-load
  tcpSessionLoadBalancer: vpc-tenant-vpc-tcp-sess-load
  udpSessionLoadBalancer: vpc-tenant-vpc-udp-sess-load
  sctpSessionLoadBalancer: vpc-tenant-vpc-sctp-sess-load
  subnets: [tenant-a]
  vpcPeerings: [vpc-2]
  enableExternal: true
  extraExternalSubnets: [ext-vlan20]
  enableBfd: false
  bfdPort: {}
"#,
    );
    assert_eq!(v.spec.static_routes[1].policy, "policySrc");
    assert_eq!(v.spec.policy_routes[1].next_hop_ip, "10.0.1.252");
    // Go writes `bfdPort: null` for an unset port; the server prunes it.
    assert_eq!(v.spec.bfd_port, None);
}

#[test]
fn ip() {
    let ip: Ip = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: IP
metadata:
  name: nginx-7c5d8f9b4-xk2lp.default
  labels: {ovn.kubernetes.io/subnet: ovn-default, ovn.kubernetes.io/node-name: node-1}
spec:
  podName: nginx-7c5d8f9b4-xk2lp
  namespace: default
  subnet: ovn-default
  attachSubnets: []
  nodeName: node-1
  ipAddress: 10.16.0.12,fd00:10:16::c
  v4IpAddress: 10.16.0.12
  v6IpAddress: fd00:10:16::c
  attachIps: []
  macAddress: 00:00:00:2e:5a:41
  attachMacs: []
  containerID: 3b1f0c2d9e8a7f6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b
  podType: ""
"#,
    );
    assert_eq!(ip.spec.v6_ip_address, "fd00:10:16::c");
}

#[test]
fn ippool() {
    let p: IpPool = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: IPPool
metadata: {name: pool-a}
spec:
  subnet: ovn-default
  namespaces: [tenant-a]
  ips: [10.16.0.200..10.16.0.220, 10.16.1.0/28, 10.16.2.5]
  enableAddressSet: true
status:
  v4AvailableIPs: 36
  v4AvailableIPRange: 10.16.0.203-10.16.0.220,10.16.1.0-10.16.1.15,10.16.2.5
  v4UsingIPs: 3
  v4UsingIPRange: 10.16.0.200-10.16.0.202
  v6AvailableIPs: 0
  v6AvailableIPRange: ""
  v6UsingIPs: 0
  v6UsingIPRange: ""
  conditions:
  - type: Ready
    status: "True"
    observedGeneration: 1
    lastUpdateTime: "2024-05-01T10:00:05Z"
    lastTransitionTime: "2024-05-01T10:00:05Z"
"#,
    );
    assert!(p.spec.enable_address_set);
}

#[test]
fn provider_network_and_vlan() {
    let pn: ProviderNetwork = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: ProviderNetwork
metadata: {name: net1}
spec:
  defaultInterface: eth1
  customInterfaces:
  - {interface: bond0, nodes: [node-3, node-4]}
  excludeNodes: [node-5]
  exchangeLinkName: true
status:
  ready: true
  readyNodes: [node-1, node-2, node-3, node-4]
  vlans: [vlan10]
  conditions:
  - node: node-1
    type: Ready
    status: "True"
    reason: InitOVSBridgeSucceeded
    lastUpdateTime: "2024-05-01T10:00:05Z"
    lastTransitionTime: "2024-05-01T10:00:05Z"
"#,
    );
    assert_eq!(
        pn.status.unwrap().conditions[0].condition.reason,
        "InitOVSBridgeSucceeded"
    );
    let vlan: Vlan = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: Vlan
metadata: {name: vlan10}
spec:
  id: 10
  provider: net1
status:
  subnets: [tenant-a]
"#,
    );
    assert_eq!(vlan.spec.id, 10);
}

#[test]
fn vpc_nat_gateway() {
    let gw: VpcNatGateway = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: VpcNatGateway
metadata: {name: gw1}
spec:
  vpc: tenant-vpc
  subnet: tenant-a
  externalSubnets: [ovn-vpc-external-network]
  lanIp: 10.0.1.254
  replicas: 1
  selector: ["kubernetes.io/hostname: node-1", "kubernetes.io/os: linux"]
  tolerations:
  - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - {key: kubernetes.io/os, operator: In, values: [linux]}
  qosPolicy: ""
  bgpSpeaker:
    enabled: false
    asn: 0
    remoteAsn: 0
    neighbors: []
    holdTime: 0s
    routerId: ""
    password: ""
    enableGracefulRestart: false
    extraArgs: []
  bfd: {enabled: false, minRX: 1000, minTX: 1000, multiplier: 3}
  routes: [{cidr: 172.20.0.0/16, nextHopIP: 10.0.1.1}]
  noDefaultEIP: false
status:
  qosPolicy: ""
  externalSubnets: [ovn-vpc-external-network]
  selector: ["kubernetes.io/hostname: node-1", "kubernetes.io/os: linux"]
  replicas: 1
  ready: true
  lanIp: 10.0.1.254
  tolerations: []
  affinity: {}
  workload: {apiVersion: apps/v1, kind: StatefulSet, name: vpc-nat-gw-gw1, nodes: [node-1]}
"#,
    );
    assert_eq!(gw.spec.bgp_speaker.hold_time.0, "0s");
    assert_eq!(gw.spec.bfd.min_rx, 1000);
}

#[test]
fn ovn_eip_and_fip() {
    let eip: OvnEip = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: OvnEip
metadata: {name: eip-static}
spec:
  externalSubnet: external204
  v4Ip: 10.5.204.101
  v6Ip: ""
  macAddress: 00:00:00:4e:3a:6b
  type: nat
status:
  conditions:
  - type: Ready
    status: "True"
    lastUpdateTime: "2024-05-01T10:00:05Z"
    lastTransitionTime: "2024-05-01T10:00:05Z"
  type: nat
  nat: fip
  ready: true
  v4Ip: 10.5.204.101
  v6Ip: ""
  macAddress: 00:00:00:4e:3a:6b
"#,
    );
    assert_eq!(eip.spec.type_, "nat");
    let fip: OvnFip = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: OvnFip
metadata: {name: eip-static}
spec:
  ovnEip: eip-static
  ipType: ip
  ipName: vpc-1-busybox01.vpc1
  vpc: vpc1
  v4Ip: ""
  v6Ip: ""
  type: distributed
status:
  ready: true
  vpc: vpc1
  v4Eip: 10.5.204.101
  v6Eip: ""
  v4Ip: 192.168.0.2
  v6Ip: ""
  macAddress: 00:00:00:4e:3a:6b
"#,
    );
    assert_eq!(fip.status.unwrap().v4_ip, "192.168.0.2");
}

#[test]
fn security_group() {
    let sg: SecurityGroup = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: SecurityGroup
metadata: {name: sg-web}
spec:
  allowSameGroupTraffic: true
  tier: 1
  ingressRules:
  - ipVersion: ipv4
    protocol: tcp
    priority: 1
    remoteType: address
    remoteAddress: 10.16.0.0/16
    portRangeMin: 80
    portRangeMax: 443
    policy: allow
  - ipVersion: ipv4
    protocol: all
    priority: 10
    remoteType: securityGroup
    remoteSecurityGroup: sg-db
    policy: pass
  egressRules:
  - ipVersion: ipv4
    protocol: icmp
    priority: 1
    remoteType: address
    remoteAddress: 0.0.0.0/0
    policy: drop
status:
  portGroup: ovn.sg.sg.web
  allowSameGroupTraffic: true
  ingressMd5: 7f1c3b
  egressMd5: 2a9d4e
  ingressLastSyncSuccess: true
  egressLastSyncSuccess: true
"#,
    );
    assert_eq!(sg.spec.ingress_rules[0].port_range_max, 443);
}

#[test]
fn vpc_egress_gateway_bandwidth_keeps_its_form() {
    let g: VpcEgressGateway = round_trip(
        r#"
apiVersion: kubeovn.io/v1
kind: VpcEgressGateway
metadata: {name: gw1, namespace: default}
spec:
  replicas: 2
  externalSubnet: macvlan1
  trafficPolicy: Cluster
  podAntiAffinity: Required
  bfd: {enabled: true, minRX: 100, minTX: 100, multiplier: 5}
  policies:
  - {snat: true, subnets: [subnet1]}
  selectors:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: tenant-a}}
  bandwidth: {ingress: 100, egress: 1Gi}
  resources:
    requests: {cpu: 100m, memory: 128Mi}
status:
  replicas: 2
  labelSelector: ovn.kubernetes.io/vpc-egress-gateway=gw1
  ready: true
  phase: Completed
  internalIPs: [10.16.0.10, 10.16.0.11]
  externalIPs: [172.17.0.10, 172.17.0.11]
  conditions:
  - type: Ready
    status: "True"
    lastUpdateTime: "2024-05-01T10:00:05Z"
    lastTransitionTime: "2024-05-01T10:00:05Z"
  workload: {apiVersion: apps/v1, kind: Deployment, name: gw1, nodes: [node-1, node-2]}
"#,
    );
    let bw = g.spec.bandwidth.unwrap();
    assert_eq!(bw.ingress, Some(BandwidthRate::Int(100)));
    assert_eq!(bw.egress, Some(BandwidthRate::Str("1Gi".into())));
}

#[test]
fn empty_specs_keep_exactly_gos_non_omitempty_keys() {
    // Go keeps fields without `omitempty` (and struct fields, which omitempty
    // cannot drop) even when zero; everything else disappears.
    assert_eq!(
        serde_json::to_value(SubnetSpec::default()).unwrap(),
        json!({"default": false, "gatewayNode": "", "natOutgoing": false, "private": false, "u2oFeatures": {}})
    );
    assert_eq!(
        serde_json::to_value(VpcSpec::default()).unwrap(),
        json!({"bfdPort": null})
    );
}

#[test]
fn missing_fields_read_as_zero_values_like_go() {
    let s: Subnet = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet",
        "metadata": {"name": "s"},
        "spec": {"cidrBlock": "10.66.0.0/16"},
        "status": {"v4availableIPs": "253"}
    }))
    .unwrap();
    assert_eq!(s.spec.cidr_block, "10.66.0.0/16");
    assert_eq!(
        s.spec.provider, "",
        "provider is defaulted by the controller, not on read"
    );
    assert_eq!(s.spec.gateway_type, "");
    assert_eq!(s.spec.enable_lb, None);
    assert_eq!(s.status.unwrap().v4_available_ips, BigInt::from(253i64));
    let no_spec: Subnet = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "s"}, "spec": {}
    }))
    .unwrap();
    assert_eq!(no_spec.spec, SubnetSpec::default());
}
