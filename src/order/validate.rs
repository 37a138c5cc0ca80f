//! Spec-driven validation of a card order against the embedded D1 OpenAPI document.
//!
//! The schema is read from `docs/specs/d1-card-order.openapi.json` at build time and
//! walked as is (`$ref`, `oneOf` + `discriminator`, `type`, `required`, `properties`,
//! `items`, `enum`, `pattern`, `minLength`/`maxLength`, `minItems`/`maxItems`), so a
//! new spec revision changes the checks without code changes.
//!
//! Error code mapping (the first field in error wins):
//!
//! | Violation                                            | `errorCode`            |
//! |------------------------------------------------------|------------------------|
//! | required field missing                               | `FIELD_INVALID_FORMAT` |
//! | wrong JSON type (incl. `null`)                       | `FIELD_INVALID_FORMAT` |
//! | `minLength` / `maxLength` (Unicode code points)      | `FIELD_INVALID_FORMAT` |
//! | `pattern`                                            | `FIELD_INVALID_FORMAT` |
//! | `enum`                                               | `FIELD_INVALID_VALUE`  |
//! | unknown discriminator value (`distributionChannel`, shipment `type`) | `FIELD_INVALID_VALUE` |
//! | `minItems` / `maxItems`                              | `FIELD_INVALID_VALUE`  |
//!
//! "First" is deterministic: within an object the `required` list is checked in
//! spec order, then present properties in the spec's `properties` order; arrays
//! are checked for item count, then item by item. Unknown extra properties are
//! tolerated. A schema with `properties` or `required` but no `type` (e.g.
//! `services`) is treated as an object.
//!
//! Patterns are compiled verbatim with the `regex` crate. They were written for
//! ECMA regex; the constructs the spec uses mean the same in both: `\p{L}`,
//! `\p{N}`, `\p{M}` are Unicode classes, `.-\\` and `\/-?` inside a class are
//! character ranges, escaped punctuation is literal, and an unanchored pattern
//! (`[A-Za-z0-9_-]{1,64}` in `cardRequestThales`) matches anywhere in the value.
//! Repetition counts apply to code points, as do the length limits. Patterns of the
//! shape `^[class]{m,n}$` are run as `^[class]*$` plus a code-point count (see
//! [`Pattern`]): same strings accepted, a few MiB instead of hundreds. The test
//! `every_spec_pattern_agrees_with_the_ecma_oracle` checks every spec pattern
//! against results computed by a JavaScript engine.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::OnceLock;

use regex::Regex;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::error::{D1Error, D1ErrorCode};

/// The D1 card order contract, embedded at build time.
pub const SPEC_JSON: &str = include_str!("../../docs/specs/d1-card-order.openapi.json");

/// Name of the root request schema in `components.schemas`.
pub const ROOT_SCHEMA: &str = "cardRequest";

/// One schema object; only the keywords the validator applies are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Schema {
    #[serde(rename = "$ref")]
    reference: Option<String>,
    #[serde(rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default, deserialize_with = "in_order")]
    properties: Vec<(String, Schema)>,
    items: Option<Box<Schema>>,
    #[serde(default)]
    one_of: Vec<Schema>,
    discriminator: Option<Discriminator>,
    #[serde(rename = "enum")]
    enumeration: Option<Vec<Value>>,
    pattern: Option<String>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Discriminator {
    property_name: String,
    #[serde(default)]
    mapping: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Document {
    components: Components,
}

#[derive(Deserialize)]
struct Components {
    schemas: HashMap<String, Schema>,
}

/// Reads a JSON object keeping its key order (the spec order decides which error is first).
fn in_order<'de, D, T>(deserializer: D) -> Result<Vec<(String, T)>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Ordered<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Ordered<T> {
        type Value = Vec<(String, T)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Ordered(PhantomData))
}

/// The parsed spec with every pattern compiled once.
struct Spec {
    schemas: HashMap<String, Schema>,
    patterns: HashMap<String, Pattern>,
}

/// A compiled spec pattern.
///
/// Most spec patterns have the shape `^[class]{m,n}$`. Compiled verbatim, a
/// Unicode class such as `[\p{L}\p{N}…]` repeated up to 256 times needs an
/// automaton of hundreds of MiB, so that shape is matched as `^[class]*$` plus a
/// count of `m..=n` code points, which accepts exactly the same strings (the class
/// matches one code point, the anchors cover the whole value). Any other
/// pattern is compiled as written.
#[derive(Debug)]
pub struct Pattern {
    regex: Regex,
    count: Option<(u32, Option<u32>)>,
}

