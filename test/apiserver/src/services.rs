//! What kube-apiserver's Service registry does beyond storing the object: defaulting (type,
//! port protocol and targetPort, session affinity, traffic policies), the IP family fields
//! (`ipFamilyPolicy`, `ipFamilies`, `clusterIPs`) and the allocation of cluster IPs from the
//! configured service CIDRs and of node ports from the node-port range, with the same
//! validation errors (422 `Invalid`) and the same update rules (allocated values carried over
//! when omitted, the primary cluster IP immutable, released on delete). Controllers under test
//! see Services shaped exactly as a real cluster hands them out.
//!
//! Allocation follows the real allocators: an IPv4 range excludes its network and broadcast
//! address, an IPv6 range its network address and is capped at 65536 addresses; dynamic
//! allocation picks at random, preferring the upper part of the range and leaving the lower
//! band (`min(max(16, size/16), 256)` addresses; for node ports `min(max(16, size/32), 128)`)
//! to explicit requests until the upper part is full.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};

/// The default service CIDR of kube-apiserver (`--service-cluster-ip-range`).
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
/// The default node-port range of kube-apiserver (`--service-node-port-range`).
pub const DEFAULT_NODE_PORTS: (u16, u16) = (30000, 32767);
/// Session affinity timeout kube-apiserver defaults `ClientIP` affinity to (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: i64 = 10800;

/// An IP family as the Service API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `IPv4`.
    V4,
    /// `IPv6`.
    V6,
}

impl Family {
    fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn parse(s: &str) -> Option<Family> {
        match s {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }
}

/// A parsed CIDR (`10.96.0.0/12`, `fd00:10:96::/108`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address (host bits cleared).
    pub network: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `addr/len`; host bits must be zero, as kube-apiserver requires for its ranges.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR (address/prefix)"))?;
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?}: {addr:?} is not an IP address"))?;
        let prefix: u8 = len
            .parse()
            .map_err(|_| format!("{text:?}: {len:?} is not a prefix length"))?;
        let bits = bits(Family::of(&ip));
        if prefix > bits {
            return Err(format!("{text:?}: prefix longer than {bits}"));
        }
        let cidr = Cidr {
            network: ip,
            prefix,
        };
        if to_u128(&ip) & !cidr.mask() != 0 {
            return Err(format!("{text:?} has host bits set"));
        }
        Ok(cidr)
    }

    fn family(&self) -> Family {
        Family::of(&self.network)
    }

    fn mask(&self) -> u128 {
        let host = u32::from(bits(self.family()) - self.prefix);
        let all = if self.family() == Family::V4 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        all.checked_shl(host).unwrap_or(0) & all
    }

    fn contains(&self, ip: &IpAddr) -> bool {
        Family::of(ip) == self.family() && to_u128(ip) & self.mask() == to_u128(&self.network)
    }

    /// Number of addresses in the CIDR, saturating (an IPv6 /0 does not fit).
    fn size(&self) -> u128 {
        let host = u32::from(bits(self.family()) - self.prefix);
        1u128.checked_shl(host).unwrap_or(u128::MAX)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn bits(family: Family) -> u8 {
    match family {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

fn to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

fn from_u128(family: Family, value: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4((value as u32).into()),
        Family::V6 => IpAddr::V6(value.into()),
    }
}

fn random_below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u64
}

/// Offsets `0..max` of which some are taken; dynamic picks prefer `offset..max` at random.
#[derive(Debug, Clone)]
struct Bitmap {
    max: u64,
    offset: u64,
    used: BTreeSet<u64>,
}

impl Bitmap {
    /// A random free offset in `[from, to)`, scanning forward (wrapping) from a random start.
    fn free_in(&self, from: u64, to: u64) -> Option<u64> {
        if to <= from {
            return None;
        }
        let start = from + random_below(to - from);
        let after = self.used.range(start..to);
        first_gap(start, to, after).or_else(|| first_gap(from, start, self.used.range(from..start)))
    }

    fn next(&mut self) -> Option<u64> {
        let pick = self
            .free_in(self.offset, self.max)
            .or_else(|| self.free_in(0, self.offset))?;
        self.used.insert(pick);
        Some(pick)
    }
}

/// The first value in `[from, to)` not yielded by `used` (sorted, all within the range).
fn first_gap<'a>(from: u64, to: u64, used: impl Iterator<Item = &'a u64>) -> Option<u64> {
    let mut candidate = from;
    for &u in used {
        if u != candidate {
            break;
        }
        candidate += 1;
    }
    (candidate < to).then_some(candidate)
}

/// One service CIDR's allocator.
#[derive(Debug, Clone)]
struct IpRange {
    cidr: Cidr,
    /// Value of the first allocatable address (network + 1).
    base: u128,
    map: Bitmap,
}

