//! The Teams app package an operator uploads in the Teams admin center: a
//! zip of `manifest.json` and two icons, made from `[m365]`.
//!
//! The app is one full-screen personal static tab (the tab page at
//! [`TAB_PATH`]) and a second personal tab, [`NOTIFICATION_ENTITY_ID`],
//! that activity-feed deep links open. Personal static tabs are what
//! Outlook and the Microsoft 365 app run too, so the one package serves all
//! three hosts. Every URL in it is on the site's own host: the cloud
//! changes where sign-in and Graph are, never what the manifest names.
//!
//! The package is deterministic: the same configuration gives the same
//! bytes (the icons are drawn here, the zip entries carry no clock time),
//! so an admin can tell whether a download differs from what was uploaded.

use std::io::{Cursor, Write as _};

use image::{ImageBuffer, ImageFormat, Rgba};
use serde_json::{Value, json};

use super::{ACTIVITY_TYPES, M365Config, NOTIFICATION_ENTITY_ID, TAB_ENTITY_ID, TAB_PATH};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const COLOR_ICON_FILE: &str = "color.png";
pub const OUTLINE_ICON_FILE: &str = "outline.png";
/// Sizes Teams requires of the two icons.
pub const COLOR_ICON_SIZE: u32 = 192;
pub const OUTLINE_ICON_SIZE: u32 = 32;

/// Manifest schema versions the package may declare: 1.13 is the first
/// that Outlook and the Microsoft 365 app run; 1.18 was never published.
/// Each is checked against Microsoft's schema in control's tests.
pub const MANIFEST_VERSIONS: &[&str] = &[
    "1.13", "1.14", "1.15", "1.16", "1.17", "1.19", "1.20", "1.21", "1.22", "1.23", "1.24", "1.25",
    "1.26", "1.27", "1.28", "1.29", "1.30",
];

/// The resource-specific permission that lets the app post to the
/// activity feed of a user who installed it.
pub const ACTIVITY_PERMISSION: &str = "TeamsActivity.Send.User";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    #[error("the Microsoft 365 integration is not enabled ([m365] enabled = false)")]
    Disabled,
    /// What the schema cannot see but Teams refuses; each problem named.
    #[error("the app manifest would be refused: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("writing the package: {0}")]
    Write(String),
}

/// Where Microsoft publishes the schema of `version`.
pub fn schema_url(version: &str) -> String {
    format!(
        "https://developer.microsoft.com/json-schemas/teams/v{version}/MicrosoftTeams.schema.json"
    )
}

fn site_url(c: &M365Config, path: &str) -> String {
    format!("{}{path}", c.public_url.trim_end_matches('/'))
}

fn or_site(c: &M365Config, url: &str) -> String {
    if url.is_empty() {
        site_url(c, "/")
    } else {
        url.to_owned()
    }
}

/// The manifest for the site `c` describes.
pub fn manifest(c: &M365Config) -> Value {
    let app = &c.app;
    let tab_url = site_url(c, TAB_PATH);
    let personal_tab = |entity_id: &str, name: &str| {
        json!({
            "entityId": entity_id,
            "name": name,
            "contentUrl": tab_url,
            "websiteUrl": site_url(c, "/"),
            "scopes": ["personal"],
            "context": ["personalTab"],
        })
    };
    let activity_types: Vec<Value> = ACTIVITY_TYPES
        .iter()
        .map(|a| {
            json!({
                "type": a.name,
                "description": a.description,
                "templateText": a.template,
            })
        })
        .collect();
    json!({
        "$schema": schema_url(&app.manifest_version),
        "manifestVersion": app.manifest_version,
        "version": app.version,
        "id": c.app_id(),
        "developer": {
            "name": app.developer_name,
            "websiteUrl": or_site(c, &app.website_url),
            "privacyUrl": or_site(c, &app.privacy_url),
            "termsOfUseUrl": or_site(c, &app.terms_url),
        },
        "name": { "short": app.short_name, "full": app.full_name },
        "description": {
            "short": app.short_description,
            "full": app.full_description,
        },
        "icons": { "color": COLOR_ICON_FILE, "outline": OUTLINE_ICON_FILE },
        "accentColor": app.accent_color,
        "staticTabs": [
            personal_tab(TAB_ENTITY_ID, &app.short_name),
            // Teams lists it as a second tab; the tab page reads the entity
            // and the deep link's subEntityId from the host's context.
            personal_tab(NOTIFICATION_ENTITY_ID, "Notification"),
        ],
        "validDomains": [c.public_host().unwrap_or_default()],
        "webApplicationInfo": { "id": c.client_id, "resource": c.app_id_uri() },
        "devicePermissions": ["media", "notifications"],
        "isFullScreen": true,
        "showLoadingIndicator": false,
        "defaultInstallScope": "personal",
        "activities": { "activityTypes": activity_types },
        "authorization": {
            "permissions": {
                "resourceSpecific": [{ "name": ACTIVITY_PERMISSION, "type": "Application" }],
            },
        },
    })
}

