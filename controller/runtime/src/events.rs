//! Kubernetes Events, aggregated as client-go's recorder does: the same event (object, type,
//! reason, message) seen again bumps `count` and `lastTimestamp` of the Event already written
//! instead of creating one per retry, and each object gets a token bucket (burst 25, one more
//! every five minutes) so a reconcile failing in a loop cannot flood the API server.
//!
//! Why not kube-rs's `events::Recorder`: it writes `events.k8s.io/v1` Events, and upstream's
//! ClusterRoles (which a swapped image runs under) grant `create`/`patch` on core `events`
//! only — every Event would be refused. Its cache is also unbounded between expiries; this one
//! holds at most [`CACHE_ENTRIES`] events and objects, evicting the oldest.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::time::Instant;
use tracing::debug;

/// Most events and objects remembered (client-go's LRU size).
pub const CACHE_ENTRIES: usize = 4096;
/// Events an object may get in a burst.
const BURST: f64 = 25.0;
/// One more event allowed per this long.
const REFILL: Duration = Duration::from_secs(300);

/// Normal or Warning, as Kubernetes' `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something the user should look at.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    object: (String, String, String, String),
    type_: EventType,
    reason: String,
    message: String,
}

struct Written {
    name: String,
    namespace: String,
    count: i32,
}

/// A bounded map that forgets its oldest entries.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Clone + Eq + std::hash::Hash, V> Bounded<K, V> {
    fn new() -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > CACHE_ENTRIES {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

struct State {
    written: Bounded<Key, Written>,
    buckets: Bounded<(String, String, String, String), (f64, Instant)>,
}

/// Writes aggregated Events for one component (see the module doc).
pub struct Recorder {
    client: kube::Client,
    component: String,
    state: Mutex<State>,
}

/// What an event publish did (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A new Event object was created.
    Created,
    /// An existing Event's count went up to this.
    Counted(i32),
    /// The object's event budget is spent; nothing was written.
    Throttled,
}

impl Recorder {
    /// A recorder writing as `component` (the Event's `source.component`).
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        Recorder {
            client,
            component: component.to_string(),
            state: Mutex::new(State {
                written: Bounded::new(),
                buckets: Bounded::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an event on `obj`. Best effort: a refused Event never fails a reconcile, it is
    /// logged at debug level and reported as an error to the caller that wants to know.
    pub async fn publish(
        &self,
        obj: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<Published, kube::Error> {
        let object = (
            obj.kind.clone().unwrap_or_default(),
            obj.namespace.clone().unwrap_or_default(),
            obj.name.clone().unwrap_or_default(),
            obj.uid.clone().unwrap_or_default(),
        );
        let key = Key {
            object: object.clone(),
            type_,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let now = jiff::Timestamp::now();
        let existing = {
            let mut st = self.state();
            if !take_token(&mut st.buckets, object) {
                return Ok(Published::Throttled);
            }
            st.written
                .map
                .get(&key)
                .map(|w| (w.name.clone(), w.namespace.clone(), w.count + 1))
        };
        if let Some((name, ns, count)) = existing {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            let body = json!({"count": count, "lastTimestamp": now.to_string()});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => {
                    if let Some(w) = self.state().written.map.get_mut(&key) {
                        w.count = count;
                    }
                    return Ok(Published::Counted(count));
                }
                // Expired (events have a TTL) or deleted: write a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    debug!("event not recorded: {e}");
                    return Err(e);
                }
            }
        }
        let ns = obj
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            obj.name.clone().unwrap_or_default(),
            now.as_nanosecond()
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            involved_object: obj.clone(),
            type_: Some(type_.as_str().into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            debug!("event not recorded: {e}");
            return Err(e);
        }
        self.state().written.insert(
            key,
            Written {
                name,
                namespace: ns,
                count: 1,
            },
        );
        Ok(Published::Created)
    }
}

/// Token bucket per object: [`BURST`] tokens, one more per [`REFILL`].
fn take_token(
    buckets: &mut Bounded<(String, String, String, String), (f64, Instant)>,
    object: (String, String, String, String),
) -> bool {
    let now = Instant::now();
    let refill = |(tokens, at): (f64, Instant)| {
        let gained = now.duration_since(at).as_secs_f64() / REFILL.as_secs_f64();
        ((tokens + gained).min(BURST), now)
    };
    let (tokens, at) = buckets
        .map
        .get(&object)
        .copied()
        .map(refill)
        .unwrap_or((BURST, now));
    let allowed = tokens >= 1.0;
    let tokens = if allowed { tokens - 1.0 } else { tokens };
    match buckets.map.get_mut(&object) {
        Some(b) => *b = (tokens, at),
        None => buckets.insert(object, (tokens, at)),
    }
    allowed
}
