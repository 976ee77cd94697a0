//! Sets of addresses as sorted, disjoint, non-adjacent inclusive ranges over `u128` (IPv4
//! addresses are mapped into the low 32 bits). A /8 of free addresses is one range, not 16
//! million entries, so a subnet's bookkeeping stays small whatever its size.

use std::collections::BTreeMap;

/// A set of addresses kept as merged inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start -> end (inclusive); ranges never overlap or touch.
    ranges: BTreeMap<u128, u128>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// The set `start..=end` (empty when `start > end`).
    pub fn from_range(start: u128, end: u128) -> RangeSet {
        let mut s = RangeSet::new();
        s.insert_range(start, end);
        s
    }

    /// Whether the set has no address.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of addresses (saturating: an IPv6 /0 does not fit in u128 + 1).
    pub fn len(&self) -> u128 {
        self.ranges
            .iter()
            .fold(0u128, |n, (s, e)| n.saturating_add(e - s).saturating_add(1))
    }

    /// The ranges in order.
    pub fn ranges(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.ranges.iter().map(|(s, e)| (*s, *e))
    }

    /// Whether `x` is in the set.
    pub fn contains(&self, x: u128) -> bool {
        self.ranges
            .range(..=x)
            .next_back()
            .is_some_and(|(_, e)| *e >= x)
    }

    /// Adds one address.
    pub fn insert(&mut self, x: u128) {
        self.insert_range(x, x);
    }

    /// Adds `start..=end`, merging with neighbours.
    pub fn insert_range(&mut self, mut start: u128, mut end: u128) {
        if start > end {
            return;
        }
        // Merge with a range that overlaps or touches on the left.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e.checked_add(1).is_none_or(|n| n >= start) {
                start = s;
                end = end.max(e);
                self.ranges.remove(&s);
            }
        }
        // Swallow every range starting inside or right after the new one.
        loop {
            let next = match end.checked_add(1) {
                Some(limit) => self
                    .ranges
                    .range(start..=limit)
                    .next()
                    .map(|(s, e)| (*s, *e)),
                None => self.ranges.range(start..).next().map(|(s, e)| (*s, *e)),
            };
            match next {
                Some((s, e)) => {
                    end = end.max(e);
                    self.ranges.remove(&s);
                }
                None => break,
            }
        }
        self.ranges.insert(start, end);
    }

    /// Removes one address.
    pub fn remove(&mut self, x: u128) {
        self.remove_range(x, x);
    }

    /// Removes `start..=end`.
    pub fn remove_range(&mut self, start: u128, end: u128) {
        if start > end {
            return;
        }
        let first = self
            .ranges
            .range(..=start)
            .next_back()
            .filter(|(_, e)| **e >= start)
            .map(|(s, _)| *s)
            .unwrap_or(start);
        let hit: Vec<(u128, u128)> = self
            .ranges
            .range(first..=end)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in hit {
            self.ranges.remove(&s);
            if s < start {
                self.ranges.insert(s, start - 1);
            }
            if e > end {
                self.ranges.insert(end + 1, e);
            }
        }
    }

    /// Adds every address of `other`.
    pub fn union_with(&mut self, other: &RangeSet) {
        for (s, e) in other.ranges() {
            self.insert_range(s, e);
        }
    }

    /// Removes every address of `other`.
    pub fn subtract(&mut self, other: &RangeSet) {
        for (s, e) in other.ranges() {
            self.remove_range(s, e);
        }
    }

    /// The addresses in both sets.
    pub fn intersection(&self, other: &RangeSet) -> RangeSet {
        let mut out = RangeSet::new();
        for (s, e) in self.ranges() {
            for (os, oe) in other.overlapping(s, e) {
                out.insert_range(s.max(os), e.min(oe));
            }
        }
        out
    }

    /// Ranges of `self` overlapping `start..=end` (unclipped).
    fn overlapping(&self, start: u128, end: u128) -> impl Iterator<Item = (u128, u128)> + '_ {
        let first = self
            .ranges
            .range(..=start)
            .next_back()
            .filter(|(_, e)| **e >= start)
            .map(|(s, _)| *s)
            .unwrap_or(start);
        self.ranges.range(first..=end).map(|(s, e)| (*s, *e))
    }

    /// The lowest address of `self` that is inside `within` and not in any of `excluded`:
    /// the next address to hand out.
    pub fn first_in(&self, within: &RangeSet, excluded: &[&RangeSet]) -> Option<u128> {
        for (s, e) in self.ranges() {
            for (ws, we) in within.overlapping(s, e) {
                let (mut lo, hi) = (s.max(ws), e.min(we));
                'scan: loop {
                    for x in excluded {
                        if let Some((_, xe)) = x.overlapping(lo, lo).next() {
                            match xe.checked_add(1) {
                                Some(n) if n <= hi => {
                                    lo = n;
                                    continue 'scan;
                                }
                                _ => break 'scan,
                            }
                        }
                    }
                    return Some(lo);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn inserts_merge_touching_ranges_and_removes_split_them() {
        let mut s = RangeSet::new();
        s.insert_range(10, 20);
        s.insert_range(21, 30);
        s.insert(5);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![(5, 5), (10, 30)]);
        s.remove_range(15, 16);
        assert_eq!(
            s.ranges().collect::<Vec<_>>(),
            vec![(5, 5), (10, 14), (17, 30)]
        );
        assert_eq!(s.len(), 1 + 5 + 14);
        assert!(s.contains(17) && !s.contains(16) && !s.contains(31));
        s.insert_range(0, u128::MAX);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![(0, u128::MAX)]);
        assert_eq!(s.len(), u128::MAX);
    }

    #[test]
    fn first_in_skips_exclusions() {
        let free = RangeSet::from_range(1, 100);
        let within = RangeSet::from_range(10, 50);
        let mut ex1 = RangeSet::from_range(10, 12);
        ex1.insert(14);
        let ex2 = RangeSet::from_range(13, 13);
        assert_eq!(free.first_in(&within, &[&ex1, &ex2]), Some(15));
        let all = RangeSet::from_range(0, 200);
        assert_eq!(free.first_in(&within, &[&all]), None);
    }

    fn model_ops() -> impl Strategy<Value = Vec<(bool, u128, u128)>> {
        proptest::collection::vec((any::<bool>(), 0u128..200, 0u128..20), 0..60)
    }

    proptest! {
        #[test]
        fn behaves_like_a_set_of_integers(ops in model_ops(), probe in 0u128..260) {
            let mut s = RangeSet::new();
            let mut m = BTreeSet::new();
            for (add, start, width) in ops {
                let end = start + width;
                if add { s.insert_range(start, end); m.extend(start..=end); }
                else { s.remove_range(start, end); for x in start..=end { m.remove(&x); } }
            }
            prop_assert_eq!(s.len(), m.len() as u128);
            prop_assert_eq!(s.contains(probe), m.contains(&probe));
            // Canonical form: sorted, disjoint, never touching.
            let r: Vec<_> = s.ranges().collect();
            for w in r.windows(2) { prop_assert!(w[0].1 + 1 < w[1].0); }
            let other = RangeSet::from_range(probe, probe + 30);
            let inter = s.intersection(&other);
            prop_assert_eq!(inter.len(), (probe..=probe + 30).filter(|x| m.contains(x)).count() as u128);
            let first = s.first_in(&other, &[]);
            prop_assert_eq!(first, (probe..=probe + 30).find(|x| m.contains(x)));
        }
    }
}