impl Pattern {
    /// Compiles the pattern text from the spec.
    pub fn compile(pattern: &str) -> Result<Pattern, String> {
        use regex_syntax::hir::{Hir, HirKind, Look, Repetition};
        let hir = regex_syntax::Parser::new()
            .parse(pattern)
            .map_err(|e| e.to_string())?;
        if let HirKind::Concat(parts) = hir.kind() {
            if let [start, middle, end] = parts.as_slice() {
                if let (
                    HirKind::Look(Look::Start),
                    HirKind::Repetition(rep),
                    HirKind::Look(Look::End),
                ) = (start.kind(), middle.kind(), end.kind())
                {
                    if matches!(rep.sub.kind(), HirKind::Class(_)) {
                        let star = Hir::concat(vec![
                            Hir::look(Look::Start),
                            Hir::repetition(Repetition {
                                min: 0,
                                max: None,
                                greedy: true,
                                sub: rep.sub.clone(),
                            }),
                            Hir::look(Look::End),
                        ]);
                        let regex = Regex::new(&star.to_string()).map_err(|e| e.to_string())?;
                        return Ok(Pattern {
                            regex,
                            count: Some((rep.min, rep.max)),
                        });
                    }
                }
            }
        }
        let regex = Regex::new(pattern).map_err(|e| e.to_string())?;
        Ok(Pattern { regex, count: None })
    }

    /// ECMA `RegExp.test` semantics: true if the pattern matches somewhere in `s`.
    pub fn is_match(&self, s: &str) -> bool {
        if let Some((min, max)) = self.count {
            let n = u32::try_from(s.chars().count()).unwrap_or(u32::MAX);
            if n < min || max.is_some_and(|m| n > m) {
                return false;
            }
        }
        self.regex.is_match(s)
    }
}

impl Spec {
    fn load() -> Result<Spec, String> {
        let doc: Document = serde_json::from_str(SPEC_JSON)
            .map_err(|e| format!("embedded D1 spec is not readable: {e}"))?;
        let schemas = doc.components.schemas;
        if !schemas.contains_key(ROOT_SCHEMA) {
            return Err(format!("embedded D1 spec has no `{ROOT_SCHEMA}` schema"));
        }
        let mut patterns = HashMap::new();
        for schema in schemas.values() {
            collect(schema, &schemas, &mut patterns)?;
        }
        Ok(Spec { schemas, patterns })
    }

    fn resolve(&self, reference: &str) -> Result<&Schema, D1Error> {
        reference
            .strip_prefix("#/components/schemas/")
            .and_then(|name| self.schemas.get(name))
            .ok_or_else(|| D1Error::new(D1ErrorCode::InternalError, "schema"))
    }
}

/// Compiles every pattern and checks that every reference resolves and every
/// `oneOf` has a discriminator, so a bad spec fails at load, not mid-request.
fn collect(
    schema: &Schema,
    all: &HashMap<String, Schema>,
    patterns: &mut HashMap<String, Pattern>,
) -> Result<(), String> {
    let resolves = |r: &str| {
        r.strip_prefix("#/components/schemas/")
            .is_some_and(|n| all.contains_key(n))
    };
    if let Some(r) = &schema.reference {
        if !resolves(r) {
            return Err(format!("unresolvable $ref {r}"));
        }
    }
    if let Some(p) = &schema.pattern {
        if !patterns.contains_key(p) {
            let m =
                Pattern::compile(p).map_err(|e| format!("pattern {p:?} does not compile: {e}"))?;
            patterns.insert(p.clone(), m);
        }
    }
    if !schema.one_of.is_empty() {
        let d = schema
            .discriminator
            .as_ref()
            .ok_or("oneOf without discriminator is not supported")?;
        if let Some(r) = d.mapping.values().find(|r| !resolves(r)) {
            return Err(format!("unresolvable discriminator mapping {r}"));
        }
    }
    for s in &schema.one_of {
        collect(s, all, patterns)?;
    }
    for (_, s) in &schema.properties {
        collect(s, all, patterns)?;
    }
    if let Some(s) = &schema.items {
        collect(s, all, patterns)?;
    }
    Ok(())
}

fn spec() -> Result<&'static Spec, D1Error> {
    static SPEC: OnceLock<Result<Spec, String>> = OnceLock::new();
    match SPEC.get_or_init(Spec::load) {
        Ok(spec) => Ok(spec),
        Err(reason) => {
            tracing::error!(%reason, "embedded D1 order schema unusable");
            Err(D1Error::new(D1ErrorCode::InternalError, "schema"))
        }
    }
}

