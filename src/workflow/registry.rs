//! Resolving the image registry a zadig-build execute input names (`registry`: the
//! registry's address and namespace, e.g. `https://harbor.example.com/team`) to its id
//! (spec/workflow.md §3.3, DESIGN.md §5). Registries are the delivery area's
//! (`/openapi/system/registry`).

use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::bad;

/// The id of the registry whose `<address>/<namespace>` is `addr` (scheme, case and trailing
/// `/` ignored); none → 400 naming `field`.
pub async fn resolve(state: &AppState, addr: &str, field: &str) -> ApiResult<String> {
    match state.delivery.registries.registry_by_key(addr).await? {
        Some(r) => Ok(r.id),
        None => Err(bad(
            field,
            format!("didn't find the specified image registry {addr}"),
        )),
    }
}
