//! The Teams app package: what `GET /api/v1/m365/app-package` and
//! `control m365-package` hand an admin, checked against Microsoft's own
//! manifest JSON schemas (the copies the npm package `@microsoft/app-manifest`
//! bundles, installed in tests/m365 by `scripts/setup`; nothing is fetched).
//! Without those files these tests fail: they never skip.

mod common;

use std::collections::BTreeSet;
use std::io::{Cursor, Read as _};
use std::path::PathBuf;

use axum::http::{Method, StatusCode};
use common::{Kind, TestApp};
use control::Config;
use control::db::users::SystemRole;
use control::m365::package::{self, MANIFEST_VERSIONS};
use control::m365::{ACTIVITY_TYPES, Cloud, M365Config, NOTIFICATION_ENTITY_ID, TAB_ENTITY_ID};
use serde_json::{Value, json};

const PUBLIC_URL: &str = "https://enclave.example.org";
const PUBLIC_HOST: &str = "enclave.example.org";
const CLIENT_ID: &str = "0b7e3a4c-59f1-4d2e-9a6b-3c8d1e2f4a5b";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const URI: &str = "/api/v1/m365/app-package";

fn schema_path(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../tests/m365/node_modules/@microsoft/app-manifest/build/json-schemas/teams/v{version}/MicrosoftTeams.schema.json"
    ))
}

/// Microsoft's schema for manifest `version`, compiled as the draft-04
/// schema it declares itself to be.
fn schema(version: &str) -> jsonschema::Validator {
    let path = schema_path(version);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The Teams manifest schemas come from the npm package \
             @microsoft/app-manifest: run scripts/setup (npm ci in tests/m365)",
            path.display()
        )
    });
    let doc: Value = serde_json::from_str(&text).expect("the schema is JSON");
    assert_eq!(doc["$schema"], "http://json-schema.org/draft-04/schema#");
    assert_eq!(
        doc["properties"]["manifestVersion"]["const"],
        version,
        "{} is the schema of another version",
        path.display()
    );
    jsonschema::draft4::new(&doc).expect("Microsoft's schema compiles")
}

fn schema_errors(v: &jsonschema::Validator, manifest: &Value) -> Vec<String> {
    v.iter_errors(manifest)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn site(cloud: Cloud, manifest_version: &str) -> M365Config {
    let mut c = M365Config {
        enabled: true,
        cloud,
        public_url: PUBLIC_URL.into(),
        client_id: CLIENT_ID.into(),
        allowed_tenants: vec![TENANT.into()],
        ..M365Config::default()
    };
    c.app.manifest_version = manifest_version.into();
    c
}

async fn app_for(m365: M365Config) -> TestApp {
    let config = Config {
        m365,
        ..Config::default()
    };
    TestApp::with_config(Kind::Sqlite, config).await
}

/// The zip's entries, by name, in archive order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).expect("entry");
            let mut data = Vec::new();
            f.read_to_end(&mut data).expect("entry reads");
            (f.name().expect("a UTF-8 name").into_owned(), data)
        })
        .collect()
}

fn entry<'a>(entries: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &entries
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in the package"))
        .1
}

/// Every string in `v` that is a URL or a URI with a host.
fn urls(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.contains("://") => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| urls(x, out)),
        Value::Object(m) => m.values().for_each(|x| urls(x, out)),
        _ => {}
    }
}

