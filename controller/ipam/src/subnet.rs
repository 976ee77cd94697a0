//! One subnet's address book: which addresses exist, which are reserved, which IP pools carve
//! out which ranges, who holds what, and which MACs are taken.
//!
//! Allocation follows upstream Kube-OVN so an adopted cluster sees the same behaviour: the lowest
//! address that is usable, not reserved (`excludeIps`, the gateway), not in use and not skipped;
//! addresses released since start are handed out again only once every never-used address of
//! the pool is gone, so a deleted pod's IP is not immediately given to a new pod. Static requests
//! may use reserved addresses (that is what `excludeIps` is for) but never the gateway or
//! another pod's address. Every request is idempotent per NIC.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use kube_ovn_common::net::{self, CidrBlock};

use crate::addr::{self, Family};
use crate::error::{Error, Result};
use crate::mac;
use crate::range::RangeSet;

/// Who holds an address or MAC: a pod (`namespace/name`, or any owner key the caller uses) and
/// one of its NICs (upstream's port name, e.g. `name.namespace`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The owning object.
    pub pod: String,
    /// The NIC of that object.
    pub nic: String,
}

/// The subnet as configured (from `Subnet.spec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetConfig {
    /// Subnet name.
    pub name: String,
    /// `cidrBlock`: one CIDR, or an IPv4 and an IPv6 CIDR separated by a comma.
    pub cidr_block: String,
    /// `gateway`: one address per family, comma-separated; empty for none.
    pub gateway: String,
    /// `excludeIps`: addresses, `a..b` ranges or CIDRs never handed out at random.
    pub exclude_ips: Vec<String>,
}

/// One allocation request for a NIC.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Owner of the NIC.
    pub pod: String,
    /// The NIC.
    pub nic: String,
    /// Requested addresses (`ovn.kubernetes.io/ip_address`); empty for automatic.
    pub ips: Vec<IpAddr>,
    /// Requested MAC (`ovn.kubernetes.io/mac_address`).
    pub mac: Option<String>,
    /// IP pool to allocate from (`ovn.kubernetes.io/ip_pool` / IPPool name); `None` = default.
    pub pool: Option<String>,
    /// Only this family, for a dual-stack subnet.
    pub family: Option<Family>,
    /// Addresses not to hand out this time (e.g. found in use on the network).
    pub skipped: Vec<IpAddr>,
    /// Refuse addresses or MACs held by another owner (false when restoring state).
    pub check_conflict: bool,
}

/// What a NIC got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// IPv4 address, if the subnet has IPv4.
    pub v4: Option<IpAddr>,
    /// IPv6 address, if the subnet has IPv6.
    pub v6: Option<IpAddr>,
    /// MAC address.
    pub mac: String,
}

