//! Streaming watch responses: newline-delimited JSON watch events, with
//! selector transitions, periodic bookmarks, `timeoutSeconds`, and Table
//! objects for `kubectl get -w`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::ServerState;
use crate::store::{present, Change, ChangeType, Presented};
use crate::table::{self, TableRequest};

/// A response body fed chunk by chunk from a channel; sent with chunked encoding.
pub struct ChannelBody {
    receiver: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// One watch event as a JSON line.
pub fn event_line(event_type: &str, object: &impl serde::Serialize) -> Bytes {
    #[derive(serde::Serialize)]
    struct Event<'a, O> {
        #[serde(rename = "type")]
        event_type: &'a str,
        object: &'a O,
    }
    let mut line = serde_json::to_vec(&Event { event_type, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// The ERROR event sent when a watch asks for compacted history.
pub fn error_line(error: &ApiError) -> Bytes {
    event_line("ERROR", &error.to_status())
}

/// Per-request watch parameters.
pub struct WatchParams {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: end the initial ADDED burst with a marked bookmark.
    pub initial_events_end: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// Set when the client asked for server-side printing.
    pub table: Option<TableRequest>,
}

/// Renders event objects for one watch. With a Table request every object
/// (bookmarks included, as the real server does) becomes a one-row Table, and
/// only the first carries column definitions.
struct EventEncoder {
    rt: ResourceType,
    table: Option<TableRequest>,
    headers_sent: bool,
}

impl EventEncoder {
    fn line(&mut self, event_type: &str, object: &Value) -> Bytes {
        let Some(request) = &self.table else {
            return event_line(
                event_type,
                &Presented {
                    rt: &self.rt,
                    object,
                },
            );
        };
        let headers = !std::mem::replace(&mut self.headers_sent, true);
        let table = table::object_table(&self.rt, object, request, headers, jiff::Timestamp::now());
        event_line(event_type, &table)
    }

    fn change(&mut self, change: &Change, params: &WatchParams) -> Option<Bytes> {
        let event_type = visible_event(change, params)?;
        if self.table.is_some() {
            let object = present(&self.rt, &change.object);
            return Some(self.line(event_type, &object));
        }
        Some(self.line(event_type, &change.object))
    }

    fn bookmark(&mut self, resource_version: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": resource_version.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"apiVersion": self.rt.api_version(), "kind": self.rt.kind, "metadata": metadata});
        self.line("BOOKMARK", &object)
    }
}

/// How a committed change looks to a watcher with selectors: objects that
/// start or stop matching appear as ADDED or DELETED.
fn visible_event(change: &Change, params: &WatchParams) -> Option<&'static str> {
    let matches = |o: &Value| params.labels.matches(o) && params.fields.matches(o);
    let now = matches(&change.object);
    let before = change.previous.as_ref().is_some_and(matches);
    match (change.change_type, before, now) {
        (ChangeType::Added, _, true) => Some("ADDED"),
        (ChangeType::Deleted, true, _) | (ChangeType::Deleted, _, true) => Some("DELETED"),
        (ChangeType::Modified, true, true) => Some("MODIFIED"),
        (ChangeType::Modified, false, true) => Some("ADDED"),
        (ChangeType::Modified, true, false) => Some("DELETED"),
        _ => None,
    }
}

/// Starts the task that streams `initial` and then the live `feed`; returns the response body.
/// `subscribed_at` is the resourceVersion the feed was registered at.
pub fn stream(
    state: Arc<ServerState>,
    rt: ResourceType,
    subscribed_at: u64,
    initial: Vec<Arc<Change>>,
    mut feed: mpsc::UnboundedReceiver<Arc<Change>>,
    params: WatchParams,
) -> ChannelBody {
    let (sender, receiver) = mpsc::channel::<Bytes>(256);
    let mut shutdown = state.shutdown.clone();
    let mut encoder = EventEncoder {
        rt,
        table: params.table,
        headers_sent: false,
    };
    tokio::spawn(async move {
        for change in &initial {
            if let Some(line) = encoder.change(change, &params) {
                if sender.send(line).await.is_err() {
                    return;
                }
            }
        }
        let end_marker = (params.initial_events_end && params.bookmarks)
            .then(|| encoder.bookmark(subscribed_at, true));
        if let Some(line) = end_marker {
            if sender.send(line).await.is_err() {
                return;
            }
        }
        let interval = state.bookmark_interval;
        let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
        let deadline = params.timeout.map(|t| Instant::now() + t);
        let expiry = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);
        loop {
            let lines: Vec<Bytes> = tokio::select! {
                change = feed.recv() => match change {
                    Some(change) => encoder.change(&change, &params).into_iter().collect(),
                    None => break,
                },
                _ = ticks.tick(), if params.bookmarks => {
                    // Changes are sent to `feed` under the store lock, so draining it
                    // while holding the lock yields everything up to `rv`.
                    let (rv, drained) = {
                        let store = state.lock_store();
                        let mut drained = Vec::new();
                        while let Ok(change) = feed.try_recv() {
                            drained.push(change);
                        }
                        (store.resource_version(), drained)
                    };
                    let mut lines: Vec<Bytes> = drained.iter().filter_map(|c| encoder.change(c, &params)).collect();
                    lines.push(encoder.bookmark(rv, false));
                    lines
                },
                _ = &mut expiry => break,
                _ = sender.closed() => break,
                _ = shutdown.changed() => break,
            };
            for line in lines {
                if sender.send(line).await.is_err() {
                    return;
                }
            }
        }
    });
    ChannelBody { receiver }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;
    use crate::table::IncludeObject;

    fn decode(line: &Bytes) -> Value {
        serde_json::from_slice(line).expect("an event is one JSON line")
    }

    fn encoder(table: Option<TableRequest>) -> EventEncoder {
        EventEncoder {
            rt: Registry::default()
                .lookup("", "v1", "pods")
                .cloned()
                .unwrap(),
            table,
            headers_sent: false,
        }
    }

    #[test]
    fn table_watches_send_column_definitions_once() {
        let mut tables = encoder(Some(TableRequest {
            group_version: "meta.k8s.io/v1",
            include: IncludeObject::Metadata,
        }));
        let pod = json!({"metadata": {"name": "web", "resourceVersion": "5"}});
        let first = decode(&tables.line("ADDED", &pod));
        assert_eq!(first["type"], "ADDED");
        assert_eq!(first["object"]["kind"], "Table");
        assert_eq!(first["object"]["columnDefinitions"][0]["name"], "Name");
        assert_eq!(first["object"]["rows"][0]["cells"][0], "web");
        let second = decode(&tables.line("MODIFIED", &pod));
        assert_eq!(second["object"]["columnDefinitions"], Value::Null);
        let bookmark = decode(&tables.bookmark(9, false));
        assert_eq!(bookmark["type"], "BOOKMARK");
        assert_eq!(bookmark["object"]["kind"], "Table");
        assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn plain_watches_send_objects() {
        let mut plain = encoder(None);
        // Stored objects are served with the watched type's apiVersion/kind, whatever they
        // carried when stored.
        let pod = json!({"apiVersion": "v0", "metadata": {"name": "web"}, "spec": {"a": [1]}});
        let sent = decode(&plain.line("ADDED", &pod))["object"].clone();
        assert_eq!(sent, present(&plain.rt, &pod));
        assert_eq!(sent["apiVersion"], plain.rt.api_version());
        assert_eq!(sent["kind"], plain.rt.kind);
        assert_eq!(sent["spec"], pod["spec"]);
        assert_eq!(
            decode(&plain.bookmark(3, true))["object"]["metadata"]["annotations"]
                ["k8s.io/initial-events-end"],
            "true"
        );
    }
}
