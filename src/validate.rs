//! Input checks shared by every resource, each failing with a 400 that names the field
//! (DESIGN.md §5: names ≤ 256 characters, paging ≥ 1).

use serde::{Deserialize, Deserializer};

use crate::error::{ApiError, ApiResult};

/// serde `deserialize_with` for Zadig's null-as-default rule: `null` reads as the type's
/// default (Go's binder treats null as the zero value: nil slices, empty strings), anything
/// else must have the field's type. Request bodies get the rule for every field from their
/// decoder ([`crate::null_as_zero`]); this attribute still matters where a document is read
/// with plain serde_json (stored records).
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Longest accepted name or identifier.
pub const MAX_NAME_LEN: usize = 256;

/// A required name: non-empty (after trimming) and at most [`MAX_NAME_LEN`] characters.
pub fn name(field: &str, value: &str) -> ApiResult<()> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("`{field}` is required")));
    }
    max_len(field, value)
}

/// An optional name: when present, at most [`MAX_NAME_LEN`] characters.
pub fn max_len(field: &str, value: &str) -> ApiResult<()> {
    if value.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "`{field}` is longer than {MAX_NAME_LEN} characters"
        )));
    }
    Ok(())
}

/// A paging parameter: `default` when absent, else ≥ 1 (and ≤ `max` when given).
pub fn page_param(
    field: &str,
    value: Option<i64>,
    default: Option<u64>,
    max: Option<u64>,
) -> ApiResult<u64> {
    let v = match (value, default) {
        (Some(v), _) => v,
        (None, Some(d)) => return Ok(d),
        (None, None) => return Err(ApiError::bad_request(format!("`{field}` is required"))),
    };
    if v < 1 {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be at least 1, got {v}"
        )));
    }
    let v = v.unsigned_abs();
    match max {
        Some(m) if v > m => Err(ApiError::bad_request(format!(
            "`{field}` must be at most {m}, got {v}"
        ))),
        _ => Ok(v),
    }
}

/// One of the allowed values, else 400 listing them.
pub fn one_of(field: &str, value: &str, allowed: &[&str]) -> ApiResult<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{field}` must be one of {}, got {value:?}",
            allowed.join(", ")
        )))
    }
}

/// A 24-hex-character ObjectId string.
pub fn object_id(field: &str, value: &str) -> ApiResult<()> {
    if value.len() == 24 && value.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{field}` must be a 24-character hex id, got {value:?}"
        )))
    }
}

/// A new 24-hex-character id (MongoDB ObjectId layout: seconds, then random bytes).
pub fn new_object_id(now_secs: i64) -> String {
    use rand::RngCore;
    let mut rest = [0u8; 8];
    rand::rng().fill_bytes(&mut rest);
    format!(
        "{:08x}{}",
        u32::try_from(now_secs.max(0)).unwrap_or(u32::MAX),
        hex::encode(rest)
    )
}
