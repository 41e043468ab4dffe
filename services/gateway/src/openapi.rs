//! The OpenAPI 3 description of the REST API, served at `/openapi.json`. It
//! is written by hand next to the routes; tests hold the two together.

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::DOCUMENT;

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).unwrap_or_else(|e| panic!("openapi.json: {e}"))
    }

    /// Every `$ref` in `value`.
    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(target)) => found.push(target),
                        _ => refs(inner, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }

    #[test]
    fn is_openapi_3_and_every_reference_resolves() {
        let doc = document();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let pointer = target.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
        }
    }

    #[test]
    fn describes_exactly_the_routes_served() {
        let doc = document();
        let mut described = BTreeSet::new();
        for (path, operations) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in operations.as_object().into_iter().flatten() {
                assert!(
                    operation["responses"]
                        .as_object()
                        .is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
                described.insert((method.to_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<_> = crate::routes::endpoints()
            .into_iter()
            .map(|(method, path)| (method.to_string(), path.to_owned()))
            .collect();
        assert_eq!(described, served);
    }
}
