//! The collections inside a [`super::Datum`]: sorted vectors with the semantics of `BTreeSet` and
//! `BTreeMap` (same order, equality, hashing and duplicate rules) in one exact-size allocation.
//!
//! Why not the B-trees: almost every OVSDB column holds zero, one or a handful of values, and a
//! B-tree allocates a whole node (room for eleven entries) for the first one. A replica of a
//! 10,000-pod Northbound database held about 7 KB per row that way, mostly empty node slots;
//! lookups in these small sorted vectors are binary searches and cost no more.

use super::Atom;

/// A set of atoms, sorted, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtomSet(Vec<Atom>);

impl AtomSet {
    /// The empty set (allocates nothing).
    pub const fn new() -> AtomSet {
        AtomSet(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, Atom> {
        self.0.iter()
    }

    pub fn first(&self) -> Option<&Atom> {
        self.0.first()
    }

    pub fn contains(&self, a: &Atom) -> bool {
        self.0.binary_search(a).is_ok()
    }

    /// Adds `a`; false if it was already there.
    pub fn insert(&mut self, a: Atom) -> bool {
        match self.0.binary_search(&a) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, a);
                true
            }
        }
    }

    /// Removes `a`; false if it was not there.
    pub fn remove(&mut self, a: &Atom) -> bool {
        match self.0.binary_search(a) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn retain(&mut self, f: impl FnMut(&Atom) -> bool) {
        self.0.retain(f);
    }

    pub fn is_subset(&self, other: &AtomSet) -> bool {
        self.0.iter().all(|a| other.contains(a))
    }

    fn from_vec(mut v: Vec<Atom>) -> AtomSet {
        v.sort();
        v.dedup();
        v.shrink_to_fit();
        AtomSet(v)
    }
}

impl FromIterator<Atom> for AtomSet {
    fn from_iter<I: IntoIterator<Item = Atom>>(iter: I) -> Self {
        AtomSet::from_vec(iter.into_iter().collect())
    }
}

impl<const N: usize> From<[Atom; N]> for AtomSet {
    fn from(a: [Atom; N]) -> Self {
        AtomSet::from_vec(a.into())
    }
}

impl Extend<Atom> for AtomSet {
    fn extend<I: IntoIterator<Item = Atom>>(&mut self, iter: I) {
        let mut v = std::mem::take(&mut self.0);
        v.extend(iter);
        *self = AtomSet::from_vec(v);
    }
}