/// The package an admin downloads passes Microsoft's schema, for each
/// cloud and for the default schema version and a later one; it holds
/// exactly the manifest and two icons of the sizes Teams wants, and every
/// address in it is the site's own.
#[tokio::test]
async fn the_downloaded_package_passes_microsofts_schema_in_each_cloud() {
    for version in ["1.22", "1.24"] {
        let validator = schema(version);
        for cloud in [Cloud::Commercial, Cloud::GccHigh, Cloud::Dod] {
            let app = app_for(site(cloud, version)).await;
            let admin = app.user("admin", SystemRole::Admin).await;
            let r = app.get(URI, &admin).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{cloud:?} {version}: {:?}",
                r.body
            );
            assert_eq!(r.headers["content-type"], "application/zip");
            assert_eq!(
                r.headers["content-disposition"],
                "attachment; filename=\"enclave-teams-app-1.0.0.zip\""
            );
            let entries = unzip(&r.bytes);
            let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["manifest.json", "color.png", "outline.png"]);

            let manifest: Value =
                serde_json::from_slice(entry(&entries, "manifest.json")).expect("JSON");
            let errors = schema_errors(&validator, &manifest);
            assert!(errors.is_empty(), "{cloud:?} {version}: {errors:#?}");
            assert!(package::problems(&manifest).is_empty());

            assert_eq!(manifest["manifestVersion"], version);
            assert_eq!(
                manifest["$schema"],
                format!(
                    "https://developer.microsoft.com/json-schemas/teams/v{version}/MicrosoftTeams.schema.json"
                )
            );
            assert_eq!(manifest["id"], CLIENT_ID);
            assert_eq!(
                manifest["icons"],
                json!({"color": "color.png", "outline": "outline.png"})
            );
            assert_eq!(manifest["validDomains"], json!([PUBLIC_HOST]));
            assert_eq!(
                manifest["webApplicationInfo"],
                json!({"id": CLIENT_ID, "resource": format!("api://{PUBLIC_HOST}/{CLIENT_ID}")})
            );
            assert_eq!(
                manifest["devicePermissions"],
                json!(["media", "notifications"])
            );
            assert_eq!(manifest["isFullScreen"], true);
            assert_eq!(
                manifest["authorization"]["permissions"]["resourceSpecific"],
                json!([{"name": "TeamsActivity.Send.User", "type": "Application"}])
            );
            // Personal static tabs only: the one kind Outlook and the
            // Microsoft 365 app run.
            let tabs = manifest["staticTabs"].as_array().unwrap();
            let ids: Vec<&str> = tabs
                .iter()
                .map(|t| t["entityId"].as_str().unwrap())
                .collect();
            assert_eq!(ids, [TAB_ENTITY_ID, NOTIFICATION_ENTITY_ID]);
            for t in tabs {
                assert_eq!(t["scopes"], json!(["personal"]));
                assert_eq!(t["contentUrl"], format!("{PUBLIC_URL}/m365/tab"));
            }
            assert!(manifest.get("configurableTabs").is_none() && manifest.get("bots").is_none());
            let types: Vec<&str> = manifest["activities"]["activityTypes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["type"].as_str().unwrap())
                .collect();
            let declared: Vec<&str> = ACTIVITY_TYPES.iter().map(|a| a.name).collect();
            assert_eq!(types, declared);

            // Sign-in and Graph differ by cloud; the manifest names none of
            // them, only the site (and the schema it follows).
            let mut found = Vec::new();
            urls(&manifest, &mut found);
            for u in &found {
                let ours = u.starts_with(&format!("{PUBLIC_URL}/"))
                    || u.starts_with(&format!("api://{PUBLIC_HOST}/"))
                    || *u == manifest["$schema"];
                assert!(ours, "{cloud:?}: {u} is not the site's");
            }

            let color = image::load_from_memory(entry(&entries, "color.png")).expect("PNG");
            assert_eq!((color.width(), color.height()), (192, 192));
            let outline = image::load_from_memory(entry(&entries, "outline.png"))
                .expect("PNG")
                .to_rgba8();
            assert_eq!(outline.dimensions(), (32, 32));
        }
    }
}

/// Every schema version the configuration accepts is one the manifest
/// passes; a version Microsoft never published is refused at start-up.
#[test]
fn every_accepted_manifest_version_passes_its_schema() {
    for version in MANIFEST_VERSIONS {
        let m = package::manifest(&site(Cloud::Commercial, version));
        let errors = schema_errors(&schema(version), &m);
        assert!(errors.is_empty(), "{version}: {errors:#?}");
    }
    assert!(!schema_path("1.18").exists(), "1.18 was never published");
    let config = Config {
        m365: site(Cloud::Commercial, "1.18"),
        ..Config::default()
    };
    let errors = config.validate().expect_err("1.18 is refused");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("m365.app.manifest_version")),
        "{errors:?}"
    );
}

/// The schema rejects a broken manifest, and where it cannot see a
/// mistake Teams would refuse (a tab outside `validDomains`), our own
/// check does.
#[test]
fn a_broken_manifest_is_rejected() {
    let v = schema("1.22");
    let good = package::manifest(&site(Cloud::Commercial, "1.22"));
    assert!(schema_errors(&v, &good).is_empty());

    let mut m = good.clone();
    m.as_object_mut().unwrap().remove("accentColor");
    let errors = schema_errors(&v, &m).join("\n");
    assert!(
        errors.contains("\"accentColor\" is a required property"),
        "{errors}"
    );

    let mut m = good.clone();
    m["id"] = json!("enclave-teams-app");
    let errors = schema_errors(&v, &m).join("\n");
    assert!(errors.contains("at /id"), "{errors}");

    let mut m = good.clone();
    m["accentColor"] = json!("#1F4E7");
    assert!(!schema_errors(&v, &m).is_empty());

    let mut m = good.clone();
    m["name"]["short"] = json!("A name longer than thirty characters");
    let errors = schema_errors(&v, &m).join("\n");
    assert!(errors.contains("at /name/short"), "{errors}");

    let mut m = good.clone();
    m["staticTabs"][0]["scopes"] = json!(["personal", "everyone"]);
    let errors = schema_errors(&v, &m).join("\n");
    assert!(errors.contains("at /staticTabs/0/scopes/1"), "{errors}");

    // Microsoft's schema takes any host here…
    let mut m = good.clone();
    m["staticTabs"][0]["contentUrl"] = json!("https://elsewhere.example.net/m365/tab");
    assert!(schema_errors(&v, &m).is_empty());
    // …so the package's own check names it.
    let problems = package::problems(&m).join("\n");
    assert!(
        problems
            .contains("contentUrl https://elsewhere.example.net/m365/tab is outside validDomains"),
        "{problems}"
    );
}

