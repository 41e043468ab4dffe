//! Pruning: children of this Storefront that its spec no longer wants.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};

use crate::children::{self, Child, ChildKind};
use crate::crd::Storefront;

use super::{Context, Error, api_resource, namespace};

/// Deletes this Storefront's children of the pruned kinds that the spec no
/// longer wants.
pub(super) async fn prune(
    sf: &Storefront,
    ctx: &Context,
    wanted: &[Child],
) -> Result<Vec<String>, Error> {
    let ns = namespace(sf);
    let uid = sf.uid();
    let wanted: BTreeSet<(ChildKind, &str)> =
        wanted.iter().map(|c| (c.kind, c.name.as_str())).collect();
    let mut pruned = vec![];
    for kind in ChildKind::PRUNED {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &api_resource(kind));
        let list = api
            .list_metadata(
                &ListParams::default().labels(&children::instance_selector(&sf.name_any())),
            )
            .await?;
        for object in list.items {
            let name = object.name_any();
            let owned = object
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref());
            if owned && !wanted.contains(&(kind, name.as_str())) {
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => pruned.push(format!("{} {name}", kind.gvk().2)),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(pruned)
}
