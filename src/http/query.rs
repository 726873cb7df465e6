//! Query parameters several routes share: paging (`pageNum`/`pageSize`) and the project key.
//!
//! A handler that takes these and parameters of its own takes one `Query<…>` extractor per
//! type (each decodes the whole query string and ignores the keys of the others):
//! `#[serde(flatten)]` would make serde_urlencoded hand integers over as strings.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiResult;
use crate::limits::{PageRule, Paging};

/// The page of a list route. Checked against the route's [`PageRule`] by [`PageQuery::check`];
/// the OpenAPI document describes both parameters from the same rule (`doc::params`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[serde(rename = "pageNum")]
    pub page_num: Option<i64>,
    #[serde(rename = "pageSize")]
    pub page_size: Option<i64>,
}

impl PageQuery {
    /// The page, or a 400 naming `pageNum` or `pageSize`.
    pub fn check(&self, rule: &PageRule) -> ApiResult<Paging> {
        self.check_with_alias(rule, None)
    }

    /// The page where `page` is accepted as an alias of `pageNum` (which wins when both are
    /// given); a bad alias is reported as `page`.
    pub fn check_with_alias(&self, rule: &PageRule, page: Option<i64>) -> ApiResult<Paging> {
        let (field, num) = match (self.page_num, page) {
            (None, Some(n)) => ("page", Some(n)),
            (num, _) => ("pageNum", num),
        };
        Paging::parse(rule, field, num, self.page_size)
    }
}

/// `projectKey` alone, where the route says nothing more about it (whether it is required is
/// the handler's rule, stated by the OpenAPI document, `doc::tables::REQUIRED_QUERY`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectKey {
    #[serde(rename = "projectKey", default)]
    pub project_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{RELEASE_PLANS_PAGE, WORKFLOW_TASKS_PAGE};

    fn page(num: Option<i64>, size: Option<i64>) -> PageQuery {
        PageQuery {
            page_num: num,
            page_size: size,
        }
    }

    fn error(r: ApiResult<Paging>) -> String {
        r.expect_err("expected a 400").description
    }

    #[test]
    fn defaults_and_required_come_from_the_rule() {
        let p = page(None, None).check(&WORKFLOW_TASKS_PAGE).unwrap();
        assert_eq!(p, Paging { num: 1, size: 50 });
        assert!(error(page(None, Some(1)).check(&RELEASE_PLANS_PAGE)).contains("`pageNum`"));
        assert!(error(page(Some(1), None).check(&RELEASE_PLANS_PAGE)).contains("`pageSize`"));
    }

    #[test]
    fn page_is_an_alias_that_pagenum_wins_over() {
        let rule = &WORKFLOW_TASKS_PAGE;
        let p = page(None, Some(10))
            .check_with_alias(rule, Some(3))
            .unwrap();
        assert_eq!(p, Paging { num: 3, size: 10 });
        let p = page(Some(2), Some(10))
            .check_with_alias(rule, Some(3))
            .unwrap();
        assert_eq!(p, Paging { num: 2, size: 10 });
        let e = error(page(None, None).check_with_alias(rule, Some(0)));
        assert!(e.contains("`page`"), "{e}");
        let e = error(page(Some(0), None).check_with_alias(rule, Some(1)));
        assert!(e.contains("`pageNum`"), "{e}");
    }
}
