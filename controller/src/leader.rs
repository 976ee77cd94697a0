//! Leader election on a `coordination.k8s.io/v1` Lease, interoperable with client-go's
//! (upstream kube-ovn-controller uses the Lease `kube-ovn-controller` in its namespace): the
//! same fields, the same take-over rule (the holder has not renewed for a lease duration, as
//! observed locally, so clocks need not agree), optimistic concurrency on `resourceVersion`, and
//! release on shutdown so a successor need not wait out the lease.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

/// Lease name upstream uses.
pub const LEASE_NAME: &str = "kube-ovn-controller";

/// Timing, from the `--leader-elect-*` flags.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps failing to renew before it gives up.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// (holder, renewTime) last seen and when we saw it change.
    observed: Option<(String, Option<MicroTime>, Instant)>,
}

impl Elector {
    /// A candidate `identity` for the Lease `name` in `namespace`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            observed: None,
        }
    }

    /// Returns once this candidate holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => warn!(lease = %self.name, "leader election: {e}"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the lease until a renewal fails for longer than the renew deadline; returns then
    /// (leadership is lost and the caller must stop acting as leader).
    pub async fn hold(&mut self) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.name, "lease taken by another candidate");
                    return;
                }
                Err(e) => warn!(lease = %self.name, "renewing lease: {e}"),
            }
            if last_ok.elapsed() > self.timing.renew_deadline {
                warn!(lease = %self.name, "could not renew within the deadline");
                return;
            }
        }
    }

    /// Gives the lease up (holder cleared, 1 s duration) so a successor takes over at once.
    pub async fn release(&mut self) {
        let Ok(mut lease) = self.api.get(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            warn!(lease = %self.name, "releasing lease: {e}");
        }
    }

    /// One round of client-go's algorithm: create, renew, or take over an expired lease.
    /// `Ok(true)` when we hold it afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let secs = self.timing.lease_duration.as_secs().max(1) as i32;
        let current = match self.api.get_opt(&self.name).await? {
            Some(l) => l,
            None => {
                let lease = Lease {
                    metadata: kube::api::ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(now()),
                        renew_time: Some(now()),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let changed = match &self.observed {
            Some((h, r, _)) => *h != holder || *r != spec.renew_time,
            None => true,
        };
        if changed {
            self.observed = Some((holder.clone(), spec.renew_time.clone(), Instant::now()));
        }
        let held_by_us = holder == self.identity;
        let duration =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(secs).max(0) as u64);
        let expired = holder.is_empty()
            || self
                .observed
                .as_ref()
                .is_some_and(|(_, _, seen)| seen.elapsed() > duration);
        if !held_by_us && !expired {
            return Ok(false);
        }
        let mut next = current.clone();
        let s = next.spec.get_or_insert_with(LeaseSpec::default);
        if !held_by_us {
            s.acquire_time = Some(now());
            s.lease_transitions = Some(s.lease_transitions.unwrap_or(0) + 1);
        }
        s.holder_identity = Some(self.identity.clone());
        s.lease_duration_seconds = Some(secs);
        s.renew_time = Some(now());
        // replace carries resourceVersion: a concurrent change makes this a 409, not a clobber.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(l) => {
                let spec = l.spec.unwrap_or_default();
                self.observed = Some((self.identity.clone(), spec.renew_time, Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}