impl IpRange {
    fn new(cidr: Cidr) -> IpRange {
        let mut max = cidr.size();
        if cidr.family() == Family::V6 {
            max = max.min(65536);
        } else {
            max = max.saturating_sub(1); // broadcast
        }
        max = max.saturating_sub(1); // network
        let size = cidr.size();
        let offset = if size <= 16 {
            0
        } else {
            (size / 16).clamp(16, 256) as u64
        };
        IpRange {
            base: to_u128(&cidr.network) + 1,
            map: Bitmap {
                max: max as u64,
                offset,
                used: BTreeSet::new(),
            },
            cidr,
        }
    }

    fn offset_of(&self, ip: &IpAddr) -> Option<u64> {
        if !self.cidr.contains(ip) {
            return None;
        }
        let v = to_u128(ip);
        (v >= self.base && v - self.base < u128::from(self.map.max)).then(|| (v - self.base) as u64)
    }

    fn ip(&self, offset: u64) -> IpAddr {
        from_u128(self.cidr.family(), self.base + u128::from(offset))
    }
}

/// Why an explicit allocation failed, worded as the real allocators word it.
enum Refused {
    NotInRange(String),
    Allocated,
    Full,
}

impl Refused {
    fn ip_message(&self) -> String {
        match self {
            Refused::NotInRange(valid) => format!("the provided IP ({{ip}}) is not in the valid range. The range of valid IPs is {valid}"),
            Refused::Allocated => "provided IP is already allocated".into(),
            Refused::Full => "range is full".into(),
        }
    }
}

/// The service network of one API server: its CIDRs (the first is the primary family) and its
/// node-port range, with what is allocated from them.
#[derive(Debug, Clone)]
pub struct ServiceNetwork {
    ranges: Vec<IpRange>,
    ports_first: u16,
    ports: Bitmap,
}

/// A value of a JSON array of strings, rendered as Go's field errors render it in 1.33.
fn render(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn invalid(name: &str, field: &str, value: &Value, detail: &str) -> ApiError {
    ApiError::invalid(format!(
        "Service \"{name}\" is invalid: {field}: Invalid value: {}: {detail}",
        render(value)
    ))
}

fn spec_str<'a>(svc: &'a Value, field: &str) -> Option<&'a str> {
    svc.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn svc_type(svc: &Value) -> &str {
    spec_str(svc, "type").unwrap_or("ClusterIP")
}

fn needs_cluster_ip(svc: &Value) -> bool {
    svc_type(svc) != "ExternalName"
}

fn needs_node_ports(svc: &Value) -> bool {
    match svc_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

fn needs_health_check_port(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer" && spec_str(svc, "externalTrafficPolicy") == Some("Local")
}
fn has_selector(svc: &Value) -> bool {
    svc.pointer("/spec/selector")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
}

fn spec_mut(svc: &mut Value) -> &mut Map<String, Value> {
    if !svc.is_object() {
        *svc = json!({});
    }
    let root = svc.as_object_mut().expect("object ensured");
    let spec = root.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    spec.as_object_mut().expect("object ensured")
}

/// What one Service holds: cluster IPs (by value) and node ports.
#[derive(Debug, Default, PartialEq)]
struct Held {
    ips: Vec<IpAddr>,
    ports: Vec<u16>,
}

fn held(svc: &Value) -> Held {
    let mut h = Held::default();
    if needs_cluster_ip(svc) {
        h.ips = strings(svc.pointer("/spec/clusterIPs"))
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
    }
    for p in svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
            if let Ok(n) = u16::try_from(n) {
                if n != 0 && !h.ports.contains(&n) {
                    h.ports.push(n);
                }
            }
        }
    }
    if let Some(n) = svc
        .pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
    {
        if n != 0 && !h.ports.contains(&n) {
            h.ports.push(n);
        }
    }
    h
}

