//! The station link document stays in step with the routes the sandbox hub serves.

use station_agent::sandbox::served_routes;

fn doc() -> serde_yaml::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/station-link.openapi.yaml"
    );
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("doc readable")).expect("valid YAML")
}

#[test]
fn every_served_route_is_documented_with_its_method() {
    let doc = doc();
    let paths = doc["paths"].as_mapping().expect("paths");
    for (method, path) in served_routes() {
        let entry = paths
            .get(serde_yaml::Value::String(path.to_string()))
            .unwrap_or_else(|| panic!("{path} missing from docs/station-link.openapi.yaml"));
        let m = method.as_str().to_ascii_lowercase();
        assert!(
            entry.get(m.as_str()).is_some(),
            "{method} {path} missing from docs/station-link.openapi.yaml"
        );
    }
}

#[test]
fn every_documented_route_is_served() {
    let doc = doc();
    let served: Vec<(String, String)> = served_routes()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_ascii_lowercase(), p.to_string()))
        .collect();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        let path = path.as_str().expect("path is a string");
        for (method, _) in item.as_mapping().expect("path item") {
            let method = method.as_str().expect("method");
            assert!(
                served.contains(&(method.to_string(), path.to_string())),
                "{method} {path} documented but not served"
            );
        }
    }
}

#[test]
fn document_is_openapi_3_0() {
    let doc = doc();
    assert!(doc["openapi"].as_str().expect("openapi").starts_with("3.0"));
}