impl Allocation {
    /// The `ovn.kubernetes.io/ip_address` annotation value: `v4`, `v6` or `v4,v6`.
    pub fn ip_address(&self) -> String {
        [self.v4, self.v6]
            .iter()
            .flatten()
            .map(|ip| ip.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Counters and ranges for `Subnet.status` (`v4availableIPs`, `v4usingIPs`,
/// `v4availableIPrange`, `v4usingIPrange`, and the v6 equivalents).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    /// Addresses still available for automatic allocation.
    pub available: u128,
    /// Addresses held.
    pub using: u128,
    /// Available addresses as ranges.
    pub available_range: String,
    /// Held addresses as ranges.
    pub using_range: String,
}

#[derive(Debug, Clone)]
struct FamilyBook {
    family: Family,
    net: IpNet,
    usable: RangeSet,
    reserved: RangeSet,
    gateway: Option<u128>,
    /// Never handed out since this book was built.
    fresh: RangeSet,
    /// Handed out and released since.
    released: RangeSet,
    using: RangeSet,
    owner: BTreeMap<u128, Owner>,
    by_nic: HashMap<String, u128>,
}

impl FamilyBook {
    fn new(net: IpNet, gateway: Option<IpAddr>, excluded: &RangeSet) -> FamilyBook {
        let usable = addr::usable(&net);
        let gateway = gateway.map(|g| addr::key(&g));
        let mut reserved = excluded.intersection(&usable);
        if let Some(g) = gateway {
            reserved.insert(g);
        }
        FamilyBook {
            family: Family::of(&net.network()),
            net,
            fresh: usable.clone(),
            usable,
            reserved,
            gateway,
            released: RangeSet::new(),
            using: RangeSet::new(),
            owner: BTreeMap::new(),
            by_nic: HashMap::new(),
        }
    }

    fn take(&mut self, k: u128, owner: &Owner) {
        if let Some(old) = self.by_nic.get(&owner.nic).copied() {
            if old != k {
                self.release_key(old);
            }
        }
        // Restoring may hand an address to a new owner (conflicts unchecked): the previous
        // holder's NIC no longer has it.
        if let Some(prev) = self.owner.get(&k) {
            if prev.nic != owner.nic && self.by_nic.get(&prev.nic) == Some(&k) {
                self.by_nic.remove(&prev.nic);
            }
        }
        self.fresh.remove(k);
        self.released.remove(k);
        self.using.insert(k);
        self.owner.insert(k, owner.clone());
        self.by_nic.insert(owner.nic.clone(), k);
    }

    fn release_key(&mut self, k: u128) {
        if let Some(o) = self.owner.remove(&k) {
            if self.by_nic.get(&o.nic) == Some(&k) {
                self.by_nic.remove(&o.nic);
            }
            self.using.remove(k);
            if self.usable.contains(k) {
                self.released.insert(k);
            }
        }
    }

    fn release_nic(&mut self, nic: &str) -> Option<IpAddr> {
        let k = self.by_nic.get(nic).copied()?;
        self.release_key(k);
        Some(addr::ip(self.family, k))
    }

    /// The next address for a pool's range `within`.
    fn pick(&self, within: &RangeSet, skipped: &RangeSet) -> Option<u128> {
        let excluded = [&self.reserved, &self.using, skipped];
        self.fresh
            .first_in(within, &excluded)
            .or_else(|| self.released.first_in(within, &excluded))
    }

    fn usage(&self) -> Usage {
        let mut available = self.usable.clone();
        available.subtract(&self.reserved);
        available.subtract(&self.using);
        Usage {
            available: available.len(),
            using: self.owner.len() as u128,
            available_range: addr::render(self.family, &available),
            using_range: addr::render(self.family, &self.using),
        }
    }
}

/// A named IP pool's ranges, per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Pool {
    v4: RangeSet,
    v6: RangeSet,
}

impl Pool {
    fn of(&self, family: Family) -> &RangeSet {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

/// One subnet's address book.
#[derive(Debug, Clone)]
pub struct Subnet {
    config: SubnetConfig,
    v4: Option<FamilyBook>,
    v6: Option<FamilyBook>,
    macs: HashMap<String, Owner>,
    mac_by_nic: HashMap<String, String>,
    nics_by_pod: HashMap<String, BTreeSet<String>>,
    pools: BTreeMap<String, Pool>,
}

impl Subnet {
    /// Builds an empty address book for `config`.
    pub fn new(config: SubnetConfig) -> Result<Subnet> {
        let invalid = |why: String| Error::InvalidCidr(format!("{} ({why})", config.cidr_block));
        let block = CidrBlock::parse(&config.cidr_block).map_err(|e| invalid(e.to_string()))?;
        let (v4net, v6net) = (block.net(Family::V4), block.net(Family::V6));
        let mut gateways: HashMap<Family, IpAddr> = HashMap::new();
        let gateway_list =
            net::parse_ips(&config.gateway).map_err(|e| Error::InvalidAddressList {
                entry: e.entry,
                reason: "gateway is not an IP address".into(),
            })?;
        for ip in gateway_list {
            gateways.insert(Family::of(&ip), ip);
        }
        let (ex4, ex6) = addr::parse_list(&config.exclude_ips)?;
        let book =
            |net: Option<&IpNet>, family: Family, ex: &RangeSet| -> Result<Option<FamilyBook>> {
                let Some(net) = net else { return Ok(None) };
                let gw = gateways.get(&family).copied();
                if let Some(g) = gw {
                    if !net.contains(&g) {
                        return Err(Error::OutOfRange {
                            ip: g.to_string(),
                            subnet: config.name.clone(),
                        });
                    }
                }
                Ok(Some(FamilyBook::new(*net, gw, ex)))
            };
        Ok(Subnet {
            v4: book(v4net.as_ref(), Family::V4, &ex4)?,
            v6: book(v6net.as_ref(), Family::V6, &ex6)?,
            config,
            macs: HashMap::new(),
            mac_by_nic: HashMap::new(),
            nics_by_pod: HashMap::new(),
            pools: BTreeMap::new(),
        })
    }

    /// The configuration this book was built from.
    pub fn config(&self) -> &SubnetConfig {
        &self.config
    }

    /// The families the subnet has.
    pub fn families(&self) -> Vec<Family> {
        [
            (Family::V4, self.v4.is_some()),
            (Family::V6, self.v6.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, has)| has.then_some(f))
        .collect()
    }

    /// The subnet's CIDR in `family`.
    pub fn cidr(&self, family: Family) -> Option<IpNet> {
        self.book(family).map(|b| b.net)
    }

    fn book(&self, family: Family) -> Option<&FamilyBook> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    fn book_mut(&mut self, family: Family) -> Option<&mut FamilyBook> {
        match family {
            Family::V4 => self.v4.as_mut(),
            Family::V6 => self.v6.as_mut(),
        }
    }

    /// Adds or replaces a named IP pool (`IPPool.spec.ips`). Its addresses must lie in the
    /// subnet and overlap no other pool; automatic allocation outside a pool then avoids them.
    pub fn set_pool(&mut self, name: &str, ips: &[String]) -> Result<()> {
        let bad = |reason: String| Error::InvalidPool {
            pool: name.to_string(),
            reason,
        };
        let (v4, v6) = addr::parse_list(ips)?;
        let pool = Pool { v4, v6 };
        for family in [Family::V4, Family::V6] {
            let set = pool.of(family);
            if set.is_empty() {
                continue;
            }
            let Some(book) = self.book(family) else {
                return Err(bad(format!(
                    "subnet {} has no {family:?} CIDR",
                    self.config.name
                )));
            };
            let mut outside = set.clone();
            outside.subtract(&book.usable);
            if !outside.is_empty() {
                return Err(bad(format!(
                    "{} outside subnet {}",
                    addr::render(family, &outside),
                    self.config.name
                )));
            }
            for (other, p) in &self.pools {
                let overlap = p.of(family).intersection(set);
                if other != name && !overlap.is_empty() {
                    return Err(bad(format!(
                        "{} also in ippool {other}",
                        addr::render(family, &overlap)
                    )));
                }
            }
        }
        self.pools.insert(name.to_string(), pool);
        Ok(())
    }

    /// Removes a named IP pool; its addresses return to the default pool.
    pub fn remove_pool(&mut self, name: &str) {
        self.pools.remove(name);
    }

    /// Range automatic allocation may use for `pool` in `family`.
    fn within(&self, family: Family, pool: Option<&str>) -> Result<RangeSet> {
        let book = self.book(family).ok_or_else(|| {
            Error::InvalidFamily(format!("subnet {} has no {family:?}", self.config.name))
        })?;
        match pool {
            Some(name) => self
                .pools
                .get(name)
                .map(|p| p.of(family).clone())
                .ok_or_else(|| Error::InvalidPool {
                    pool: name.to_string(),
                    reason: format!("not found in subnet {}", self.config.name),
                }),
            None => {
                let mut all = book.usable.clone();
                for p in self.pools.values() {
                    all.subtract(p.of(family));
                }
                Ok(all)
            }
        }
    }

    /// Allocates (or returns the existing) addresses and MAC for a NIC.
    pub fn allocate(&mut self, req: &Request) -> Result<Allocation> {
        let owner = Owner {
            pod: req.pod.clone(),
            nic: req.nic.clone(),
        };
        let families: Vec<Family> = match req.family {
            Some(f) if self.book(f).is_none() => {
                return Err(Error::InvalidFamily(format!(
                    "subnet {} has no {f:?}",
                    self.config.name
                )))
            }
            Some(f) => vec![f],
            None => self.families(),
        };
        // Everything is checked before anything changes, so a refused request leaves no trace.
        let mac = self.check_mac(req, &owner)?;
        let mut statics: BTreeMap<Family, u128> = BTreeMap::new();
        for ip in &req.ips {
            let family = Family::of(ip);
            if !families.contains(&family) {
                return Err(Error::InvalidFamily(format!(
                    "{ip} requested, but the request is for {families:?} in subnet {}",
                    self.config.name
                )));
            }
            let k = addr::key(ip);
            let book = self
                .book(family)
                .filter(|b| b.usable.contains(k))
                .ok_or_else(|| Error::OutOfRange {
                    ip: ip.to_string(),
                    subnet: self.config.name.clone(),
                })?;
            if req.check_conflict {
                if book.gateway == Some(k) {
                    return Err(Error::Conflict {
                        what: ip.to_string(),
                        owner: format!("the gateway of subnet {}", self.config.name),
                    });
                }
                if let Some(o) = book.owner.get(&k).filter(|o| o.pod != owner.pod) {
                    return Err(Error::Conflict {
                        what: ip.to_string(),
                        owner: o.pod.clone(),
                    });
                }
            }
            statics.insert(family, k);
        }
        let skipped = addr_sets(&req.skipped);
        let mut picks: BTreeMap<Family, u128> = BTreeMap::new();
        for &family in &families {
            if let Some(k) = statics.get(&family) {
                picks.insert(family, *k);
                continue;
            }
            let book = self.book(family).expect("families come from the books");
            let skip = skipped.get(&family).cloned().unwrap_or_default();
            if let Some(k) = book.by_nic.get(&owner.nic).filter(|k| !skip.contains(**k)) {
                picks.insert(family, *k);
                continue;
            }
            let within = self.within(family, req.pool.as_deref())?;
            // Only picked here, committed below once every family has an address. The NIC's
            // current address (if any) is skipped by the request, so it is not a candidate.
            let k = book
                .pick(&within, &skip)
                .ok_or_else(|| Error::NoAvailable {
                    subnet: self.config.name.clone(),
                    family: format!("{family:?}"),
                    pool: req
                        .pool
                        .as_ref()
                        .map(|p| format!(" ippool {p}"))
                        .unwrap_or_default(),
                })?;
            picks.insert(family, k);
        }
        for (family, k) in &picks {
            self.book_mut(*family).expect("checked").take(*k, &owner);
        }
        if let Some(old) = self.mac_by_nic.get(&owner.nic).cloned() {
            if old != mac {
                self.macs.remove(&old);
            }
        }
        self.macs.insert(mac.clone(), owner.clone());
        self.mac_by_nic.insert(owner.nic.clone(), mac.clone());
        self.nics_by_pod
            .entry(owner.pod.clone())
            .or_default()
            .insert(owner.nic.clone());
        Ok(Allocation {
            v4: picks.get(&Family::V4).map(|k| addr::ip(Family::V4, *k)),
            v6: picks.get(&Family::V6).map(|k| addr::ip(Family::V6, *k)),
            mac,
        })
    }

    /// The MAC a request will get: the requested one if free (or conflicts are not checked),
    /// else the NIC's current one, else a fresh random one.
    fn check_mac(&self, req: &Request, owner: &Owner) -> Result<String> {
        if let Some(m) = &req.mac {
            let m = mac::normalize(m)?;
            if req.check_conflict {
                if let Some(o) = self.macs.get(&m).filter(|o| o.pod != owner.pod) {
                    return Err(Error::Conflict {
                        what: m,
                        owner: o.pod.clone(),
                    });
                }
            }
            return Ok(m);
        }
        if let Some(m) = self.mac_by_nic.get(&owner.nic) {
            return Ok(m.clone());
        }
        loop {
            let m = mac::random();
            if !self.macs.contains_key(&m) {
                return Ok(m);
            }
        }
    }

    /// Releases a NIC's addresses and MAC; returns the addresses released.
    pub fn release_nic(&mut self, nic: &str) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for family in [Family::V4, Family::V6] {
            if let Some(ip) = self.book_mut(family).and_then(|b| b.release_nic(nic)) {
                out.push(ip);
            }
        }
        if let Some(m) = self.mac_by_nic.remove(nic) {
            if let Some(o) = self.macs.remove(&m) {
                if let Some(nics) = self.nics_by_pod.get_mut(&o.pod) {
                    nics.remove(nic);
                    if nics.is_empty() {
                        self.nics_by_pod.remove(&o.pod);
                    }
                }
            }
        }
        out
    }

    /// Whether `pod` holds an address here through `nic` (asked for every subnet on every pod
    /// reconcile, so it copies nothing).
    pub fn holds(&self, pod: &str, nic: &str) -> bool {
        self.nics_by_pod.get(pod).is_some_and(|n| n.contains(nic))
    }

    /// Whether `nic` of `pod` already holds exactly `ips` (one per family of the subnet) and
    /// `mac` (`None`: any). A restore reads every allocation from up to four records (the NB
    /// port, the IP CR, the node or pod annotation) that usually agree; the repeats are
    /// answered here without building a request, which took a restore of 10,000 pods from
    /// about 60 ms to about 20 ms of CPU.
    pub fn holds_exactly(&self, pod: &str, nic: &str, ips: &[IpAddr], mac: Option<&str>) -> bool {
        let families = [(Family::V4, &self.v4), (Family::V6, &self.v6)];
        let wanted = families.iter().filter(|(_, b)| b.is_some()).count();
        let distinct = ips.len() < 2 || Family::of(&ips[0]) != Family::of(&ips[1]);
        if ips.len() != wanted || !distinct || !self.holds(pod, nic) {
            return false;
        }
        let held = |ip: &IpAddr| {
            let Some(book) = self.book(Family::of(ip)) else {
                return false;
            };
            let k = addr::key(ip);
            book.by_nic.get(nic) == Some(&k) && book.owner.get(&k).is_some_and(|o| o.pod == pod)
        };
        if !ips.iter().all(held) {
            return false;
        }
        match (mac, self.mac_by_nic.get(nic)) {
            (None, Some(_)) => true,
            (Some(m), Some(current)) => mac::same(m, current),
            (_, None) => false,
        }
    }

    /// Whether `pod` holds any address here.
    pub fn has_pod(&self, pod: &str) -> bool {
        self.nics_by_pod.get(pod).is_some_and(|n| !n.is_empty())
    }

    /// NICs held by `pod` in this subnet.
    pub fn nics_of(&self, pod: &str) -> Vec<String> {
        self.nics_by_pod
            .get(pod)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Who holds `ip`, if anyone.
    pub fn owner_of(&self, ip: &IpAddr) -> Option<&Owner> {
        self.book(Family::of(ip))?.owner.get(&addr::key(ip))
    }

    /// Every held address with its owner.
    pub fn allocations(&self) -> Vec<(IpAddr, Owner)> {
        [&self.v4, &self.v6]
            .into_iter()
            .flatten()
            .flat_map(|b| {
                b.owner
                    .iter()
                    .map(|(k, o)| (addr::ip(b.family, *k), o.clone()))
            })
            .collect()
    }

    /// Every NIC's MAC.
    pub fn macs(&self) -> impl Iterator<Item = (&String, &Owner)> {
        self.macs.iter()
    }

    /// Status counters of a named IP pool in `family` (`None` if the pool or family is absent).
    pub fn pool_usage(&self, pool: &str, family: Family) -> Option<Usage> {
        let book = self.book(family)?;
        let range = self.pools.get(pool)?.of(family);
        let using = range.intersection(&book.using);
        let mut available = range.clone();
        available.subtract(&book.reserved);
        available.subtract(&book.using);
        Some(Usage {
            available: available.len(),
            using: using.len(),
            available_range: addr::render(family, &available),
            using_range: addr::render(family, &using),
        })
    }

    /// Names of the named IP pools.
    pub fn pools(&self) -> impl Iterator<Item = &String> {
        self.pools.keys()
    }

    /// Status counters for `family` (`None` if the subnet lacks it).
    pub fn usage(&self, family: Family) -> Option<Usage> {
        self.book(family).map(FamilyBook::usage)
    }
}

fn addr_sets(ips: &[IpAddr]) -> HashMap<Family, RangeSet> {
    let mut out: HashMap<Family, RangeSet> = HashMap::new();
    for ip in ips {
        out.entry(Family::of(ip)).or_default().insert(addr::key(ip));
    }
    out
}
