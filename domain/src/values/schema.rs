//! OpenAPI schemas of the validated values, written by hand so they state the limits.
//!
//! utoipa's derive cannot put `maxLength` or `minimum` on a newtype, so each value says its
//! own limits here, from the same constants the checked constructors enforce.

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::*;

fn string(min: usize, max: usize, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
        .into()
}

fn integer(min: u64, max: u64, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
        .into()
}

impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        string(
            1,
            MAX_NAME_CHARS,
            "A name or title: one line, no control characters.",
        )
    }
}
impl ToSchema for Name {}

impl PartialSchema for Text {
    fn schema() -> RefOr<Schema> {
        string(
            0,
            MAX_TEXT_CHARS,
            "Free text: no control characters but newline and tab.",
        )
    }
}
impl ToSchema for Text {}

impl PartialSchema for Count {
    fn schema() -> RefOr<Schema> {
        integer(0, u64::from(MAX_COUNT), "A count of people or hours.")
    }
}
impl ToSchema for Count {}

impl PartialSchema for Yuan {
    fn schema() -> RefOr<Schema> {
        integer(0, MAX_YUAN, "A sum of money in whole yuan.")
    }
}
impl ToSchema for Yuan {}

impl PartialSchema for Rating {
    fn schema() -> RefOr<Schema> {
        integer(1, 5, "Residents' rating, 1 to 5.")
    }
}
impl ToSchema for Rating {}

// A generic type's schema is composed from its item's schema (given by a deriving parent, which
// may pass a `$ref`), which is what utoipa's derive generates for generic structs too.
impl<T: ToSchema> utoipa::__dev::ComposeSchema for List<T> {
    fn compose(generics: Vec<RefOr<Schema>>) -> RefOr<Schema> {
        let items = generics.into_iter().next().unwrap_or_else(T::schema);
        ArrayBuilder::new()
            .items(items)
            .max_items(Some(MAX_LIST_ITEMS))
            .into()
    }
}

// Named `List`; a deriving parent appends the item type (`List_Text`, `List_UnitId`), so lists
// of different items never share a schema.
impl<T: ToSchema> ToSchema for List<T> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("List")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}
