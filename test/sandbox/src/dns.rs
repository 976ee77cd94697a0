//! A DNS stand-in for the CoreDNS a VpcDns deploys (CoreDNS cannot be installed here): a
//! responder in a pod's network namespace that answers every `A` query over UDP with one fixed
//! address, and the client side, a query sent from another namespace whose answer is parsed —
//! enough to show a name resolved through a DNS VIP end to end.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys;

/// A responder answering `A` queries on UDP port 53 in a pod's namespace; stops when dropped.
pub struct DnsResponder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsResponder {
    /// Starts answering in the namespace `netns` with `answer` for every name.
    pub fn start(netns: &str, answer: Ipv4Addr) -> Result<DnsResponder> {
        let path = sys::netns_path(netns);
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let socket = enter(&path).and_then(|()| {
                let s = UdpSocket::bind(("0.0.0.0", 53))?;
                s.set_read_timeout(Some(Duration::from_millis(100)))?;
                Ok(s)
            });
            let socket = match socket {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = answer_a(&buf[..n], answer) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(DnsResponder {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(Error::Invalid(format!("dns responder in {netns}: {e}"))),
            Err(_) => Err(Error::Invalid(format!(
                "dns responder in {netns} did not start"
            ))),
        }
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn enter(path: &str) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The offset just past the question section of `msg` (one question), if it parses.
fn question_end(msg: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let len = *msg.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += 1 + len;
    }
    (i + 4 <= msg.len()).then_some(i + 4)
}

/// The answer to a standard query for one `A` record: the same id and question, one answer.
fn answer_a(query: &[u8], address: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let end = question_end(query)?;
    let qtype = u16::from_be_bytes([query[end - 4], query[end - 3]]);
    let mut out = Vec::with_capacity(end + 16);
    out.extend_from_slice(&query[..2]);
    // QR, the query's RD, RA; NOERROR.
    out.extend_from_slice(&[0x80 | (query[2] & 0x01), 0x80]);
    out.extend_from_slice(&[0, 1, 0, u8::from(qtype == 1), 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..end]);
    if qtype == 1 {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        out.extend_from_slice(&address.octets());
    }
    Some(out)
}

/// A query for `name`'s `A` records with id `id`.
fn query_message(id: u16, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    out
}

/// The `A` addresses in a reply to the query with id `id`.
fn parse_answers(id: u16, msg: &[u8]) -> std::result::Result<Vec<Ipv4Addr>, String> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return Err(format!("not a reply to query {id}: {msg:02x?}"));
    }
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        return Err(format!("rcode {rcode}"));
    }
    let answers = u16::from_be_bytes([msg[6], msg[7]]);
    let mut i = question_end(msg).ok_or("bad question section")?;
    let mut out = Vec::new();
    for _ in 0..answers {
        // A compressed name (a pointer) or labels.
        if msg.get(i).is_some_and(|b| b & 0xc0 == 0xc0) {
            i += 2;
        } else {
            while let Some(&len) = msg.get(i) {
                i += 1 + len as usize;
                if len == 0 {
                    break;
                }
            }
        }
        let field = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
        };
        let (rtype, rdlen) = (
            field(i).ok_or("short answer")?,
            field(i + 8).ok_or("short answer")?,
        );
        i += 10;
        let data = msg.get(i..i + rdlen as usize).ok_or("short rdata")?;
        if rtype == 1 && data.len() == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        i += rdlen as usize;
    }
    Ok(out)
}

/// From the namespace `netns`, asks `server` over UDP for `name`'s `A` records.
pub fn query_a(
    netns: &str,
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> std::result::Result<Vec<Ipv4Addr>, String> {
    let path = sys::netns_path(netns);
    let name = name.to_string();
    std::thread::spawn(move || {
        enter(&path).map_err(|e| format!("entering {path}: {e}"))?;
        let socket = UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let id = (std::process::id() as u16) ^ 0x5a5a;
        socket
            .send_to(&query_message(id, &name), server)
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 512];
        let (n, _) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
        parse_answers(id, &buf[..n])
    })
    .join()
    .unwrap_or_else(|_| Err("query thread panicked".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_gets_its_answer_and_other_types_none() {
        let q = query_message(7, "kubernetes.default.svc.cluster.local");
        let r = answer_a(&q, Ipv4Addr::new(10, 0, 1, 5)).unwrap();
        assert_eq!(
            parse_answers(7, &r).unwrap(),
            vec![Ipv4Addr::new(10, 0, 1, 5)]
        );
        assert!(parse_answers(8, &r).is_err());
        let mut aaaa = q.clone();
        let n = aaaa.len();
        aaaa[n - 3] = 28;
        let r = answer_a(&aaaa, Ipv4Addr::LOCALHOST).unwrap();
        assert!(parse_answers(7, &r).unwrap().is_empty());
        assert!(
            answer_a(&r, Ipv4Addr::LOCALHOST).is_none(),
            "replies are not answered"
        );
        assert!(answer_a(&q[..5], Ipv4Addr::LOCALHOST).is_none());
    }
}
