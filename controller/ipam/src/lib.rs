//! kube-ovn-controller's IPAM: every subnet's addresses, IP pools and MACs, in memory.
//!
//! The controller rebuilds it at start from IP CRs, pod/node annotations and NB before serving
//! any allocation (restoring with `check_conflict = false`, so the state that exists wins),
//! then allocates through it. It is plain data with no I/O and no locking, so the controller
//! decides how to share it and tests can drive it through any sequence of events.

pub mod addr;
pub mod error;
pub mod mac;
pub mod range;
pub mod subnet;

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use addr::Family;
pub use error::{Error, Result};
pub use subnet::{Allocation, Owner, Request, Subnet, SubnetConfig, Usage};

/// All subnets' address books.
#[derive(Debug, Clone, Default)]
pub struct Ipam {
    subnets: BTreeMap<String, Subnet>,
}

impl Ipam {
    /// An empty IPAM.
    pub fn new() -> Ipam {
        Ipam::default()
    }

    /// Adds a subnet, or applies a changed configuration (CIDR expansion, `excludeIps`,
    /// gateway) to an existing one. Existing allocations and pools that still fit are kept;
    /// the allocations that no longer fit are returned, so their owners can be given new
    /// addresses.
    pub fn add_or_update_subnet(&mut self, config: SubnetConfig) -> Result<Vec<(IpAddr, Owner)>> {
        let mut fresh = Subnet::new(config.clone())?;
        let Some(old) = self.subnets.get(&config.name) else {
            self.subnets.insert(config.name.clone(), fresh);
            return Ok(Vec::new());
        };
        if old.config() == &config {
            return Ok(Vec::new());
        }
        let mut dropped = Vec::new();
        let macs: BTreeMap<String, String> = old
            .macs()
            .map(|(m, o)| (o.nic.clone(), m.clone()))
            .collect();
        let mut by_nic: BTreeMap<(String, String), Vec<IpAddr>> = BTreeMap::new();
        for (ip, owner) in old.allocations() {
            by_nic.entry((owner.pod, owner.nic)).or_default().push(ip);
        }
        for ((pod, nic), ips) in by_nic {
            for ip in ips {
                let req = Request {
                    pod: pod.clone(),
                    nic: nic.clone(),
                    ips: vec![ip],
                    mac: macs.get(&nic).cloned(),
                    family: Some(Family::of(&ip)),
                    ..Request::default()
                };
                if fresh.allocate(&req).is_err() {
                    dropped.push((
                        ip,
                        Owner {
                            pod: pod.clone(),
                            nic: nic.clone(),
                        },
                    ));
                }
            }
        }
        self.subnets.insert(config.name.clone(), fresh);
        Ok(dropped)
    }

    /// Forgets a subnet.
    pub fn delete_subnet(&mut self, name: &str) {
        self.subnets.remove(name);
    }

    /// The subnet called `name`.
    pub fn subnet(&self, name: &str) -> Option<&Subnet> {
        self.subnets.get(name)
    }

    /// All subnets by name.
    pub fn subnets(&self) -> impl Iterator<Item = &Subnet> {
        self.subnets.values()
    }

    /// Adds or replaces an IP pool in a subnet.
    pub fn set_pool(&mut self, subnet: &str, pool: &str, ips: &[String]) -> Result<()> {
        self.subnet_mut(subnet)?.set_pool(pool, ips)
    }

    /// Removes an IP pool from a subnet.
    pub fn remove_pool(&mut self, subnet: &str, pool: &str) -> Result<()> {
        self.subnet_mut(subnet)?.remove_pool(pool);
        Ok(())
    }

    /// Removes an IP pool by name from whichever subnet has it (the pool's object is gone and
    /// with it the knowledge of its subnet).
    pub fn remove_pool_everywhere(&mut self, pool: &str) {
        for s in self.subnets.values_mut() {
            s.remove_pool(pool);
        }
    }

    fn subnet_mut(&mut self, name: &str) -> Result<&mut Subnet> {
        self.subnets
            .get_mut(name)
            .ok_or_else(|| Error::NoSubnet(name.to_string()))
    }

    /// Allocates addresses for a NIC in `subnet` (idempotent per NIC).
    pub fn allocate(&mut self, subnet: &str, req: &Request) -> Result<Allocation> {
        self.subnet_mut(subnet)?.allocate(req)
    }

    /// Releases one NIC in one subnet.
    pub fn release_nic(&mut self, subnet: &str, nic: &str) -> Vec<IpAddr> {
        self.subnets
            .get_mut(subnet)
            .map(|s| s.release_nic(nic))
            .unwrap_or_default()
    }

    /// Releases everything `pod` holds in every subnet (pod deleted).
    pub fn release_pod(&mut self, pod: &str) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for s in self.subnets.values_mut() {
            for nic in s.nics_of(pod) {
                out.extend(s.release_nic(&nic));
            }
        }
        out
    }

    /// Which subnet holds `ip` and for whom.
    pub fn owner_of(&self, ip: &IpAddr) -> Option<(&str, &Owner)> {
        self.subnets
            .values()
            .find_map(|s| s.owner_of(ip).map(|o| (s.config().name.as_str(), o)))
    }
}