impl ServiceNetwork {
    /// A service network over `cidrs` (at most one per family; two make the cluster dual-stack,
    /// the first one's family being primary) and the node ports `first..=last`.
    pub fn new(cidrs: &[String], node_ports: (u16, u16)) -> Result<ServiceNetwork, String> {
        let parsed = cidrs
            .iter()
            .map(|c| Cidr::parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        match parsed.as_slice() {
            [] => return Err("at least one service CIDR is required".into()),
            [_] => {}
            [a, b] if a.family() != b.family() => {}
            [_, _] => return Err("two service CIDRs must be of different IP families".into()),
            _ => return Err("at most two service CIDRs (one per IP family) are allowed".into()),
        }
        let (first, last) = node_ports;
        if first == 0 || last < first {
            return Err(format!("invalid node-port range {first}-{last}"));
        }
        let size = u64::from(last - first) + 1;
        Ok(ServiceNetwork {
            ranges: parsed.into_iter().map(IpRange::new).collect(),
            ports_first: first,
            ports: Bitmap {
                max: size,
                offset: if size <= 16 {
                    0
                } else {
                    (size / 32).clamp(16, 128)
                },
                used: BTreeSet::new(),
            },
        })
    }

    /// The first usable address of the primary range: the `kubernetes` Service's cluster IP.
    pub fn first_ip(&self) -> IpAddr {
        self.ranges[0].ip(0)
    }

    /// The families the cluster serves, primary first.
    fn families(&self) -> Vec<Family> {
        self.ranges.iter().map(|r| r.cidr.family()).collect()
    }

    fn range(&mut self, family: Family) -> Option<&mut IpRange> {
        self.ranges.iter_mut().find(|r| r.cidr.family() == family)
    }

    /// Marks what a stored Service holds as allocated (rebuilding after a restart).
    pub fn restore(&mut self, svc: &Value) {
        let h = held(svc);
        for ip in h.ips {
            if let Some(r) = self.range(Family::of(&ip)) {
                if let Some(off) = r.offset_of(&ip) {
                    r.map.used.insert(off);
                }
            }
        }
        for p in h.ports {
            if let Some(off) = self.port_offset(p) {
                self.ports.used.insert(off);
            }
        }
    }

    /// Returns what a Service held to the pools (after its deletion).
    pub fn release(&mut self, svc: &Value) {
        self.release_held(&held(svc));
    }

    fn release_held(&mut self, h: &Held) {
        for ip in &h.ips {
            if let Some(r) = self.range(Family::of(ip)) {
                if let Some(off) = r.offset_of(ip) {
                    r.map.used.remove(&off);
                }
            }
        }
        for p in &h.ports {
            if let Some(off) = self.port_offset(*p) {
                self.ports.used.remove(&off);
            }
        }
    }

    fn port_offset(&self, port: u16) -> Option<u64> {
        (port >= self.ports_first && u64::from(port - self.ports_first) < self.ports.max)
            .then(|| u64::from(port - self.ports_first))
    }

    fn allocate_ip(&mut self, ip: &IpAddr) -> Result<(), Refused> {
        let family = Family::of(ip);
        let Some(r) = self.range(family) else {
            return Err(Refused::NotInRange(String::new()));
        };
        let valid = r.cidr.to_string();
        let off = r.offset_of(ip).ok_or(Refused::NotInRange(valid))?;
        if !r.map.used.insert(off) {
            return Err(Refused::Allocated);
        }
        Ok(())
    }

    fn allocate_port(&mut self, port: u16) -> Result<(), String> {
        let off = self.port_offset(port).ok_or_else(|| {
            format!(
                "provided port is not in the valid range. The range of valid ports is {}-{}",
                self.ports_first,
                u64::from(self.ports_first) + self.ports.max - 1
            )
        })?;
        if !self.ports.used.insert(off) {
            return Err("provided port is already allocated".into());
        }
        Ok(())
    }

    fn next_port(&mut self) -> Option<u16> {
        self.ports.next().map(|off| self.ports_first + off as u16)
    }

    /// Defaults and allocates a Service being created; on error nothing stays allocated.
    pub fn create(&mut self, svc: &mut Value) -> ApiResult<()> {
        default_spec(svc);
        if let Some(root) = svc.as_object_mut() {
            root.insert("status".into(), json!({"loadBalancer": {}}));
        }
        let name = crate::meta::meta_str(svc, "name")
            .unwrap_or_default()
            .to_string();
        let mut taken = Held::default();
        let result = self
            .families_and_ips(svc, &name, None, &mut taken)
            .and_then(|()| self.node_ports(svc, &name, None, &mut taken));
        if result.is_err() {
            self.release_held(&taken);
        }
        result
    }

    /// Applies the update rules to `new` (the replacement of the stored `old`): defaults, values
    /// allocated to `old` carried over when omitted, cluster IPs immutable, new needs allocated
    /// and what `new` no longer holds released. On error nothing changes.
    pub fn update(&mut self, old: &Value, new: &mut Value) -> ApiResult<()> {
        default_spec(new);
        let name = crate::meta::meta_str(new, "name")
            .unwrap_or_default()
            .to_string();
        carry_over(old, new);
        let mut taken = Held::default();
        let result = self
            .families_and_ips(new, &name, Some(old), &mut taken)
            .and_then(|()| self.node_ports(new, &name, Some(old), &mut taken));
        if result.is_err() {
            self.release_held(&taken);
            return result;
        }
        let (before, after) = (held(old), held(new));
        let gone = Held {
            ips: before
                .ips
                .into_iter()
                .filter(|i| !after.ips.contains(i))
                .collect(),
            ports: before
                .ports
                .into_iter()
                .filter(|p| !after.ports.contains(p))
                .collect(),
        };
        self.release_held(&gone);
        Ok(())
    }

    /// Sets ipFamilyPolicy/ipFamilies/clusterIP(s) and allocates the IPs not held by `old`.
    fn families_and_ips(
        &mut self,
        svc: &mut Value,
        name: &str,
        old: Option<&Value>,
        taken: &mut Held,
    ) -> ApiResult<()> {
        if !needs_cluster_ip(svc) {
            let spec = spec_mut(svc);
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                spec.remove(f);
            }
            return Ok(());
        }
        let selector = has_selector(svc);
        let spec = spec_mut(svc);
        // clusterIP and clusterIPs[0] describe the same thing.
        let mut ips = strings(spec.get("clusterIPs"));
        let single = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        match (&single, ips.first()) {
            (Some(s), None) => ips = vec![s.clone()],
            (Some(s), Some(first)) if s != first => {
                return Err(invalid(
                    name,
                    "spec.clusterIPs",
                    &json!(ips),
                    "element [0] must match clusterIP",
                ))
            }
            _ => {}
        }
        let cluster = self.families();
        let mut families: Vec<Family> = Vec::new();
        for (i, f) in strings(spec.get("ipFamilies")).iter().enumerate() {
            let family = Family::parse(f).ok_or_else(|| {
                invalid(
                    name,
                    &format!("spec.ipFamilies[{i}]"),
                    &json!(f),
                    "supported values: \"IPv4\", \"IPv6\"",
                )
            })?;
            families.push(family);
        }
        let headless = ips.first().map(String::as_str) == Some("None");
        let mut parsed: Vec<IpAddr> = Vec::new();
        if !headless {
            for (i, ip) in ips.iter().enumerate() {
                let addr: IpAddr = ip.parse().map_err(|_| {
                    invalid(
                        name,
                        &format!("spec.clusterIPs[{i}]"),
                        &json!(ip),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )
                })?;
                let family = Family::of(&addr);
                match families.get(i) {
                    None => families.push(family),
                    Some(f) if *f != family => {
                        return Err(invalid(
                            name,
                            &format!("spec.clusterIPs[{i}]"),
                            &json!(ips),
                            &format!(
                                "expected an {} value as indicated by `ipFamilies[{i}]`",
                                f.name()
                            ),
                        ))
                    }
                    _ => {}
                }
                parsed.push(addr);
            }
        }
        let mut policy = spec
            .get("ipFamilyPolicy")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if let Some(p) = &policy {
            if !matches!(
                p.as_str(),
                "SingleStack" | "PreferDualStack" | "RequireDualStack"
            ) {
                return Err(invalid(
                    name,
                    "spec.ipFamilyPolicy",
                    &json!(p),
                    "supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\"",
                ));
            }
        }
        if families.len() > 2 || (families.len() == 2 && families[0] == families[1]) {
            return Err(invalid(
                name,
                "spec.ipFamilies",
                &json!(families.iter().map(|f| f.name()).collect::<Vec<_>>()),
                "may specify no more than one IP for each IP family",
            ));
        }
        if policy.as_deref() == Some("RequireDualStack") && cluster.len() < 2 {
            return Err(invalid(
                name,
                "spec.ipFamilyPolicy",
                &json!("RequireDualStack"),
                "this cluster is not configured for dual-stack services",
            ));
        }
        for (i, f) in families.iter().enumerate() {
            if !cluster.contains(f) {
                return Err(invalid(
                    name,
                    &format!("spec.ipFamilies[{i}]"),
                    &json!(f.name()),
                    "not configured on this cluster",
                ));
            }
        }
        if policy.is_none() && families.len() == 2 {
            policy = Some("RequireDualStack".into());
        }
        if headless && !selector {
            // Headless without selector: every family the cluster has, unless asked otherwise.
            let policy = policy
                .get_or_insert_with(|| "PreferDualStack".into())
                .clone();
            if families.is_empty() {
                families = cluster.clone();
                if policy == "SingleStack" {
                    families.truncate(1);
                }
            } else if families.len() == 1 && cluster.len() == 2 && policy != "SingleStack" {
                families.push(if families[0] == Family::V4 {
                    Family::V6
                } else {
                    Family::V4
                });
            }
        } else {
            let policy = policy.get_or_insert_with(|| "SingleStack".into()).clone();
            if families.is_empty() {
                families.push(cluster[0]);
            }
            if policy != "SingleStack" && families.len() == 1 && cluster.len() == 2 {
                families.push(if families[0] == Family::V4 {
                    Family::V6
                } else {
                    Family::V4
                });
            }
            if policy == "SingleStack" && families.len() == 2 {
                if old.is_some() {
                    // Downgrade: the secondary family and its IP go.
                    families.truncate(1);
                    parsed.truncate(1);
                } else {
                    return Err(invalid(
                        name,
                        "spec.ipFamilyPolicy",
                        &json!("SingleStack"),
                        "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
                    ));
                }
            }
        }
        // Immutability against the stored object (after the omitted values were carried over).
        if let Some(old) = old.filter(|o| needs_cluster_ip(o)) {
            let before = strings(old.pointer("/spec/clusterIPs"));
            let now: Vec<String> = if headless {
                vec!["None".into()]
            } else {
                parsed.iter().map(IpAddr::to_string).collect()
            };
            for i in 0..before.len().min(now.len()) {
                if before[i] != now[i] {
                    return Err(invalid(
                        name,
                        &format!("spec.clusterIPs[{i}]"),
                        &json!(now),
                        "may not change once set",
                    ));
                }
            }
            if !before.is_empty() && now.is_empty() && !headless && !parsed.is_empty() {
                return Err(invalid(
                    name,
                    "spec.clusterIPs[0]",
                    &json!(now),
                    "primary clusterIP can not be unset",
                ));
            }
        }
        let held_before = old.map(held).unwrap_or_default();
        if !headless {
            // Explicit addresses first, then one per family still missing.
            for ip in &parsed {
                if held_before.ips.contains(ip) {
                    continue;
                }
                if let Err(refused) = self.allocate_ip(ip) {
                    let detail = refused.ip_message().replace("{ip}", &ip.to_string());
                    return Err(invalid(
                        name,
                        "spec.clusterIPs",
                        &json!(ips),
                        &format!("failed to allocate IP {ip}: {detail}"),
                    ));
                }
                taken.ips.push(*ip);
            }
            for family in families.iter().skip(parsed.len()) {
                let Some(range) = self.range(*family) else {
                    continue;
                };
                let cidr = range.cidr;
                let ip = range.map.next().map(|off| range.ip(off)).ok_or_else(|| {
                    ApiError::internal(format!(
                        "failed to allocate a serviceIP: {}: range {cidr} is full",
                        Refused::Full.ip_message()
                    ))
                })?;
                taken.ips.push(ip);
                parsed.push(ip);
            }
        }
        let spec = spec_mut(svc);
        let cluster_ips: Vec<String> = if headless {
            vec!["None".into()]
        } else {
            parsed.iter().map(IpAddr::to_string).collect()
        };
        spec.insert("clusterIP".into(), json!(cluster_ips[0]));
        spec.insert("clusterIPs".into(), json!(cluster_ips));
        spec.insert(
            "ipFamilies".into(),
            json!(families.iter().map(|f| f.name()).collect::<Vec<_>>()),
        );
        spec.insert("ipFamilyPolicy".into(), json!(policy));
        Ok(())
    }