/// Checks that the embedded spec loads and all its patterns compile.
pub fn self_check() -> Result<(), D1Error> {
    spec().map(|_| ())
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Validates `body` against the root `cardRequest` schema.
pub fn validate_order(body: &Value) -> Result<(), D1Error> {
    validate_against(ROOT_SCHEMA, body)
}

/// Validates `value` against the named schema of `components.schemas`.
/// Errors at the root of `value` are reported with the schema name as path.
pub fn validate_against(schema_name: &str, value: &Value) -> Result<(), D1Error> {
    let spec = spec()?;
    let schema = spec
        .schemas
        .get(schema_name)
        .ok_or_else(|| D1Error::new(D1ErrorCode::InternalError, "schema"))?;
    check(spec, schema, value, "").map_err(|mut e| {
        if e.error.is_empty() {
            e.error = schema_name.to_owned();
        }
        e
    })
}

fn check(spec: &Spec, schema: &Schema, value: &Value, path: &str) -> Result<(), D1Error> {
    // OpenAPI 3.0: keywords beside `$ref` are ignored.
    if let Some(r) = &schema.reference {
        return check(spec, spec.resolve(r)?, value, path);
    }
    if let Some(d) = &schema.discriminator {
        let obj = value.as_object().ok_or_else(|| D1Error::format(path))?;
        let at = child(path, &d.property_name);
        let tag = match obj.get(&d.property_name) {
            None => return Err(D1Error::format(at)),
            Some(Value::String(s)) => s,
            Some(_) => return Err(D1Error::format(at)),
        };
        let target = d.mapping.get(tag).ok_or_else(|| D1Error::value(at))?;
        return check(spec, spec.resolve(target)?, value, path);
    }
    let ty = schema.ty.as_deref().or_else(|| {
        (!schema.properties.is_empty() || !schema.required.is_empty()).then_some("object")
    });
    match ty {
        Some("string") => {
            let s = value.as_str().ok_or_else(|| D1Error::format(path))?;
            check_string(spec, schema, s, path)?;
        }
        Some("boolean") if !value.is_boolean() => return Err(D1Error::format(path)),
        Some("integer") if !(value.is_i64() || value.is_u64()) => {
            return Err(D1Error::format(path))
        }
        Some("number") if !value.is_number() => return Err(D1Error::format(path)),
        Some("array") => {
            let items = value.as_array().ok_or_else(|| D1Error::format(path))?;
            if schema.min_items.is_some_and(|m| items.len() < m)
                || schema.max_items.is_some_and(|m| items.len() > m)
            {
                return Err(D1Error::value(path));
            }
            if let Some(item_schema) = &schema.items {
                for (i, item) in items.iter().enumerate() {
                    check(spec, item_schema, item, &format!("{path}[{i}]"))?;
                }
            }
        }
        Some("object") => {
            let obj = value.as_object().ok_or_else(|| D1Error::format(path))?;
            if let Some(missing) = schema.required.iter().find(|k| !obj.contains_key(*k)) {
                return Err(D1Error::format(child(path, missing)));
            }
            for (name, prop) in &schema.properties {
                if let Some(v) = obj.get(name) {
                    check(spec, prop, v, &child(path, name))?;
                }
            }
        }
        _ => {}
    }
    if let Some(allowed) = &schema.enumeration {
        if !allowed.contains(value) {
            return Err(D1Error::value(path));
        }
    }
    Ok(())
}

fn check_string(spec: &Spec, schema: &Schema, s: &str, path: &str) -> Result<(), D1Error> {
    let len = s.chars().count();
    if schema.min_length.is_some_and(|m| len < m) || schema.max_length.is_some_and(|m| len > m) {
        return Err(D1Error::format(path));
    }
    if let Some(p) = &schema.pattern {
        let re = spec
            .patterns
            .get(p)
            .ok_or_else(|| D1Error::new(D1ErrorCode::InternalError, "schema"))?;
        if !re.is_match(s) {
            return Err(D1Error::format(path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_spec_loads_and_every_pattern_compiles() {
        let spec = Spec::load().expect("spec loads");
        assert!(spec.patterns.len() >= 15, "{}", spec.patterns.len());
    }

    #[test]
    fn properties_keep_spec_order() {
        let spec = Spec::load().expect("spec loads");
        let address = &spec.schemas["address"];
        let names: Vec<&str> = address.properties.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[..3], &["title", "firstName", "lastName"]);
        assert_eq!(names.last(), Some(&"email"));
    }

    #[test]
    fn ecma_range_dot_to_backslash_is_a_range() {
        let spec = Spec::load().expect("spec loads");
        let images = &spec.schemas["cardDesign"].properties[0].1;
        let re = &spec.patterns[images.items.as_ref().unwrap().pattern.as_ref().unwrap()];
        // '.'(2E)..'\'(5C) covers ':' '<' '@' 'Z' '[' — all inside the range.
        assert!(re.is_match("a:b<c@Z[\\"));
        assert!(!re.is_match("a]b"), "']' (5D) is outside the range");
    }
}