impl IntoIterator for AtomSet {
    type Item = Atom;
    type IntoIter = std::vec::IntoIter<Atom>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a AtomSet {
    type Item = &'a Atom;
    type IntoIter = std::slice::Iter<'a, Atom>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A map from atoms to atoms, sorted by key, one value per key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtomMap(Vec<(Atom, Atom)>);

impl AtomMap {
    /// The empty map (allocates nothing).
    pub const fn new() -> AtomMap {
        AtomMap(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Pairs in ascending key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Atom, &Atom)> + '_ {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Atom> + '_ {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &Atom> + '_ {
        self.0.iter().map(|(_, v)| v)
    }

    fn find(&self, key: &Atom) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.cmp(key))
    }

    pub fn get(&self, key: &Atom) -> Option<&Atom> {
        self.find(key).ok().map(|at| &self.0[at].1)
    }

    /// The value of a string key, found without building an atom for the key.
    pub fn get_str(&self, key: &str) -> Option<&Atom> {
        self.0
            .binary_search_by(|(k, _)| k.cmp_str(key))
            .ok()
            .map(|at| &self.0[at].1)
    }

    pub fn contains_key(&self, key: &Atom) -> bool {
        self.find(key).is_ok()
    }

    /// The string keys starting with `prefix`, in order: one range of the sorted map found by
    /// binary search (a load balancer's VIPs of one address among 50,000, without a scan).
    pub fn keys_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Atom> + 'a {
        let start = self
            .0
            .partition_point(|(k, _)| k.cmp_str(prefix) == std::cmp::Ordering::Less);
        self.0[start..]
            .iter()
            .take_while(move |(k, _)| k.as_str().is_some_and(|s| s.starts_with(prefix)))
            .map(|(k, _)| k)
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: Atom, value: Atom) -> Option<Atom> {
        match self.find(&key) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                self.0.insert(at, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &Atom) -> Option<Atom> {
        self.find(key).ok().map(|at| self.0.remove(at).1)
    }

    pub fn retain(&mut self, mut f: impl FnMut(&Atom, &Atom) -> bool) {
        self.0.retain(|(k, v)| f(k, v));
    }
}

impl FromIterator<(Atom, Atom)> for AtomMap {
    /// As `BTreeMap`: a key given twice keeps its last value.
    fn from_iter<I: IntoIterator<Item = (Atom, Atom)>>(iter: I) -> Self {
        let mut v: Vec<(Atom, Atom)> = iter.into_iter().collect();
        // Stable: equal keys stay in input order, so the last of each run is the last given.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Atom, Atom)> = Vec::with_capacity(v.len());
        for pair in v {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        out.shrink_to_fit();
        AtomMap(out)
    }
}

impl Extend<(Atom, Atom)> for AtomMap {
    /// As `BTreeMap`: a key already present takes the new value.
    fn extend<I: IntoIterator<Item = (Atom, Atom)>>(&mut self, iter: I) {
        let mut v = std::mem::take(&mut self.0);
        v.extend(iter);
        *self = v.into_iter().collect();
    }
}

impl<const N: usize> From<[(Atom, Atom); N]> for AtomMap {
    fn from(a: [(Atom, Atom); N]) -> Self {
        a.into_iter().collect()
    }
}

impl IntoIterator for AtomMap {
    type Item = (Atom, Atom);
    type IntoIter = std::vec::IntoIter<(Atom, Atom)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a AtomMap {
    type Item = (&'a Atom, &'a Atom);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Atom, Atom)>,
        fn(&'a (Atom, Atom)) -> (&'a Atom, &'a Atom),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn keys_with_a_prefix_are_one_sorted_range() {
        let m: AtomMap = [
            "10.96.0.1:443",
            "10.96.0.10:53",
            "10.96.0.1:80",
            "10.96.0.2:80",
            "[fd00::1]:80",
        ]
        .into_iter()
        .map(|k| (Atom::from(k), Atom::from("x")))
        .collect();
        let keys = |p: &str| -> Vec<String> {
            m.keys_with_prefix(p)
                .filter_map(Atom::as_str)
                .map(str::to_string)
                .collect()
        };
        assert_eq!(keys("10.96.0.1:"), ["10.96.0.1:443", "10.96.0.1:80"]);
        assert_eq!(keys("[fd00::1]:"), ["[fd00::1]:80"]);
        assert!(keys("10.96.0.3:").is_empty());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::hash::{DefaultHasher, Hash, Hasher};

    use proptest::prelude::*;

    use super::*;

    fn atom() -> impl Strategy<Value = Atom> {
        prop_oneof![
            (0i64..6).prop_map(Atom::Integer),
            "[a-c]{0,2}".prop_map(Atom::from),
            any::<bool>().prop_map(Atom::Boolean),
        ]
    }

    fn hash<T: Hash>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    proptest! {
        /// Same contents, order, equality, ordering and hash as the B-tree collections, for any
        /// input with duplicates, and under insert/remove.
        #[test]
        fn behaves_like_the_btree_collections(
            xs in prop::collection::vec(atom(), 0..12),
            ys in prop::collection::vec(atom(), 0..12),
            pairs in prop::collection::vec((atom(), atom()), 0..12),
            other in prop::collection::vec((atom(), atom()), 0..12),
        ) {
            let (s, b): (AtomSet, BTreeSet<Atom>) = (xs.iter().cloned().collect(), xs.iter().cloned().collect());
            prop_assert_eq!(s.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
            let (t, c): (AtomSet, BTreeSet<Atom>) = (ys.iter().cloned().collect(), ys.iter().cloned().collect());
            prop_assert_eq!(s == t, b == c);
            prop_assert_eq!(s.cmp(&t), b.cmp(&c));
            prop_assert_eq!(hash(&s) == hash(&t), b == c);
            prop_assert_eq!(s.is_subset(&t), b.is_subset(&c));
            let (mut s2, mut b2) = (s.clone(), b.clone());
            for y in &ys {
                prop_assert_eq!(s2.insert(y.clone()), b2.insert(y.clone()));
            }
            for x in &xs {
                prop_assert_eq!(s2.remove(x), b2.remove(x));
                prop_assert_eq!(s2.contains(x), b2.contains(x));
            }
            prop_assert_eq!(s2.iter().collect::<Vec<_>>(), b2.iter().collect::<Vec<_>>());

            let (m, bm): (AtomMap, BTreeMap<Atom, Atom>) = (pairs.iter().cloned().collect(), pairs.iter().cloned().collect());
            prop_assert_eq!(m.iter().collect::<Vec<_>>(), bm.iter().collect::<Vec<_>>());
            let (n, bn): (AtomMap, BTreeMap<Atom, Atom>) = (other.iter().cloned().collect(), other.iter().cloned().collect());
            prop_assert_eq!(m == n, bm == bn);
            prop_assert_eq!(m.cmp(&n), bm.cmp(&bn));
            let (mut m2, mut bm2) = (m.clone(), bm.clone());
            for (k, v) in &other {
                prop_assert_eq!(m2.insert(k.clone(), v.clone()), bm2.insert(k.clone(), v.clone()));
                if let Some(key) = k.as_str() {
                    prop_assert_eq!(m2.get_str(key), bm2.get(k));
                }
            }
            for (k, _) in &pairs {
                prop_assert_eq!(m2.remove(k), bm2.remove(k));
                prop_assert_eq!(m2.get(k), bm2.get(k));
            }
            prop_assert_eq!(m2.iter().collect::<Vec<_>>(), bm2.iter().collect::<Vec<_>>());
        }
    }
}