/// The icons: Teams wants a 192×192 colour icon and a 32×32 outline
/// that is white on transparency, nothing else.
#[test]
fn the_icons_are_the_sizes_and_colours_teams_requires() {
    let c = site(Cloud::Commercial, "1.22");
    let color = image::load_from_memory(&package::color_icon(&c))
        .unwrap()
        .to_rgba8();
    assert_eq!(color.dimensions(), (192, 192));
    assert!(
        color.pixels().all(|p| p[3] == 255),
        "the colour icon is opaque"
    );
    // The corner is the accent colour (#1F4E79); the glyph is white.
    assert_eq!(color.get_pixel(0, 0).0, [0x1F, 0x4E, 0x79, 255]);
    assert!(color.pixels().any(|p| p.0 == [255, 255, 255, 255]));

    let outline = image::load_from_memory(&package::outline_icon())
        .unwrap()
        .to_rgba8();
    assert_eq!(outline.dimensions(), (32, 32));
    let mut alphas = BTreeSet::new();
    for p in outline.pixels() {
        assert!(
            p[3] == 0 || p.0[..3] == [255, 255, 255],
            "{p:?} is not white"
        );
        alphas.insert(p[3]);
    }
    assert!(alphas.contains(&0) && alphas.contains(&255), "{alphas:?}");
    let ink = outline.pixels().filter(|p| p[3] > 127).count();
    assert!((100..700).contains(&ink), "{ink} of 1024 pixels inked");
}

/// The same configuration gives the same bytes; the accent colour
/// changes the colour icon only.
#[test]
fn the_package_is_deterministic() {
    let c = site(Cloud::Commercial, "1.22");
    let a = package::build(&c).unwrap();
    assert_eq!(a, package::build(&c).unwrap());
    let mut other = c.clone();
    other.app.accent_color = "#AA3300".into();
    let b = package::build(&other).unwrap();
    assert_ne!(a, b);
    let (ea, eb) = (unzip(&a), unzip(&b));
    assert_eq!(entry(&ea, "outline.png"), entry(&eb, "outline.png"));
    assert_ne!(entry(&ea, "color.png"), entry(&eb, "color.png"));
}

/// Only a system admin gets the package, and only while `[m365]` is on
/// and the manifest is one Teams would take.
#[tokio::test]
async fn who_gets_the_package_and_when() {
    let app = app_for(site(Cloud::Commercial, "1.22")).await;
    let admin = app.user("admin", SystemRole::Admin).await;
    let bob = app.user("bob", SystemRole::User).await;
    let r = app.call(Method::GET, URI, None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let r = app.get(URI, &bob).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(app.get(URI, &admin).await.status, StatusCode::OK);

    let app = app_for(M365Config::default()).await;
    let admin = app.user("admin", SystemRole::Admin).await;
    let r = app.get(URI, &admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "m365_disabled")
    );

    let mut plain = site(Cloud::Commercial, "1.22");
    plain.public_url = "http://enclave.example.org".into();
    let app = app_for(plain).await;
    let admin = app.user("admin", SystemRole::Admin).await;
    let r = app.get(URI, &admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "m365_package_invalid")
    );
    assert!(
        r.body["message"].as_str().unwrap().contains("is not HTTPS"),
        "{:?}",
        r.body
    );
}

/// `control m365-package --out FILE` writes the very zip the route
/// serves; with `[m365]` off it exits 64 and writes nothing.
#[tokio::test]
async fn the_command_writes_the_same_package() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("control.toml");
    std::fs::write(
        &config,
        format!(
            "[m365]\nenabled = true\ncloud = \"gcc_high\"\npublic_url = \"{PUBLIC_URL}\"\n\
             client_id = \"{CLIENT_ID}\"\nallowed_tenants = [\"{TENANT}\"]\n\
             [m365.app]\nversion = \"2.3.4\"\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("app.zip");
    let run = |config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_control"))
            .arg("--config")
            .arg(config)
            .arg("m365-package")
            .arg("--out")
            .arg(&out)
            .env_remove("ENCLAVE_CONFIG")
            .output()
            .unwrap()
    };
    let done = run(&config);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let written = std::fs::read(&out).unwrap();

    let mut m365 = site(Cloud::GccHigh, "1.22");
    m365.app.version = "2.3.4".into();
    let app = app_for(m365).await;
    let admin = app.user("admin", SystemRole::Admin).await;
    let r = app.get(URI, &admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"enclave-teams-app-2.3.4.zip\""
    );
    assert_eq!(written, r.bytes.to_vec());

    std::fs::remove_file(&out).unwrap();
    let off = dir.path().join("off.toml");
    std::fs::write(&off, "[m365]\nenabled = false\n").unwrap();
    let refused = run(&off);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(64), "{err}");
    assert!(err.contains("[m365] enabled = false"), "{err}");
    assert!(!out.exists());
}
