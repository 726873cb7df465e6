//! Enums with Zadig's strings on the wire, declared once.
//!
//! [`wire_enum!`] writes an enum from a table of `Variant = "text",` rows: a serde rename per
//! variant, `ALL`, `NAMES`, `as_str`, `parse`, `read` (a 400 listing the names), `Display` and
//! comparison with `&str`, and for an enum declared `as "Name"` the OpenAPI schema — so the
//! string that is stored, the one that is sent, the one a filter or a log names, the ones a 400
//! lists and the ones the document lists cannot drift apart.

/// Declare an enum whose variants are Zadig's strings:
///
/// ```text
/// wire_enum! {
///     /// A version's status.
///     #[derive(Default)]
///     pub enum VersionStatus {
///         #[default]
///         Creating = "creating",
///         Failed = "failed",
///     }
/// }
/// ```
///
/// It derives `Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize`; add others
/// (`Default`, `PartialOrd`) with a `#[derive]` of the caller's. `pub enum Status as
/// "TaskStatus" { … }` also gives it an OpenAPI schema of that name ([`wire_schema!`]), for an
/// enum a view carries.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident $(as $schema:literal)? {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Zadig's strings, in the order of [`Self::ALL`] (400 messages list them).
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// Zadig's string: what is stored (use it in store filters) and sent.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant called `s`; `None` for a string Zadig does not use here.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }

            /// The variant called `s`, or a 400 naming `field` and the strings it may be.
            pub fn read(field: &str, s: &str) -> $crate::error::ApiResult<Self> {
                Self::parse(s).ok_or_else(|| {
                    $crate::error::ApiError::bad_request(format!(
                        "`{field}` must be one of {}, got {s:?}",
                        Self::NAMES.join(", ")
                    ))
                })
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Compares with Zadig's string (`status == "passed"` in tests and clients' terms).
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        $($crate::wire::wire_schema!($name => $schema);)?
    };
}
pub(crate) use wire_enum;

/// The OpenAPI schema of a [`wire_enum!`] declared `as "Name"`: a string component called
/// `Name` that lists Zadig's strings, so a view field of that type documents exactly the values
/// it can carry. The name is given there because several areas call their enum `Status`.
macro_rules! wire_schema {
    ($ty:ty => $name:literal) => {
        impl ::utoipa::PartialSchema for $ty {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .enum_values(Some(<$ty>::NAMES.iter().copied()))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $ty {
            fn name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed($name)
            }
        }
    };
}
pub(crate) use wire_schema;

#[cfg(test)]
mod tests {
    wire_enum! {
        #[derive(Default)]
        enum Sample as "SampleStatus" {
            #[default]
            Unset = "",
            Planning = "planning",
            WaitForApproval = "wait_for_approval",
        }
    }

    #[test]
    fn the_schema_lists_the_names() {
        use utoipa::{PartialSchema, ToSchema};
        assert_eq!(Sample::name(), "SampleStatus");
        assert_eq!(
            serde_json::to_value(Sample::schema()).unwrap(),
            serde_json::json!({"type": "string", "enum": ["", "planning", "wait_for_approval"]})
        );
    }

    #[test]
    fn one_table_gives_serde_strings_names_and_the_400() {
        assert_eq!(Sample::NAMES, ["", "planning", "wait_for_approval"]);
        for (&v, &name) in Sample::ALL.iter().zip(Sample::NAMES) {
            assert_eq!(v.as_str(), name);
            assert_eq!(v.to_string(), name);
            assert!(v == name);
            assert_eq!(serde_json::to_value(v).unwrap(), name);
            assert_eq!(serde_json::from_value::<Sample>(name.into()).unwrap(), v);
            assert_eq!(Sample::parse(name), Some(v));
        }
        assert_eq!(Sample::default(), Sample::Unset);
        assert!(serde_json::from_value::<Sample>("Planning".into()).is_err());
        let e = Sample::read("jobs[0].status", "done").unwrap_err();
        assert_eq!(
            e.description,
            "`jobs[0].status` must be one of , planning, wait_for_approval, got \"done\""
        );
    }
}