    /// Allocates node ports (and the health-check node port) where the type needs them, or
    /// drops them where it does not.
    fn node_ports(
        &mut self,
        svc: &mut Value,
        name: &str,
        old: Option<&Value>,
        taken: &mut Held,
    ) -> ApiResult<()> {
        let wants = needs_node_ports(svc);
        let held_before = old.map(held).unwrap_or_default();
        let ports = spec_mut(svc)
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(ports.len());
        let mut mine: Vec<u16> = Vec::new();
        let mut error = None;
        for (i, mut port) in ports.into_iter().enumerate() {
            if !wants {
                if let Some(p) = port.as_object_mut() {
                    p.remove("nodePort");
                }
                out.push(port);
                continue;
            }
            let explicit = port
                .get("nodePort")
                .and_then(Value::as_u64)
                .filter(|n| *n != 0);
            if error.is_none() {
                match explicit {
                    Some(n) => {
                        let Ok(n16) = u16::try_from(n) else {
                            error = Some(invalid(
                                name,
                                &format!("spec.ports[{i}].nodePort"),
                                &json!(n),
                                "must be between 1 and 65535, inclusive",
                            ));
                            out.push(port);
                            continue;
                        };
                        if !held_before.ports.contains(&n16) && !mine.contains(&n16) {
                            match self.allocate_port(n16) {
                                Ok(()) => taken.ports.push(n16),
                                Err(detail) => {
                                    error = Some(invalid(
                                        name,
                                        &format!("spec.ports[{i}].nodePort"),
                                        &json!(n),
                                        &detail,
                                    ))
                                }
                            }
                        }
                        mine.push(n16);
                    }
                    None => match self.next_port() {
                        Some(n) => {
                            taken.ports.push(n);
                            mine.push(n);
                            port["nodePort"] = json!(n);
                        }
                        None => {
                            error = Some(ApiError::internal(
                                "failed to allocate a nodePort: range is full",
                            ))
                        }
                    },
                }
            }
            out.push(port);
        }
        let spec = spec_mut(svc);
        if !out.is_empty() || spec.contains_key("ports") {
            spec.insert("ports".into(), Value::Array(out));
        }
        if let Some(e) = error {
            return Err(e);
        }
        if needs_health_check_port(svc) {
            let explicit = svc
                .pointer("/spec/healthCheckNodePort")
                .and_then(Value::as_u64)
                .filter(|n| *n != 0);
            let port = match explicit {
                Some(n) => {
                    let n16 = u16::try_from(n).map_err(|_| {
                        invalid(
                            name,
                            "spec.healthCheckNodePort",
                            &json!(n),
                            "must be between 1 and 65535, inclusive",
                        )
                    })?;
                    if !held_before.ports.contains(&n16) {
                        self.allocate_port(n16).map_err(|detail| {
                            invalid(name, "spec.healthCheckNodePort", &json!(n), &detail)
                        })?;
                        taken.ports.push(n16);
                    }
                    n16
                }
                None => {
                    let n = self.next_port().ok_or_else(|| {
                        ApiError::internal("failed to allocate a nodePort: range is full")
                    })?;
                    taken.ports.push(n);
                    n
                }
            };
            spec_mut(svc).insert("healthCheckNodePort".into(), json!(port));
        } else {
            spec_mut(svc).remove("healthCheckNodePort");
        }
        Ok(())
    }
}