/// Whether `host` (`name[:port]`) is one of `domains`; an entry may be a
/// `*.` wildcard for one or more labels.
fn domain_listed(host: &str, domains: &[&str]) -> bool {
    let host = host.to_ascii_lowercase();
    domains.iter().any(|d| {
        let d = d.to_ascii_lowercase();
        match d.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|label| label.len() > 1 && label.ends_with('.')),
            None => host == d,
        }
    })
}

fn host_of(url: &str) -> Option<String> {
    let u = openidconnect::url::Url::parse(url).ok()?;
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    })
}

/// What Teams refuses but the JSON schema cannot express: every tab URL
/// is HTTPS on a host of `validDomains`, the SSO resource is this app's
/// App ID URI on such a host, activity type names are unique and each
/// icon is named. Empty when the manifest is fine.
pub fn problems(manifest: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let domains: Vec<&str> = manifest["validDomains"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if domains.is_empty() || domains.iter().any(|d| d.is_empty()) {
        out.push("validDomains must name the site's host".to_owned());
    }
    let tabs = manifest["staticTabs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for tab in &tabs {
        let entity = tab["entityId"].as_str().unwrap_or("?");
        for key in ["contentUrl", "websiteUrl"] {
            let Some(url) = tab[key].as_str() else {
                continue;
            };
            if !url.starts_with("https://") {
                out.push(format!("staticTabs {entity}: {key} {url} is not HTTPS"));
            }
            match host_of(url) {
                Some(h) if domain_listed(&h, &domains) => {}
                _ => out.push(format!(
                    "staticTabs {entity}: {key} {url} is outside validDomains {domains:?}"
                )),
            }
        }
    }
    if let Some(resource) = manifest["webApplicationInfo"]["resource"].as_str() {
        let id = manifest["webApplicationInfo"]["id"].as_str().unwrap_or("");
        let host = resource
            .strip_prefix("api://")
            .and_then(|r| r.strip_suffix(id))
            .and_then(|r| r.strip_suffix('/'));
        match host {
            Some(h) if !id.is_empty() && domain_listed(h, &domains) => {}
            _ => out.push(format!(
                "webApplicationInfo.resource {resource} is not api://<a valid domain>/{id}"
            )),
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in manifest["activities"]["activityTypes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = a["type"].as_str().unwrap_or("");
        if !seen.insert(name) {
            out.push(format!("activities: type {name:?} declared twice"));
        }
    }
    for icon in ["color", "outline"] {
        if !manifest["icons"][icon].is_string() {
            out.push(format!("icons.{icon} is missing"));
        }
    }
    out
}

/// `[m365.app]` mistakes that would make Teams refuse the package, found
/// at start-up rather than at upload.
pub(crate) fn validate_app(c: &M365Config, errors: &mut Vec<String>) {
    let app = &c.app;
    if !MANIFEST_VERSIONS.contains(&app.manifest_version.as_str()) {
        errors.push(format!(
            "m365.app.manifest_version {:?} is not one of {}",
            app.manifest_version,
            MANIFEST_VERSIONS.join(", ")
        ));
    }
    let semver = app.version.split('.').collect::<Vec<_>>();
    let number = |p: &&str| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p.len() == 1 || !p.starts_with('0'))
    };
    if semver.len() != 3 || !semver.iter().all(number) {
        errors.push(format!(
            "m365.app.version {:?} must be MAJOR.MINOR.PATCH (e.g. 1.0.0)",
            app.version
        ));
    }
    for (key, value, max) in [
        ("short_name", &app.short_name, 30),
        ("full_name", &app.full_name, 100),
        ("short_description", &app.short_description, 80),
        ("full_description", &app.full_description, 4000),
        ("developer_name", &app.developer_name, 32),
    ] {
        let n = value.chars().count();
        if n == 0 || n > max {
            errors.push(format!(
                "m365.app.{key} must have 1 to {max} characters (has {n})"
            ));
        }
    }
    let hex = app.accent_color.strip_prefix('#').unwrap_or("");
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        errors.push(format!(
            "m365.app.accent_color {:?} must be #RRGGBB",
            app.accent_color
        ));
    }
    for (key, url) in [
        ("website_url", &app.website_url),
        ("privacy_url", &app.privacy_url),
        ("terms_url", &app.terms_url),
    ] {
        if !url.is_empty() && !url.starts_with("https://") {
            errors.push(format!("m365.app.{key} {url:?} must be an https:// URL"));
        }
    }
}

