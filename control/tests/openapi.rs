//! The OpenAPI document (`control/openapi.json`, served at
//! `/api/v1/openapi.json`) against the code: every route registered in
//! `src/` is documented and every documented route and method answers;
//! the document's structure holds (refs resolve, path parameters declared,
//! unique operation ids, error responses); every schema is valid JSON
//! Schema 2020-12; and real responses match their documented schemas.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{Kind, TestApp};
use control::db::users::SystemRole;
use serde_json::{Value, json};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn document() -> Value {
    serde_json::from_str(control::api::openapi::DOCUMENT).expect("openapi.json is JSON")
}

fn src_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            src_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every path literal given to `.route(` anywhere in `src/`: routes are
/// registered that way (see the README), so this is the router's table.
fn routes_in_source() -> BTreeSet<String> {
    let mut files = Vec::new();
    src_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut found = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read source");
        for (i, _) in text.match_indices(".route(") {
            let rest = text[i + ".route(".len()..].trim_start();
            let Some(lit) = rest.strip_prefix('"') else {
                panic!("{}: .route( without a literal path", f.display());
            };
            let end = lit.find('"').expect("closing quote");
            found.insert(lit[..end].to_owned());
        }
    }
    found
}

/// The URL a documented path is served at: under `/api/v1` unless the
/// path item names its own server.
fn url_of(path: &str, item: &Value) -> String {
    let base = item["servers"][0]["url"].as_str().unwrap_or("/api/v1");
    let base = base.trim_end_matches('/');
    let concrete: String = path
        .split('/')
        .map(|seg| if seg.starts_with('{') { "probe" } else { seg })
        .collect::<Vec<_>>()
        .join("/");
    format!("{base}{concrete}")
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = document();
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    let routed = routes_in_source();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "documented routes with no route: {extra:?}"
    );
}

/// Each documented method is routed (not 405), every other method on a
/// documented path is not (405), and each path is matched at all (an
/// unrouted method gives 405, never the fallback's 404).
#[tokio::test]
async fn documented_methods_are_exactly_the_routed_ones() {
    let app = TestApp::new(Kind::Sqlite).await;
    let doc = document();
    let mut wrong = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = url_of(path, item);
        for m in METHODS.iter().chain(["trace"].iter()) {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            let req = Request::builder()
                .method(method)
                .uri(&url)
                .body(Body::empty())
                .unwrap();
            let status = app.send(req).await.status;
            let is_documented = item.get(*m).is_some();
            let routed = status != StatusCode::METHOD_NOT_ALLOWED;
            if is_documented != routed {
                wrong.push(format!("{m} {url}: {status} (documented: {is_documented})"));
            }
        }
    }
    assert!(wrong.is_empty(), "document and router disagree: {wrong:#?}");
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().expect("$ref is a string").to_owned());
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Schemas appearing anywhere in the document (components, parameters,
/// request and response bodies).
fn collect_schemas<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "schema" {
                    out.push((format!("{at}/schema"), x));
                } else if k == "schemas" && at == "/components" {
                    for (name, s) in x.as_object().expect("schemas object") {
                        out.push((format!("/components/schemas/{name}"), s));
                    }
                } else {
                    collect_schemas(x, format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect_schemas(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn pointer<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    doc.pointer(r.strip_prefix('#')?)
}

#[test]
fn document_structure_is_openapi_3_1() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "OpenAPI 3.1"
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for req in doc["security"].as_array().unwrap() {
        for name in req.as_object().unwrap().keys() {
            assert!(schemes.contains_key(name), "unknown security scheme {name}");
        }
    }

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in &refs {
        assert!(pointer(&doc, r).is_some(), "$ref {r} resolves to nothing");
    }

    let mut op_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{path}: paths start with /");
        for key in item.as_object().unwrap().keys() {
            assert!(
                METHODS.contains(&key.as_str())
                    || ["parameters", "servers", "summary", "description"].contains(&key.as_str()),
                "{path}: unexpected key {key}"
            );
        }
        let path_params: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let id = op["operationId"].as_str().expect("operationId");
            assert!(op_ids.insert(id.to_owned()), "operationId {id} twice");
            assert!(op["summary"].is_string(), "{m} {path}: summary");
            // Declared path parameters: exactly the template's names.
            let mut declared = BTreeSet::new();
            for p in item["parameters"]
                .as_array()
                .into_iter()
                .chain(op["parameters"].as_array())
                .flatten()
            {
                let p = match p.get("$ref") {
                    Some(r) => pointer(&doc, r.as_str().unwrap()).unwrap(),
                    None => p,
                };
                let inn = p["in"].as_str().expect("parameter in");
                assert!(["path", "query", "header", "cookie"].contains(&inn));
                assert!(p["schema"].is_object(), "{m} {path}: parameter schema");
                if inn == "path" {
                    assert_eq!(p["required"], true, "{m} {path}: path params required");
                    declared.insert(p["name"].as_str().unwrap().to_owned());
                }
            }
            let wanted: BTreeSet<String> = path_params.iter().map(|s| s.to_string()).collect();
            assert_eq!(declared, wanted, "{m} {path}: path parameters");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                // A redirect is the success of a browser sign-in step.
                responses
                    .keys()
                    .any(|c| c.starts_with('2') || c == "101" || c == "303"),
                "{m} {path}: a success response"
            );
            for (code, resp) in responses {
                let n: u16 = code.parse().expect("numeric status");
                assert!((100..600).contains(&n));
                let resp = match resp.get("$ref") {
                    Some(r) => pointer(&doc, r.as_str().unwrap()).unwrap(),
                    None => resp,
                };
                assert!(resp["description"].is_string(), "{m} {path} {code}");
                if n >= 400 {
                    assert_eq!(
                        resp["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{m} {path} {code}: errors use the Error body"
                    );
                }
            }
            if let Some(body) = op.get("requestBody") {
                assert!(body["content"].is_object(), "{m} {path}: body content");
            }
        }
    }
}

