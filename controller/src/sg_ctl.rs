//! SecurityGroup reconciler: keeps each group's port group, address sets and ACLs (see
//! [`crate::sg`]) in step with the group and with the ports that name it. Ports carry their
//! groups as `external_ids` marks written by the pod reconciler, which queues the groups a
//! port joined or left; a group's reconcile reads its members from those marks in the NB cache
//! (read-your-writes), so a pod joining is one port-group mutate and one address-set mutate.
//! The key [`DENY_ALL_SG`] converges the deny-all group's members: every port naming a group
//! that exists.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kube_ovn_common::crd::SecurityGroup;
use kube_ovn_nb::objects::{self, DENY_ALL_SG};
use serde_json::json;

use crate::context::{Ctx, Error};
use crate::sg;
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;

/// The SecurityGroup queue's kind name.
pub const KIND: &str = "security-group";

/// What of a group the reconciler reads.
pub fn signature(sg: &SecurityGroup) -> u64 {
    hash_of(&(
        hash_json(&sg.spec),
        sg.metadata.deletion_timestamp.is_some(),
    ))
}

/// The groups whose rules name `sg` as their remote: they wait for it to exist.
pub fn referencing(all: &[Arc<SecurityGroup>], sg: &SecurityGroup) -> Vec<String> {
    let name = sg.name_any();
    let mut out: Vec<String> = all
        .iter()
        .filter(|g| sg::remote_groups(g).contains(&name))
        .map(|g| g.name_any())
        .collect();
    // Ports naming a group that appeared or went change their deny-all membership.
    out.push(DENY_ALL_SG.to_string());
    out
}

/// Reconciles the security group `name` (or the deny-all group's members).
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> Result<Outcome, Error> {
    if key == DENY_ALL_SG {
        ctx.apply("deny-all security group members", |plan| {
            let present = objects::sg_groups_present(plan)?;
            objects::deny_all_members(plan, &present)
        })
        .await?;
        return Ok(Outcome::Done);
    }
    let group = ctx
        .stores
        .security_groups
        .get(&ObjectRef::new(&key))
        .filter(|g| g.metadata.deletion_timestamp.is_none());
    let Some(group) = group else {
        ctx.apply(&format!("delete security group {key}"), |plan| {
            objects::delete_sg(plan, &key)
        })
        .await?;
        ctx.queues.add(KIND, DENY_ALL_SG.to_string());
        return Ok(Outcome::Done);
    };
    let groups = &ctx.stores.security_groups;
    let exists = |n: &str| groups.get(&ObjectRef::new(n)).is_some();
    if let Err(e) = sg::validate(&group, &exists) {
        ctx.event(
            &group.object_ref(&()),
            EventType::Warning,
            "ValidateSecurityGroupFailed",
            &e,
        )
        .await;
        write_status(&ctx, &group, false).await?;
        // A spec change or a remote group appearing queues it again.
        return Ok(Outcome::Done);
    }
    let acls = sg::acls(&group);
    let remotes = sg::remote_groups(&group);
    let r = ctx
        .apply(&format!("security group {key}"), |plan| {
            let members = objects::sg_members(plan, &key)?;
            objects::sg_port_group(plan, &key, &members.ports)?;
            objects::sg_address_sets(plan, &key, &members)?;
            // The sets a rule names must exist for northd to accept the ACL; their own
            // group fills them.
            for remote in remotes.iter().filter(|r| **r != key) {
                objects::ensure_sg_address_sets(plan, remote)?;
            }
            objects::sg_acls(plan, &key, &acls)
        })
        .await;
    if let Err(e) = r {
        ctx.event(
            &group.object_ref(&()),
            EventType::Warning,
            "UpdateSecurityGroupFailed",
            &e.to_string(),
        )
        .await;
        write_status(&ctx, &group, false).await?;
        return Err(e);
    }
    write_status(&ctx, &group, true).await?;
    ctx.queues.add(KIND, DENY_ALL_SG.to_string());
    Ok(Outcome::Done)
}

/// Patches the status fields upstream keeps (`portGroup`, `allowSameGroupTraffic`, the sync
/// results) when they differ. The rule hashes upstream also keeps are left as they are: they
/// only steer upstream's own skip-if-unchanged, which plan diffing replaces here.
async fn write_status(ctx: &Ctx, group: &SecurityGroup, synced: bool) -> Result<(), Error> {
    let st = group.status.clone().unwrap_or_default();
    let name = group.name_any();
    let pg = objects::sg_pg(&name);
    let want_pg = if synced {
        pg.as_str()
    } else {
        st.port_group.as_str()
    };
    if group.status.is_some()
        && st.port_group == want_pg
        && st.allow_same_group_traffic == group.spec.allow_same_group_traffic
        && st.ingress_last_sync_success == synced
        && st.egress_last_sync_success == synced
    {
        return Ok(());
    }
    let api: Api<SecurityGroup> = Api::all(ctx.client.clone());
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "portGroup": want_pg,
            "allowSameGroupTraffic": group.spec.allow_same_group_traffic,
            "ingressLastSyncSuccess": synced,
            "egressLastSyncSuccess": synced,
        }})),
    )
    .await?;
    Ok(())
}

/// After a port was written: queues the groups it held before (`old`) and holds now (`new`)
/// — their members or addresses changed — and the deny-all members.
pub fn queue_groups(ctx: &Ctx, old: &[String], new: &[String]) {
    if old.is_empty() && new.is_empty() {
        return;
    }
    let all: BTreeSet<&String> = old.iter().chain(new).collect();
    for g in all {
        ctx.queues.add(KIND, g.clone());
    }
    ctx.queues.add(KIND, DENY_ALL_SG.to_string());
}

/// Removes the rows of groups that no longer exist (deleted while the controller was down).
pub async fn gc(ctx: &Ctx) -> Result<usize, Error> {
    let live: BTreeSet<String> = ctx
        .stores
        .security_groups
        .state()
        .iter()
        .map(|g| g.name_any())
        .collect();
    ctx.apply("gc security groups", |plan| {
        for sg in objects::sg_port_groups(plan)? {
            if !live.contains(&sg) {
                objects::delete_sg(plan, &sg)?;
            }
        }
        Ok(())
    })
    .await
}
