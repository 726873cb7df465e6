//! Zadig's null-as-zero rule for request bodies, applied once in the decoder.
//!
//! Zadig's Go/gin binder reads a JSON `null` in any field as the field's zero value (`""`,
//! `false`, `0`, a nil slice or map), and clients generated from its docs send `null` for the
//! optional fields they leave out. [`NullAsZero`] is a `Deserializer` over a parsed
//! [`Value`] that answers a `null` with the zero value of whatever type asks for it, at every
//! depth:
//!
//! - a string reads `""`, a bool `false`, a number `0`, a sequence `[]`, a map or struct `{}`
//!   (so a struct whose fields all have defaults reads as its default; one with a required
//!   field is still refused, naming the field);
//! - an `Option` reads `None`;
//! - an enum reads the variant called `""` — an enum without one refuses the `null` with
//!   "unknown variant ``", naming the field;
//! - a free-form [`Value`] (and anything that asks for "any") keeps `null`, so stored
//!   definitions round-trip as before.
//!
//! Everything else is serde_json's own `Value` deserializer. Paths in errors
//! (`serde_path_to_error`) are unchanged.
//!
//! Known limit: `#[serde(untagged)]` enums and `#[serde(flatten)]`ed fields buffer their input
//! through serde's private `Content`, so the rule does not reach inside those. The request
//! bodies use neither on typed fields (ticket `envs` is an untagged string-or-list whose `null`
//! is handled by its own `deserialize_with`; the flattened `approval` extras are free-form).

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};
use serde_json::{Map, Value};

/// Decode `value` into `T` under the null-as-zero rule, keeping the failing field's path.
pub fn deserialize<T: DeserializeOwned>(
    value: Value,
) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    serde_path_to_error::deserialize(NullAsZero(value))
}

/// A JSON value read under the null-as-zero rule (see the module documentation).
pub struct NullAsZero(pub Value);