/// The registry's defaults for a Service spec (type, ports, affinity, traffic policies).
fn default_spec(svc: &mut Value) {
    let spec = spec_mut(svc);
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("ClusterIP")
        .to_string();
    spec.insert("type".into(), json!(kind));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            let protocol_missing = port
                .get("protocol")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if protocol_missing {
                port.insert("protocol".into(), json!("TCP"));
            }
            let target_missing = match port.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            if target_missing {
                if let Some(p) = port.get("port").cloned() {
                    port.insert("targetPort".into(), p);
                }
            }
        }
    }
    let affinity = spec
        .get("sessionAffinity")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("None")
        .to_string();
    spec.insert("sessionAffinity".into(), json!(affinity));
    if affinity == "ClientIP" {
        let timeout = spec
            .get("sessionAffinityConfig")
            .and_then(|c| c.pointer("/clientIP/timeoutSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT);
        spec.insert(
            "sessionAffinityConfig".into(),
            json!({"clientIP": {"timeoutSeconds": timeout}}),
        );
    } else {
        spec.remove("sessionAffinityConfig");
    }
    if kind != "ExternalName" && !spec.contains_key("internalTrafficPolicy") {
        spec.insert("internalTrafficPolicy".into(), json!("Cluster"));
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer")
        && !spec.contains_key("externalTrafficPolicy")
    {
        spec.insert("externalTrafficPolicy".into(), json!("Cluster"));
    }
    if kind == "LoadBalancer" && !spec.contains_key("allocateLoadBalancerNodePorts") {
        spec.insert("allocateLoadBalancerNodePorts".into(), json!(true));
    }
}

/// What the registry copies from the stored Service when an update omits it: cluster IPs,
/// families and policy (while both need a cluster IP), node ports of ports matched by name and
/// the health-check node port.
fn carry_over(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        let old_spec = old.get("spec").cloned().unwrap_or_default();
        let spec = spec_mut(new);
        let empty = |v: Option<&Value>| match v {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        let ip_missing = empty(spec.get("clusterIP"));
        let ips_missing = empty(spec.get("clusterIPs"));
        if ip_missing && ips_missing {
            for f in ["clusterIP", "clusterIPs"] {
                if let Some(v) = old_spec.get(f) {
                    spec.insert(f.into(), v.clone());
                }
            }
        } else if ips_missing {
            // Only clusterIP given: the secondary stays as it was.
            let mut ips = strings(old_spec.get("clusterIPs"));
            if let (Some(first), Some(ip)) = (
                ips.first_mut(),
                spec.get("clusterIP").and_then(Value::as_str),
            ) {
                *first = ip.to_string();
            }
            spec.insert("clusterIPs".into(), json!(ips));
        }
        for f in ["ipFamilies", "ipFamilyPolicy"] {
            if empty(spec.get(f)) {
                if let Some(v) = old_spec.get(f) {
                    spec.insert(f.into(), v.clone());
                }
            }
        }
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        let old_ports: Vec<Value> = old
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(ports) = spec_mut(new).get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut() {
                if port.get("nodePort").and_then(Value::as_u64).unwrap_or(0) != 0 {
                    continue;
                }
                let name = port.get("name").cloned();
                let number = port.get("port").cloned();
                let matched = old_ports
                    .iter()
                    .find(|o| o.get("name") == name.as_ref() && name.is_some())
                    .or_else(|| old_ports.iter().find(|o| o.get("port") == number.as_ref()));
                if let Some(n) = matched.and_then(|o| o.get("nodePort")).cloned() {
                    port["nodePort"] = n;
                }
            }
        }
    }
    if needs_health_check_port(old) && needs_health_check_port(new) {
        let spec = spec_mut(new);
        if spec
            .get("healthCheckNodePort")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            == 0
        {
            if let Some(n) = old.pointer("/spec/healthCheckNodePort") {
                spec.insert("healthCheckNodePort".into(), n.clone());
            }
        }
    }
}

/// The `kubernetes` Service kube-apiserver keeps in `default`: the first address of the primary
/// range, port `https` 443 to the API server's port.
pub fn kubernetes_service(cluster_ip: IpAddr, api_port: u16) -> Value {
    json!({
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip.to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}],
            "sessionAffinity": "None",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(cidrs: &[&str]) -> ServiceNetwork {
        ServiceNetwork::new(
            &cidrs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            DEFAULT_NODE_PORTS,
        )
        .unwrap()
    }

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn ranges_exclude_network_and_broadcast_and_reserve_a_static_band() {
        let r = IpRange::new(Cidr::parse("10.96.0.0/12").unwrap());
        assert_eq!(r.map.max, (1 << 20) - 2);
        assert_eq!(r.map.offset, 256);
        assert_eq!(r.ip(0).to_string(), "10.96.0.1");
        assert_eq!(r.ip(r.map.max - 1).to_string(), "10.111.255.254");
        let small = IpRange::new(Cidr::parse("10.0.0.0/28").unwrap());
        assert_eq!((small.map.max, small.map.offset), (14, 0));
        let v6 = IpRange::new(Cidr::parse("fd00::/64").unwrap());
        assert_eq!((v6.map.max, v6.map.offset), (65535, 256));
        assert!(Cidr::parse("10.96.0.1/12").is_err());
        assert!(Cidr::parse("10.96.0.0").is_err());
    }

    #[test]
    fn dynamic_picks_prefer_the_upper_band_then_fill_the_static_one() {
        let mut n = net(&["10.0.0.0/27"]); // 30 usable, offset 16
        let mut got = BTreeSet::new();
        for _ in 0..30 {
            let mut s = svc(json!({}));
            n.create(&mut s).unwrap();
            let ip = s["spec"]["clusterIP"].as_str().unwrap().to_string();
            let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
            if got.len() < 14 {
                assert!(last >= 17, "{ip} picked while the upper band had room");
            }
            assert!(got.insert(last), "{ip} handed out twice");
        }
        assert_eq!(got, (1..=30).collect());
        let err = n.create(&mut svc(json!({}))).unwrap_err();
        assert_eq!(err.code, 500);
    }

    #[test]
    fn gaps_are_found_from_a_random_start() {
        let map = Bitmap {
            max: 10,
            offset: 0,
            used: (0..10).filter(|i| *i != 3).collect(),
        };
        for _ in 0..20 {
            assert_eq!(map.free_in(0, 10), Some(3));
        }
    }

    #[test]
    fn defaults_match_the_registry() {
        let mut n = net(&["10.96.0.0/12"]);
        let mut s = svc(
            json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP", "selector": {"a": "b"}}),
        );
        n.create(&mut s).unwrap();
        let spec = &s["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["ports"][0]["targetPort"], 80);
        assert_eq!(
            spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["clusterIPs"], json!([spec["clusterIP"]]));
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert!(spec.get("ports").unwrap()[0].get("nodePort").is_none());
    }

    #[test]
    fn dual_stack_policies() {
        let mut dual = net(&["fd00:10:96::/108", "10.96.0.0/16"]);
        let mut s = svc(json!({"ipFamilyPolicy": "PreferDualStack"}));
        dual.create(&mut s).unwrap();
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv6", "IPv4"]));
        let ips = strings(s.pointer("/spec/clusterIPs"));
        assert!(
            ips[0].starts_with("fd00:10:96::") && ips[1].starts_with("10.96."),
            "{ips:?}"
        );
        let mut single = svc(json!({}));
        dual.create(&mut single).unwrap();
        assert_eq!(single["spec"]["ipFamilies"], json!(["IPv6"]));
        let mut v4 = svc(json!({"ipFamilies": ["IPv4"]}));
        dual.create(&mut v4).unwrap();
        assert!(v4["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.96."));
        let mut plain = net(&["10.96.0.0/12"]);
        let mut require = svc(json!({"ipFamilyPolicy": "RequireDualStack"}));
        let err = plain.create(&mut require).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .contains("this cluster is not configured for dual-stack services"),
            "{}",
            err.message
        );
        let mut prefer = svc(json!({"ipFamilyPolicy": "PreferDualStack"}));
        plain.create(&mut prefer).unwrap();
        assert_eq!(prefer["spec"]["ipFamilies"], json!(["IPv4"]));
        let mut v6 = svc(json!({"ipFamilies": ["IPv6"]}));
        assert_eq!(plain.create(&mut v6).unwrap_err().code, 422);
    }

    #[test]
    fn explicit_headless_and_external_name() {
        let mut n = net(&["10.96.0.0/12"]);
        let mut a = svc(json!({"clusterIP": "10.96.0.10"}));
        n.create(&mut a).unwrap();
        assert_eq!(a["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        let err = n
            .create(&mut svc(json!({"clusterIP": "10.96.0.10"})))
            .unwrap_err();
        assert_eq!(
            err.message,
            "Service \"s\" is invalid: spec.clusterIPs: Invalid value: [\"10.96.0.10\"]: failed to allocate IP 10.96.0.10: provided IP is already allocated"
        );
        let err = n
            .create(&mut svc(json!({"clusterIPs": ["10.0.0.5"]})))
            .unwrap_err();
        assert_eq!(
            err.message,
            "Service \"s\" is invalid: spec.clusterIPs: Invalid value: [\"10.0.0.5\"]: failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
        );
        let err = n
            .create(&mut svc(json!({"clusterIP": "10.96.0.0"})))
            .unwrap_err();
        assert!(err.message.contains("not in the valid range"));
        let mut h = svc(json!({"clusterIP": "None", "selector": {"a": "b"}}));
        n.create(&mut h).unwrap();
        assert_eq!(h["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(h["spec"]["ipFamilyPolicy"], "SingleStack");
        let mut e = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
        n.create(&mut e).unwrap();
        assert!(e["spec"].get("clusterIP").is_none() && e["spec"].get("ipFamilies").is_none());
        // Releasing makes the address available to an explicit request again.
        n.release(&a);
        n.create(&mut svc(json!({"clusterIP": "10.96.0.10"})))
            .unwrap();
    }

    #[test]
    fn node_ports_and_updates() {
        let mut n = net(&["10.96.0.0/12"]);
        let mut np = svc(
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30080}]}),
        );
        n.create(&mut np).unwrap();
        let auto = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&auto));
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        let err = n
            .create(&mut svc(
                json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": 30080}]}),
            ))
            .unwrap_err();
        assert!(
            err.message.contains(
                "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
            ),
            "{}",
            err.message
        );
        let err = n
            .create(&mut svc(
                json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": 80}]}),
            ))
            .unwrap_err();
        assert!(
            err.message
                .contains("The range of valid ports is 30000-32767"),
            "{}",
            err.message
        );
        // An update that omits the allocated values keeps them; changing the IP is refused.
        let mut update = svc(
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}),
        );
        n.update(&np, &mut update).unwrap();
        assert_eq!(update["spec"]["clusterIP"], np["spec"]["clusterIP"]);
        assert_eq!(update["spec"]["ports"], np["spec"]["ports"]);
        let mut moved = update.clone();
        moved["spec"]["clusterIP"] = json!("10.96.7.7");
        moved["spec"]["clusterIPs"] = json!(["10.96.7.7"]);
        let err = n.update(&update, &mut moved).unwrap_err();
        assert_eq!(err.message, "Service \"s\" is invalid: spec.clusterIPs[0]: Invalid value: [\"10.96.7.7\"]: may not change once set");
        // To ClusterIP: the node ports are released and can be requested again.
        let mut cip = svc(json!({"ports": [{"port": 80}]}));
        n.update(&update, &mut cip).unwrap();
        assert!(cip["spec"]["ports"][0].get("nodePort").is_none());
        n.create(&mut svc(
            json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": 30080}]}),
        ))
        .unwrap();
        // To ExternalName: the cluster IP goes back to the pool.
        let ip = cip["spec"]["clusterIP"].as_str().unwrap().to_string();
        let mut ext = svc(json!({"type": "ExternalName", "externalName": "x.example"}));
        n.update(&cip, &mut ext).unwrap();
        n.create(&mut svc(json!({"clusterIP": ip}))).unwrap();
    }

    #[test]
    fn failed_creates_leave_nothing_allocated() {
        let mut n = net(&["10.96.0.0/12"]);
        n.create(&mut svc(
            json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": 30001}]}),
        ))
        .unwrap();
        let err = n
            .create(&mut svc(json!({"clusterIP": "10.96.0.50", "type": "NodePort", "ports": [{"port": 1, "nodePort": 30001}]})))
            .unwrap_err();
        assert_eq!(err.code, 422);
        n.create(&mut svc(json!({"clusterIP": "10.96.0.50"})))
            .unwrap();
    }
}
