//! IP custom resources: the durable record of every allocation (named like the port), written
//! exactly as upstream does so either controller can restore from the other's records.

use std::net::IpAddr;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::annotations as ann;
use crate::context::{Ctx, Error};
use crate::crd::ip::IpSpec;
use crate::crd::Ip;

/// What an IP CR records.
#[derive(Debug, Clone)]
pub struct IpRecord {
    /// CR name (= port name).
    pub name: String,
    /// Pod (or node) name.
    pub pod_name: String,
    /// Pod namespace ("" for nodes).
    pub namespace: String,
    /// Subnet.
    pub subnet: String,
    /// Node the pod runs on ("" before scheduling).
    pub node_name: String,
    /// Addresses.
    pub ips: Vec<IpAddr>,
    /// MAC.
    pub mac: String,
    /// "StatefulSet", "VirtualMachine" or "".
    pub pod_type: String,
    /// For node records: the Node's name and UID (owner reference).
    pub owner_node: Option<(String, String)>,
}

fn desired_spec(r: &IpRecord) -> IpSpec {
    let v4 = r
        .ips
        .iter()
        .find(|i| i.is_ipv4())
        .map(|i| i.to_string())
        .unwrap_or_default();
    let v6 = r
        .ips
        .iter()
        .find(|i| i.is_ipv6())
        .map(|i| i.to_string())
        .unwrap_or_default();
    IpSpec {
        pod_name: r.pod_name.clone(),
        namespace: r.namespace.clone(),
        subnet: r.subnet.clone(),
        node_name: r.node_name.clone(),
        ip_address: ann::format_ips(&r.ips),
        v4_ip_address: v4,
        v6_ip_address: v6,
        mac_address: r.mac.clone(),
        pod_type: r.pod_type.clone(),
        ..IpSpec::default()
    }
}

/// Creates or updates the CR; writes nothing when it already matches.
pub async fn ensure(ctx: &Ctx, r: &IpRecord) -> Result<(), Error> {
    let api: Api<Ip> = Api::all(ctx.client.clone());
    let spec = desired_spec(r);
    let mut labels = json!({
        ann::LABEL_SUBNET: r.subnet,
        ann::LABEL_NODE_NAME: r.node_name,
        r.subnet.as_str(): "",
    });
    match api.get_opt(&r.name).await? {
        None => {
            labels[ann::LABEL_IP_RESERVED] = json!("false");
            let mut meta =
                json!({"name": r.name, "labels": labels, "finalizers": [ann::FINALIZER]});
            if let Some((node, uid)) = &r.owner_node {
                meta["ownerReferences"] =
                    json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]);
            }
            let obj: Ip = serde_json::from_value(json!({
                "apiVersion": "kubeovn.io/v1", "kind": "IP", "metadata": meta,
                "spec": serde_json::to_value(&spec).map_err(|e| Error::Other(e.to_string()))?,
            }))
            .map_err(|e| Error::Other(e.to_string()))?;
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Other(format!(
                    "IP {} created concurrently; retrying",
                    r.name
                ))),
                Err(e) => Err(e.into()),
            }
        }
        Some(current) => {
            let cur_labels = current.metadata.labels.clone().unwrap_or_default();
            let labels_ok = labels.as_object().is_some_and(|m| {
                m.iter()
                    .all(|(k, v)| cur_labels.get(k).map(|s| json!(s)) == Some(v.clone()))
            });
            let fin_ok = current
                .metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|x| x == ann::FINALIZER));
            // The daemon may fill containerID/attach fields; compare what we own.
            let mut mine = current.spec.clone();
            mine.container_id = String::new();
            let mut want = spec.clone();
            want.attach_ips = mine.attach_ips.clone();
            want.attach_macs = mine.attach_macs.clone();
            want.attach_subnets = mine.attach_subnets.clone();
            if labels_ok && fin_ok && mine == want {
                return Ok(());
            }
            let old_subnet = cur_labels
                .get(ann::LABEL_SUBNET)
                .cloned()
                .unwrap_or_default();
            if !old_subnet.is_empty() && old_subnet != r.subnet {
                labels[old_subnet.as_str()] = serde_json::Value::Null;
            }
            let mut finalizers = current.metadata.finalizers.clone().unwrap_or_default();
            if !fin_ok {
                finalizers.push(ann::FINALIZER.into());
            }
            let mut spec_json =
                serde_json::to_value(&want).map_err(|e| Error::Other(e.to_string()))?;
            spec_json["containerID"] = json!(current.spec.container_id);
            api.patch(
                &r.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": labels, "finalizers": finalizers}, "spec": spec_json})),
            )
            .await?;
            Ok(())
        }
    }
}

/// Deletes the CR (dropping our finalizer first); absent is fine.
pub async fn delete(ctx: &Ctx, name: &str) -> Result<(), Error> {
    let api: Api<Ip> = Api::all(ctx.client.clone());
    let Some(current) = api.get_opt(name).await? else {
        return Ok(());
    };
    if current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ann::LABEL_IP_RESERVED))
        .map(String::as_str)
        == Some("true")
    {
        return Ok(());
    }
    if current
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| !f.is_empty())
    {
        let kept: Vec<String> = current
            .metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != ann::FINALIZER && f != "kube-ovn-controller")
            .collect();
        match api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": kept}})),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
