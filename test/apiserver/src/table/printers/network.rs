//! Services, Endpoints, EndpointSlices and NetworkPolicies. Fields the real
//! server would have defaulted on create (Service `type`, port `protocol`,
//! `clusterIPs`) are read with those defaults, since this fixture stores
//! objects as posted.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::fields::{self, int, items, or, text};
use super::labels::{format_label_selector, format_labels};
use super::Printer;
use crate::table::column::{Column, Row};
use crate::table::descriptions::{
    CLUSTER_IP, ENDPOINTS_SUBSETS, EXTERNAL_IPS, POD_SELECTOR, SERVICE_PORTS, SERVICE_SELECTOR,
    SERVICE_TYPE, SLICE_ADDRESS_TYPE, SLICE_ENDPOINTS, SLICE_PORTS,
};

/// At most this many endpoints or ports are listed before `+ N more...`.
const LISTED: usize = 3;

/// The Service printer.
pub struct Services;
/// The Endpoints printer.
pub struct Endpoints;
/// The EndpointSlice printer.
pub struct EndpointSlices;
/// The NetworkPolicy printer.
pub struct NetworkPolicies;

fn strings(object: &Value, pointer: &str) -> Vec<String> {
    items(object, pointer)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Load-balancer ingress IPs (or hostnames), sorted and de-duplicated.
fn load_balancer_ips(service: &Value) -> Vec<String> {
    let set: BTreeSet<&str> = items(service, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| or(text(i, "/ip"), text(i, "/hostname")))
        .filter(|a| !a.is_empty())
        .collect();
    set.into_iter().map(str::to_string).collect()
}

fn external_ip(service: &Value, kind: &str) -> String {
    let external = strings(service, "/spec/externalIPs");
    match kind {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let mut all = load_balancer_ips(service);
            match (all.is_empty(), external.is_empty()) {
                (true, true) => "<pending>".into(),
                _ => {
                    all.extend(external);
                    all.join(",")
                }
            }
        }
        "ExternalName" => text(service, "/spec/externalName").into(),
        _ => "<unknown>".into(),
    }
}

fn ports(service: &Value) -> String {
    let ports: Vec<String> = items(service, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = or(text(p, "/protocol"), "TCP");
            match int(p, "/nodePort") {
                node_port if node_port > 0 => format!("{}:{node_port}/{protocol}", int(p, "/port")),
                _ => format!("{}/{protocol}", int(p, "/port")),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

impl Printer for Services {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Type", "string", SERVICE_TYPE),
            Column::new("Cluster-IP", "string", CLUSTER_IP),
            Column::new("External-IP", "string", EXTERNAL_IPS),
            Column::new("Port(s)", "string", SERVICE_PORTS),
            Column::age(),
            Column::new("Selector", "string", SERVICE_SELECTOR).wide(),
        ]
    }

    fn row(&self, service: &Value, now: Timestamp) -> Row {
        let kind = or(text(service, "/spec/type"), "ClusterIP");
        let cluster_ip = items(service, "/spec/clusterIPs")
            .first()
            .and_then(Value::as_str)
            .unwrap_or_else(|| text(service, "/spec/clusterIP"));
        Row::of(vec![
            fields::name(service),
            kind.into(),
            or(cluster_ip, "<none>").into(),
            external_ip(service, kind).into(),
            ports(service).into(),
            fields::age(service, now),
            format_labels(service.pointer("/spec/selector")).into(),
        ])
    }
}

fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Collects entries up to [`LISTED`], counting all of them.
#[derive(Default)]
struct Listing {
    shown: Vec<String>,
    total: usize,
    more: bool,
}

impl Listing {
    fn push(&mut self, entry: String) {
        if self.shown.len() < LISTED {
            self.shown.push(entry);
        } else {
            self.more = true;
        }
        self.total += 1;
    }

    fn render(&self, empty: &str) -> String {
        let joined = self.shown.join(",");
        if self.more {
            format!("{joined} + {} more...", self.total - LISTED)
        } else if joined.is_empty() {
            empty.into()
        } else {
            joined
        }
    }
}

/// `ip:port` for every address and port, `<none>` without subsets.
fn endpoint_addresses(endpoints: &Value) -> String {
    let subsets = items(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut listing = Listing::default();
    for subset in subsets {
        let addresses = items(subset, "/addresses");
        let ports = items(subset, "/ports");
        if ports.is_empty() {
            for address in addresses {
                listing.push(text(address, "/ip").into());
            }
            continue;
        }
        for port in ports {
            for address in addresses {
                listing.push(host_port(text(address, "/ip"), int(port, "/port")));
            }
        }
    }
    listing.render("")
}

impl Printer for Endpoints {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Endpoints", "string", ENDPOINTS_SUBSETS),
            Column::age(),
        ]
    }

    fn row(&self, endpoints: &Value, now: Timestamp) -> Row {
        Row::of(vec![
            fields::name(endpoints),
            endpoint_addresses(endpoints).into(),
            fields::age(endpoints, now),
        ])
    }
}

