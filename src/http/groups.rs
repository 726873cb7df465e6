//! [`both_groups!`]: the test and production groups of a route (`/openapi/environments` and
//! `/openapi/environments/production`, the service routes and theirs) written from one body
//! and one OpenAPI description.

/// Two handlers sharing one body and one OpenAPI description: the test group's (`production`
/// false) and the production group's (`production` true). utoipa needs one annotated
/// function per path, so this writes both operations from the shared arguments and
/// responses; each group names its path and may add responses of its own (`+ (…)`, e.g.
/// the production group's 403 for callers who are not admins). `code = OP,` names the
/// route's Zadig operation: an unreachable cluster is answered with its code
/// ([`crate::error::ApiError::during`]).
macro_rules! both_groups {
    (
        $(#[$test_doc:meta])* $test:ident = $test_path:tt $(+ ($($test_resp:tt)*))?;
        $(#[$prod_doc:meta])* $prod:ident = $prod_path:tt $(+ ($($prod_resp:tt)*))?;
        $method:ident($($args:tt)*),
        responses($($resp:tt)*),
        $(code = $op:expr,)?
        |$production:ident| ($($params:tt)*) -> $ret:ty $body:block
    ) => {
        $(#[$test_doc])*
        #[utoipa::path($method, path = $test_path, $($args)*,
            responses($($resp)* $(, $($test_resp)*)?))]
        async fn $test($($params)*) -> $ret {
            let $production = false;
            let answer: $ret = async { $body }.await;
            $(let answer = answer.map_err(|e| e.during($op));)?
            answer
        }

        $(#[$prod_doc])*
        #[utoipa::path($method, path = $prod_path, $($args)*,
            responses($($resp)* $(, $($prod_resp)*)?))]
        async fn $prod($($params)*) -> $ret {
            let $production = true;
            let answer: $ret = async { $body }.await;
            $(let answer = answer.map_err(|e| e.during($op));)?
            answer
        }
    };
}
pub(crate) use both_groups;