#[test]
fn every_schema_is_valid_json_schema() {
    let doc = document();
    let mut schemas = Vec::new();
    collect_schemas(&doc, String::new(), &mut schemas);
    assert!(schemas.len() > 50, "found {} schemas", schemas.len());
    for (at, s) in &schemas {
        if let Err(e) = jsonschema::draft202012::meta::validate(s) {
            panic!("{at} is not valid JSON Schema 2020-12: {e}");
        }
    }
}

/// Every error `code` the server can return is listed in the document.
#[test]
fn every_error_code_is_documented() {
    let doc = document();
    let listed: BTreeSet<&str> =
        doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
    let mut files = Vec::new();
    src_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut used = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for pat in ["Conflict(\"", "Invalid(\"", "Invalid(\n"] {
            for (i, _) in text.match_indices(pat) {
                let rest = text[i + pat.len()..].trim_start().trim_start_matches('"');
                if let Some(end) = rest.find('"') {
                    used.insert(rest[..end].to_owned());
                }
            }
        }
        // `AppError::refused(StatusCode::X, "code", …)`: the code is the
        // second argument; and api/files.rs's `bad("code", …)` helper.
        for (i, _) in text.match_indices("refused(") {
            let args = &text[i + "refused(".len()..];
            if let Some(comma) = args.find(',') {
                let rest = args[comma + 1..].trim_start();
                if let Some(lit) = rest.strip_prefix('"') {
                    used.insert(lit[..lit.find('"').unwrap()].to_owned());
                }
            }
        }
        if f.ends_with("api/files.rs") {
            for (i, _) in text.match_indices("bad(\"") {
                let before = text[..i].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let lit = &text[i + "bad(\"".len()..];
                used.insert(lit[..lit.find('"').unwrap()].to_owned());
            }
        }
        if f.ends_with("error.rs") {
            // The arms of `AppError::code`: `AppError::X(..) => "code",`.
            for line in text.lines() {
                if let Some((_, rhs)) = line.split_once("=> \"") {
                    used.insert(rhs[..rhs.find('"').unwrap()].to_owned());
                }
            }
        }
    }
    assert!(used.len() > 10, "found codes: {used:?}");
    let missing: Vec<_> = used
        .iter()
        .filter(|c| !listed.contains(c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "error codes not documented: {missing:?}"
    );
}

fn validator(doc: &Value, schema_ref: &str) -> jsonschema::Validator {
    let mut root = doc.clone();
    root["$ref"] = json!(schema_ref);
    jsonschema::draft202012::new(&root).expect("schema compiles")
}

fn assert_matches(doc: &Value, schema: &str, body: &Value) {
    let v = validator(doc, schema);
    let errors: Vec<String> = v.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{schema} does not describe {body}: {errors:?}"
    );
}

