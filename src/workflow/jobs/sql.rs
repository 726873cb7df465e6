//! `sql`: run SQL against a database instance. Running it needs database instances, which
//! this server does not have.

use serde::Deserialize;
use serde_json::Value;

use super::{InputCx, JobKind, Runs, Spec};
use crate::error::ApiResult;
use crate::workflow::inputs::decode;

/// The `sql` job type.
pub struct Sql;

#[derive(Debug, Default, Deserialize)]
struct SqlInput {
    database_name: Option<String>,
    sql: Option<String>,
}

#[async_trait::async_trait]
impl JobKind for Sql {
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let input: SqlInput = decode(params, cx.field)?;
        if let Some(db) = input.database_name {
            spec.insert("database_name".into(), Value::String(db));
        }
        if let Some(sql) = input.sql {
            spec.insert("sql".into(), Value::String(sql));
        }
        Ok(())
    }

    fn runs(&self) -> Runs {
        Runs::Needs("database")
    }
}
