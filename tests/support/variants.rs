//! The broken-blueprint table (`tests/fixtures/broken-variants.json`): each variant

//! edits the backend-shaped blueprint and names the pointer and code it must produce.
//! Shared by the native validator tests and the sandboxed end-to-end tests.

use serde_json::Value;

pub struct Variant {
    pub name: String,
    pub document: String,
    pub pointer: String,
    pub code: String,
}

pub fn fixtures_dir() -> std::path::PathBuf {
    // The crate using this file may sit at any depth of the workspace.
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("tests/fixtures"))
        .find(|dir| dir.join("broken-variants.json").is_file())
        .expect("tests/fixtures above the crate")
}

pub fn backend_blueprint() -> String {
    std::fs::read_to_string(fixtures_dir().join("backend-blueprint.json")).expect("fixture")
}

pub fn broken_variants() -> Vec<Variant> {
    let base: Value = serde_json::from_str(&backend_blueprint()).expect("fixture parses");
    let table: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures_dir().join("broken-variants.json")).expect("table"))
            .expect("table parses");
    table
        .into_iter()
        .map(|entry| {
            let mut document = base.clone();
            for (pointer, value) in entry["set"].as_object().expect("set") {
                let value = match value.get("$repeat_first_move").and_then(Value::as_u64) {
                    Some(count) => Value::Array(vec![base["moves"][0].clone(); count as usize]),
                    None => value.clone(),
                };
                let (parent, name) = pointer.rsplit_once('/').expect("pointer has a parent");
                match document.pointer_mut(parent).expect("parent in fixture") {
                    Value::Object(map) => {
                        map.insert(name.to_owned(), value);
                    }
                    Value::Array(items) => items[name.parse::<usize>().expect("index")] = value,
                    _ => panic!("{pointer}: parent is not a container"),
                }
            }
            for pointer in entry["remove"].as_array().expect("remove") {
                let pointer = pointer.as_str().expect("pointer");
                let (parent, name) = pointer.rsplit_once('/').expect("pointer has a parent");
                document.pointer_mut(parent).and_then(Value::as_object_mut).expect("parent").remove(name);
            }
            Variant {
                name: entry["name"].as_str().expect("name").to_owned(),
                document: document.to_string(),
                pointer: entry["pointer"].as_str().expect("pointer").to_owned(),
                code: entry["code"].as_str().expect("code").to_owned(),
            }
        })
        .collect()
}

/// Every JSON pointer in a document, the root ("") included.
pub fn all_pointers(document: &Value) -> Vec<String> {
    fn walk(value: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match value {
            Value::Object(map) => {
                map.iter().for_each(|(k, v)| walk(v, format!("{at}/{}", br_blueprint::escape_pointer_token(k)), out))
            }
            Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| walk(v, format!("{at}/{i}"), out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(document, String::new(), &mut out);
    out
}

/// Where an error's pointer must resolve: a missing field's pointer names a place that
/// does not exist, so its parent must.
pub fn pointer_target<'a>(pointer: &'a str, code: &str) -> &'a str {
    if code == "missing-field" {
        pointer.rsplit_once('/').map(|(parent, _)| parent).unwrap_or("")
    } else {
        pointer
    }
}