impl Printer for EndpointSlices {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("AddressType", "string", SLICE_ADDRESS_TYPE),
            Column::new("Ports", "string", SLICE_PORTS),
            Column::new("Endpoints", "string", SLICE_ENDPOINTS),
            Column::age(),
        ]
    }

    fn row(&self, slice: &Value, now: Timestamp) -> Row {
        let mut ports = Listing::default();
        for port in items(slice, "/ports") {
            ports.push(
                match (port.get("port").and_then(Value::as_i64), port.get("name")) {
                    (Some(number), _) => number.to_string(),
                    (None, Some(name)) if !name.is_null() => {
                        name.as_str().unwrap_or_default().into()
                    }
                    _ => "*".into(),
                },
            );
        }
        let mut addresses = Listing::default();
        for endpoint in items(slice, "/endpoints") {
            for address in strings(endpoint, "/addresses") {
                addresses.push(address);
            }
        }
        Row::of(vec![
            fields::name(slice),
            text(slice, "/addressType").into(),
            ports.render("<unset>").into(),
            addresses.render("<unset>").into(),
            fields::age(slice, now),
        ])
    }
}

impl Printer for NetworkPolicies {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Pod-Selector", "string", POD_SELECTOR),
            Column::age(),
        ]
    }

    fn row(&self, policy: &Value, now: Timestamp) -> Row {
        Row::of(vec![
            fields::name(policy),
            format_label_selector(policy.pointer("/spec/podSelector")).into(),
            fields::age(policy, now),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cells(printer: &dyn Printer, object: Value) -> Vec<Value> {
        printer.row(&object, Timestamp::UNIX_EPOCH).cells
    }

    #[test]
    fn cluster_ip_service_with_defaults() {
        let service = json!({
            "metadata": {"name": "kube-dns"},
            "spec": {
                "clusterIP": "10.96.0.10",
                "selector": {"k8s-app": "kube-dns"},
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 9153}],
            },
        });
        assert_eq!(
            cells(&Services, service),
            vec![
                json!("kube-dns"),
                json!("ClusterIP"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("53/UDP,9153/TCP"),
                json!("<unknown>"),
                json!("k8s-app=kube-dns"),
            ]
        );
    }

    #[test]
    fn load_balancer_and_node_port_services() {
        let pending = json!({"spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.1.1", "fd00::1"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let cells_pending = cells(&Services, pending);
        assert_eq!(cells_pending[2], "10.96.1.1");
        assert_eq!(cells_pending[3], "<pending>");
        assert_eq!(cells_pending[4], "80:30080/TCP");
        let assigned = json!({"spec": {"type": "LoadBalancer", "externalIPs": ["5.5.5.5"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "2.2.2.2"}, {"hostname": "lb.example"}, {"ip": "1.1.1.1"}]}}});
        assert_eq!(
            cells(&Services, assigned)[3],
            "1.1.1.1,2.2.2.2,lb.example,5.5.5.5"
        );
        let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example"}});
        let external_cells = cells(&Services, external);
        assert_eq!(external_cells[3], "db.example");
        assert_eq!(external_cells[4], "<none>");
        assert_eq!(external_cells[6], "<none>");
    }

    #[test]
    fn endpoints_list_three_then_count_the_rest() {
        let endpoints = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}], "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "10.0.0.9"}]},
        ]});
        assert_eq!(
            cells(&Endpoints, endpoints)[1],
            "10.0.0.1:80,[fd00::2]:80,10.0.0.1:443 + 2 more..."
        );
        assert_eq!(cells(&Endpoints, json!({}))[1], "<none>");
        assert_eq!(cells(&Endpoints, json!({"subsets": [{}]}))[1], "");
    }

    #[test]
    fn endpoint_slices_show_ports_and_addresses() {
        let slice = json!({
            "addressType": "IPv4",
            "ports": [{"port": 80, "name": "http"}, {"name": "named"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}],
        });
        let c = cells(&EndpointSlices, slice);
        assert_eq!(
            &c[1..4],
            &[
                json!("IPv4"),
                json!("80,named,*"),
                json!("10.0.0.1,10.0.0.2")
            ]
        );
        let empty = cells(&EndpointSlices, json!({"addressType": "IPv6"}));
        assert_eq!(&empty[2..4], &[json!("<unset>"), json!("<unset>")]);
    }

    #[test]
    fn network_policies_show_their_pod_selector() {
        let policy = json!({"spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(cells(&NetworkPolicies, policy)[1], "app=web");
        assert_eq!(
            cells(&NetworkPolicies, json!({"spec": {"podSelector": {}}}))[1],
            "<none>"
        );
    }
}