/// The entries of an object, each value read under the rule.
struct MapAccess {
    iter: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl<'de> de::MapAccess<'de> for MapAccess {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(k.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let v = self.value.take().unwrap_or(Value::Null);
        seed.deserialize(NullAsZero(v))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// The elements of an array, each read under the rule.
struct SeqAccess(std::vec::IntoIter<Value>);

impl<'de> de::SeqAccess<'de> for SeqAccess {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(NullAsZero(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

fn visit_object<'de, V: Visitor<'de>>(
    m: Map<String, Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let len = m.len();
    let mut access = MapAccess {
        iter: m.into_iter(),
        value: None,
    };
    let out = visitor.visit_map(&mut access)?;
    if access.iter.len() == 0 {
        Ok(out)
    } else {
        Err(de::Error::invalid_length(len, &"fewer elements in map"))
    }
}

fn visit_array<'de, V: Visitor<'de>>(
    a: Vec<Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let len = a.len();
    let mut access = SeqAccess(a.into_iter());
    let out = visitor.visit_seq(&mut access)?;
    if access.0.len() == 0 {
        Ok(out)
    } else {
        Err(de::Error::invalid_length(len, &"fewer elements in array"))
    }
}

/// A `null` reads as the zero value the visitor asks for; anything else goes to serde_json's
/// `Value` deserializer, except objects and arrays, whose members stay under the rule.
macro_rules! zero_or_delegate {
    ($($method:ident => |$v:ident| $zero:expr;)+) => {
        $(
            fn $method<V: Visitor<'de>>(self, $v: V) -> Result<V::Value, Self::Error> {
                match self.0 {
                    Value::Null => $zero,
                    other => other.$method($v),
                }
            }
        )+
    };
}

/// Objects and arrays keep the rule for their members; scalars go to serde_json.
macro_rules! containers_or_delegate {
    ($($method:ident => |$v:ident| $null:expr;)+) => {
        $(
            fn $method<V: Visitor<'de>>(self, $v: V) -> Result<V::Value, Self::Error> {
                match self.0 {
                    Value::Null => $null,
                    Value::Object(m) => visit_object(m, $v),
                    Value::Array(a) => visit_array(a, $v),
                    other => other.$method($v),
                }
            }
        )+
    };
}

impl<'de> Deserializer<'de> for NullAsZero {
    type Error = serde_json::Error;

    zero_or_delegate! {
        deserialize_bool => |v| v.visit_bool(false);
        deserialize_i8 => |v| v.visit_i8(0);
        deserialize_i16 => |v| v.visit_i16(0);
        deserialize_i32 => |v| v.visit_i32(0);
        deserialize_i64 => |v| v.visit_i64(0);
        deserialize_i128 => |v| v.visit_i128(0);
        deserialize_u8 => |v| v.visit_u8(0);
        deserialize_u16 => |v| v.visit_u16(0);
        deserialize_u32 => |v| v.visit_u32(0);
        deserialize_u64 => |v| v.visit_u64(0);
        deserialize_u128 => |v| v.visit_u128(0);
        deserialize_f32 => |v| v.visit_f32(0.0);
        deserialize_f64 => |v| v.visit_f64(0.0);
        deserialize_str => |v| v.visit_str("");
        deserialize_string => |v| v.visit_string(String::new());
        deserialize_bytes => |v| v.visit_bytes(&[]);
        deserialize_byte_buf => |v| v.visit_byte_buf(Vec::new());
        deserialize_unit => |v| v.visit_unit();
        deserialize_char => |v| Value::Null.deserialize_char(v);
        deserialize_identifier => |v| Value::Null.deserialize_identifier(v);
    }

    containers_or_delegate! {
        // `null` stays `null` for a free-form value (and what asks for "any").
        deserialize_any => |v| v.visit_unit();
        deserialize_ignored_any => |v| v.visit_unit();
        deserialize_seq => |v| v.visit_seq(SeqAccess(Vec::new().into_iter()));
        deserialize_map => |v| v.visit_map(MapAccess { iter: Map::new().into_iter(), value: None });
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(NullAsZero(other)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            other => other.deserialize_unit_struct(name, visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    /// Go's zero value for an enum-typed string is `""`: the variant so named, else an
    /// "unknown variant" error naming the field.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => Value::String(String::new()).deserialize_enum(name, variants, visitor),
            other => other.deserialize_enum(name, variants, visitor),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Inner {
        #[serde(default)]
        s: String,
        #[serde(default)]
        b: bool,
        #[serde(default)]
        n: i64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Outer {
        name: String,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        inner: Inner,
        #[serde(default)]
        opt: Option<String>,
        #[serde(default)]
        free: serde_json::Value,
    }

    #[test]
    fn null_reads_as_zero_at_every_depth() {
        let o: Outer = deserialize(
            json!({"name": null, "list": [{"s": null, "b": null, "n": null}],
            "inner": null, "opt": null, "free": {"a": null, "b": [null, 1]}}),
        )
        .unwrap();
        assert_eq!(o.name, "");
        assert_eq!(o.list, vec![Inner::default()]);
        assert_eq!(o.inner, Inner::default());
        assert_eq!(o.opt, None);
        assert_eq!(o.free, json!({"a": null, "b": [null, 1]}));
    }

    #[test]
    fn paths_and_types_are_still_checked() {
        let e = deserialize::<Outer>(json!({"name": "x", "list": [{}, {"b": "yes"}]})).unwrap_err();
        assert_eq!(e.path().to_string(), "list[1].b");
        assert!(e.inner().to_string().contains("expected a boolean"), "{e}");
        let e = deserialize::<Outer>(json!({"list": []})).unwrap_err();
        assert!(e.to_string().contains("missing field `name`"), "{e}");
    }

    #[test]
    fn enums_read_null_as_the_empty_variant_or_refuse_it() {
        #[derive(Debug, Deserialize, PartialEq)]
        enum WithEmpty {
            #[serde(rename = "")]
            Empty,
            #[serde(rename = "a")]
            A,
        }
        #[derive(Debug, Deserialize)]
        enum Closed {
            #[serde(rename = "a")]
            A,
        }
        #[derive(Debug, Deserialize)]
        struct S<E> {
            e: E,
        }
        let s: S<WithEmpty> = deserialize(json!({"e": null})).unwrap();
        assert_eq!(s.e, WithEmpty::Empty);
        let e = deserialize::<S<Closed>>(json!({"e": null})).unwrap_err();
        assert_eq!(e.path().to_string(), "e");
        assert!(e.inner().to_string().contains("unknown variant ``"), "{e}");
    }
}