/// Real responses are what the document says, so a field renamed in code
/// fails here.
#[tokio::test]
async fn responses_match_their_schemas() {
    // Uploads go to a local store in a folder of the test's own.
    let dir = tempfile::tempdir().unwrap();
    let mut config = control::Config::default();
    config.server.data_dir = dir.path().to_owned();
    config.rtcd = control::nodes::RtcdConfig::loopback();
    let app = TestApp::with_config(Kind::Sqlite, config).await;
    let doc = document();
    let s = |n: &str| format!("#/components/schemas/{n}");

    let r = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.body, doc);

    let alice = app.user("alice", SystemRole::Admin).await;
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "alice", "password": common::PASSWORD})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_matches(&doc, &s("LoginResponse"), &r.body);

    let mut checks: BTreeMap<&str, Value> = BTreeMap::new();
    let team = app.team("eng", &alice, &[]).await;
    checks.insert(
        "Team",
        app.get(&format!("/api/v1/teams/{team}"), &alice).await.body,
    );
    let ch = app.channel(&team, "general", "open", &alice).await;
    checks.insert(
        "Channel",
        app.get(&format!("/api/v1/channels/{ch}"), &alice)
            .await
            .body,
    );
    let post = app.say(&ch, &alice, "hello").await;
    let post_id = post["id"].as_str().unwrap().to_owned();
    checks.insert("Post", post);
    // A file: uploaded, attached to a post, linked.
    let boundary = "openapi-test-boundary";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"notes.txt\"\r\n\
         Content-Type: text/plain\r\n\r\nminutes\r\n--{boundary}--\r\n"
    );
    let r = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri(format!("/api/v1/channels/{ch}/files"))
                .header("authorization", format!("Bearer {}", alice.token))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Body::from(form))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let file_id = r.body["file_infos"][0]["id"].as_str().unwrap().to_owned();
    checks.insert("Uploaded", r.body);
    let r = app
        .post(
            &format!("/api/v1/channels/{ch}/posts"),
            &alice,
            json!({"message": "", "file_ids": [file_id]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["files"][0]["post_id"], r.body["id"]);
    assert_matches(&doc, &s("Post"), &r.body);
    checks.insert("FileInfo", r.body["files"][0].clone());
    let r = app
        .get(&format!("/api/v1/files/{file_id}/link"), &alice)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    checks.insert("FileLink", r.body);
    // Search finds the post and the file just made.
    let r = app.get("/api/v1/search/posts?q=hello", &alice).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["results"].as_array().unwrap().len(), 1);
    checks.insert("PostSearchResults", r.body);
    let r = app.get("/api/v1/search/files?q=notes", &alice).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["results"].as_array().unwrap().len(), 1);
    checks.insert("FileSearchResults", r.body);
    app.call(
        Method::PUT,
        &format!("/api/v1/posts/{post_id}/reactions/smile"),
        Some(&alice),
        None,
    )
    .await;
    let reactions = app
        .get(&format!("/api/v1/posts/{post_id}/reactions"), &alice)
        .await
        .body;
    checks.insert("Reaction", reactions[0].clone());
    checks.insert("User", app.get("/api/v1/users/me", &alice).await.body);
    let unreads = app.get("/api/v1/users/me/unreads", &alice).await.body;
    checks.insert("Unread", unreads[0].clone());
    let r = app
        .post("/api/v1/users/me/tokens", &alice, json!({"name": "ci"}))
        .await;
    checks.insert("CreatedToken", r.body);
    let tokens = app.get("/api/v1/users/me/tokens", &alice).await.body;
    checks.insert("AccessToken", tokens[0].clone());
    let sessions = app.get("/api/v1/users/me/sessions", &alice).await.body;
    checks.insert("Session", sessions[0].clone());
    let r = app.get("/api/v1/channels/nope", &alice).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    checks.insert("Error", r.body);
    // The media nodes, with the embedded one up.
    app.state.nodes.start().await.unwrap();
    let r = app.get("/api/v1/admin/media-nodes", &alice).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["nodes"][0]["state"], "up", "{:?}", r.body);
    checks.insert("MediaNodes", r.body);
    for (schema, body) in &checks {
        assert!(!body.is_null(), "{schema}: no body to check");
        assert_matches(&doc, &s(schema), body);
    }

    // The schemas are strict enough to reject a renamed field.
    let mut bad = checks["Post"].clone();
    bad["text"] = bad["message"].take();
    bad.as_object_mut().unwrap().remove("message");
    assert!(!validator(&doc, &s("Post")).is_valid(&bad));
    app.state.nodes.stop().await;
}