fn accent_rgb(c: &M365Config) -> [u8; 3] {
    let hex = c.app.accent_color.trim_start_matches('#');
    let byte = |i: usize| {
        hex.get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    [byte(0), byte(2), byte(4)]
}

/// The glyph, a speech bubble with two lines of text, on the unit square:
/// whether point (x, y) is ink. `stroke` is the outline's width.
fn glyph(x: f32, y: f32, stroke: f32) -> bool {
    let in_round_rect = |x: f32, y: f32, (x0, y0, x1, y1): (f32, f32, f32, f32), r: f32| {
        if x < x0 || x > x1 || y < y0 || y > y1 {
            return false;
        }
        let cx = x.clamp(x0 + r, x1 - r);
        let cy = y.clamp(y0 + r, y1 - r);
        (x - cx).powi(2) + (y - cy).powi(2) <= r * r
    };
    let outer = (0.06, 0.10, 0.94, 0.74);
    let inner = (
        outer.0 + stroke,
        outer.1 + stroke,
        outer.2 - stroke,
        outer.3 - stroke,
    );
    let bubble = in_round_rect(x, y, outer, 0.16) && !in_round_rect(x, y, inner, 0.16 - stroke);
    // The tail: a triangle under the bubble's lower left.
    let tail = y >= outer.3 - stroke && y <= 0.94 && {
        let t = (y - (outer.3 - stroke)) / (0.94 - (outer.3 - stroke));
        let left = 0.22 - 0.04 * t;
        let right = 0.44 - 0.26 * t;
        x >= left && x <= right
    };
    let line = |y0: f32, x1: f32| x >= 0.24 && x <= x1 && y >= y0 && y <= y0 + stroke;
    bubble || tail || line(0.30, 0.76) || line(0.50, 0.60)
}

/// An icon `size` pixels square: the glyph in white over `background`
/// (transparent when None), anti-aliased by 4×4 supersampling. The glyph
/// fills `extent` of the square, centred.
fn draw_icon(size: u32, background: Option<[u8; 3]>, extent: f32, stroke: f32) -> Vec<u8> {
    const SAMPLES: u32 = 4;
    let margin = (1.0 - extent) / 2.0;
    let img = ImageBuffer::from_fn(size, size, |px, py| {
        let mut hits = 0u32;
        for sy in 0..SAMPLES {
            for sx in 0..SAMPLES {
                let u = (px as f32 + (sx as f32 + 0.5) / SAMPLES as f32) / size as f32;
                let v = (py as f32 + (sy as f32 + 0.5) / SAMPLES as f32) / size as f32;
                if glyph((u - margin) / extent, (v - margin) / extent, stroke) {
                    hits += 1;
                }
            }
        }
        let ink = hits as f32 / (SAMPLES * SAMPLES) as f32;
        match background {
            // White over the accent colour, blended by coverage.
            Some(bg) => {
                let mix = |b: u8| (b as f32 + (255.0 - b as f32) * ink).round() as u8;
                Rgba([mix(bg[0]), mix(bg[1]), mix(bg[2]), 255])
            }
            None => Rgba([255, 255, 255, (255.0 * ink).round() as u8]),
        }
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .expect("encoding an in-memory RGBA image as PNG cannot fail");
    out.into_inner()
}

/// `color.png`: the white glyph on the accent colour, inside the central
/// area Teams keeps clear of its own rounding.
pub fn color_icon(c: &M365Config) -> Vec<u8> {
    draw_icon(COLOR_ICON_SIZE, Some(accent_rgb(c)), 0.625, 0.10)
}

/// `outline.png`: the white glyph on transparency, edge to edge.
pub fn outline_icon() -> Vec<u8> {
    draw_icon(OUTLINE_ICON_SIZE, None, 1.0, 0.10)
}

/// The package's file name for a download.
pub fn file_name(c: &M365Config) -> String {
    let version: String = c
        .app
        .version
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '.')
        .collect();
    format!("enclave-teams-app-{version}.zip")
}

/// The zip an admin uploads. Refused when `[m365]` is off or the manifest
/// has a problem Teams would refuse it for.
pub fn build(c: &M365Config) -> Result<Vec<u8>, PackageError> {
    if !c.enabled {
        return Err(PackageError::Disabled);
    }
    let manifest = manifest(c);
    let found = problems(&manifest);
    if !found.is_empty() {
        return Err(PackageError::Invalid(found));
    }
    let json = serde_json::to_vec_pretty(&manifest).expect("a serde_json::Value always serialises");
    // Deflate, and no timestamps (the zip crate's default date without its
    // `time` feature), so equal input gives equal bytes.
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let write = |e: &dyn std::fmt::Display| PackageError::Write(e.to_string());
    for (name, bytes) in [
        (MANIFEST_FILE, json),
        (COLOR_ICON_FILE, color_icon(c)),
        (OUTLINE_ICON_FILE, outline_icon()),
    ] {
        zip.start_file(name, options).map_err(|e| write(&e))?;
        zip.write_all(&bytes).map_err(|e| write(&e))?;
    }
    Ok(zip.finish().map_err(|e| write(&e))?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> M365Config {
        crate::m365::tests::enabled()
    }

    #[test]
    fn the_manifest_points_at_the_site_and_its_app_registration() {
        let c = site();
        let m = manifest(&c);
        assert_eq!(m["manifestVersion"], "1.22");
        assert_eq!(
            m["$schema"],
            "https://developer.microsoft.com/json-schemas/teams/v1.22/MicrosoftTeams.schema.json"
        );
        assert_eq!(m["id"], c.client_id);
        assert_eq!(m["validDomains"], json!(["enclave.example.org"]));
        assert_eq!(
            m["staticTabs"][0]["contentUrl"],
            "https://enclave.example.org/m365/tab"
        );
        assert_eq!(m["staticTabs"][1]["entityId"], NOTIFICATION_ENTITY_ID);
        assert_eq!(
            m["webApplicationInfo"]["resource"],
            "api://enclave.example.org/00000000-1111-2222-3333-444444444444"
        );
        assert_eq!(m["developer"]["privacyUrl"], "https://enclave.example.org/");
        assert!(problems(&m).is_empty(), "{:?}", problems(&m));
    }

    #[test]
    fn a_port_and_a_path_in_the_public_url_are_kept() {
        let mut c = site();
        c.public_url = "https://chat.example.org:8443/enclave/".into();
        let m = manifest(&c);
        assert_eq!(m["validDomains"], json!(["chat.example.org:8443"]));
        assert_eq!(
            m["staticTabs"][0]["contentUrl"],
            "https://chat.example.org:8443/enclave/m365/tab"
        );
        assert!(problems(&m).is_empty(), "{:?}", problems(&m));
    }

    #[test]
    fn problems_name_what_teams_would_refuse() {
        let mut m = manifest(&site());
        m["staticTabs"][0]["contentUrl"] = json!("https://elsewhere.example.net/m365/tab");
        m["staticTabs"][1]["websiteUrl"] = json!("http://enclave.example.org/");
        m["webApplicationInfo"]["resource"] = json!("api://other.example.org/x");
        m["activities"]["activityTypes"][1]["type"] = json!("mention");
        let all = problems(&m).join("\n");
        for needle in [
            "enclave: contentUrl https://elsewhere.example.net/m365/tab is outside validDomains",
            "notification_preview: websiteUrl http://enclave.example.org/ is not HTTPS",
            "webApplicationInfo.resource api://other.example.org/x",
            "type \"mention\" declared twice",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn wildcard_domains_cover_subdomains_only() {
        assert!(domain_listed("a.example.org", &["*.example.org"]));
        assert!(domain_listed("a.b.example.org", &["*.example.org"]));
        assert!(!domain_listed("example.org", &["*.example.org"]));
        assert!(!domain_listed("badexample.org", &["*.example.org"]));
        assert!(domain_listed("Example.ORG", &["example.org"]));
    }

    #[test]
    fn an_http_site_gets_no_package() {
        let mut c = site();
        c.public_url = "http://enclave.example.org".into();
        match build(&c) {
            Err(PackageError::Invalid(p)) => assert!(p[0].contains("is not HTTPS"), "{p:?}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        c.enabled = false;
        assert!(matches!(build(&c), Err(PackageError::Disabled)));
    }

    #[test]
    fn app_settings_are_checked_at_start_up() {
        let mut c = site();
        c.app.manifest_version = "1.18".into();
        c.app.version = "1.0".into();
        c.app.short_name = "An app name far longer than thirty".into();
        c.app.accent_color = "blue".into();
        c.app.privacy_url = "http://example.org/privacy".into();
        let mut errors = Vec::new();
        validate_app(&c, &mut errors);
        let all = errors.join("\n");
        for needle in [
            "manifest_version \"1.18\"",
            "m365.app.version \"1.0\"",
            "m365.app.short_name must have 1 to 30 characters (has 34)",
            "accent_color \"blue\"",
            "m365.app.privacy_url",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        let mut errors = Vec::new();
        validate_app(&site(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }
}
